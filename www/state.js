// The shared price list and stock panel of the demo (issue #18): a price
// edited on one device shows on the others; a sale on any lane takes one
// from the shared stock counter (counters add up, so lanes that sell while
// apart still agree); edits made apart on two devices show as conflicts with
// the audit's local / remote / final values.
const PRODUCTS = [['espresso', 2.2], ['croissant', 1.8], ['juice', 3.5]];

export function setupState(mesh, log) {
  const $ = (id) => document.getElementById(id);
  const prices = mesh.collection('prices');
  const stock = mesh.collection('stock');
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

  function render() {
    const rows = PRODUCTS.map(([sku, dflt]) => {
      const p = prices.get(sku);
      const s = stock.get(sku);
      return `<tr data-sku="${sku}"><td>${sku}</td><td><input type="number" step="0.1" value="${p ? p.price : dflt}" aria-label="price of ${sku}"></td>` +
        `<td data-stock="${s ? s.qty : 0}">${s ? s.qty : 0}</td><td><button data-sell="${sku}">sell 1</button> <button data-restock="${sku}">+10</button></td></tr>`;
    });
    $('prices').innerHTML = `<tr><th>item</th><th>price</th><th>stock</th><th></th></tr>${rows.join('')}`;
    const conflicts = mesh.audit.conflicts({ since: Date.now() - 86_400_000 }).slice(-5).reverse();
    $('conflicts').innerHTML = conflicts.map((c) =>
      `<li>${esc(c.collection)}/${esc(c.key)}: local ${esc(JSON.stringify(c.local))} · remote ${esc(JSON.stringify(c.remote))} (from ${esc(c.remoteWrite.device.slice(0, 8))}) → <b>${esc(JSON.stringify(c.final))}</b></li>`).join('') ||
      '<li class="muted">no conflicts yet: edit one price on two devices while they are apart</li>';
  }
  $('prices').addEventListener('change', (e) => {
    const sku = e.target.closest('tr')?.dataset.sku;
    const price = Number(e.target.value);
    if (sku && Number.isFinite(price)) prices.patch(sku, { price }).then(() => log(`price of ${sku} set to ${price}`, 'ok'));
  });
  $('prices').addEventListener('click', (e) => {
    const sell = e.target.dataset?.sell;
    const restock = e.target.dataset?.restock;
    if (sell) stock.increment(sell, 'qty', -1);
    if (restock) stock.increment(restock, 'qty', 10);
  });
  for (const c of [prices, stock]) {
    c.on('change', (ch) => { if (ch.origin === 'remote') log(`${ch.collection}/${ch.key} changed by ${ch.writer.slice(0, 8)}`); render(); });
  }
  mesh.on('conflict', (c) => { log(`conflict on ${c.collection}/${c.key}: ${JSON.stringify(c.final)} kept`, 'bad'); render(); });
  render();
}
