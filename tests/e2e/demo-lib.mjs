// The demo page (www/) as the e2e tests see it, for Chromium (demo.test.mjs)
// and WebKit (webkit_demo.test.mjs) alike: a device per browser context at an
// iPad size, what its tables, tiles, lists and log show, and checked
// screenshots (saved to .run/screenshots/, then checked in the DOM and in
// the pixels).
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import { demoUrl, BASE } from './lib.mjs';

const SHOTS = fileURLToPath(new URL('../../.run/screenshots/', import.meta.url));
export const PORTRAIT = { width: 1024, height: 1366 };
export const LANDSCAPE = { width: 1366, height: 1024 };
const HUB_RGB = [0xf5, 0xa6, 0x23]; // --hub in www/style.css

/** One device: its own context (own IndexedDB), a touch screen of `viewport`, the demo's default drain interval. */
export async function device(browser, venue, kind, viewport, broker) {
  const context = await browser.newContext({ viewport, hasTouch: true, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(`${BASE}${demoUrl({ venue, kind, hb: '300', broker })}`);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10_000 });
  const id = (await page.textContent('#device-id')).trim();
  return { context, page, errors, id, kind };
}

/** The rows of the devices table as the page shows them. */
export const rowsOf = (d) => d.page.$$eval('#devices tbody tr', (trs) => trs.map((tr) => ({
  device: tr.dataset.device,
  hub: tr.dataset.hub === '1',
  kind: tr.cells[1].textContent,
  score: Number(tr.cells[2].textContent),
  badge: tr.cells[3].textContent,
  queue: Number(tr.cells[5].textContent),
})));

/** Waits until `check(rows)` holds on the page; fails with what it last saw. */
export async function waitRows(d, what, check, ms = 15_000) {
  const until = Date.now() + ms;
  let rows = [];
  while (Date.now() < until) {
    rows = await rowsOf(d);
    if (check(rows)) return rows;
    await d.page.waitForTimeout(100);
  }
  assert.fail(`${d.kind} page: ${what}; it shows ${JSON.stringify(rows)}`);
}

/** The box of the first `selector` match, measured in one go (the page re-renders every second). */
export const boxOf = (page, selector) => page.evaluate((sel) => {
  const e = document.querySelector(sel);
  if (!e) return null;
  const r = e.getBoundingClientRect();
  return { x: r.x, y: r.y, width: r.width, height: r.height };
}, selector);

/** Whether the element's box lies inside the viewport (it is in a viewport screenshot). */
export async function inViewport(page, selector) {
  const box = await boxOf(page, selector);
  const vp = page.viewportSize();
  return !!box && box.width > 0 && box.height > 0 && box.x >= 0 && box.y >= 0 &&
    box.x + box.width <= vp.width && box.y + box.height <= vp.height;
}

/**
 * Pixel figures of a PNG screenshot (decoded here, so any engine's will do):
 * distinct colours (5 bits a channel), the share of pixels unlike the page
 * background, and in `box` the share of pixels near `rgb`.
 */
export function pixels(png, box, rgb) {
  const { width, height, rgba } = decodePng(png);
  const colours = new Set();
  let unlikeBg = 0;
  const bg = [0xee, 0xf1, 0xf5]; // --bg
  for (let i = 0; i < rgba.length; i += 4) {
    colours.add(((rgba[i] >> 3) << 10) | ((rgba[i + 1] >> 3) << 5) | (rgba[i + 2] >> 3));
    if (Math.abs(rgba[i] - bg[0]) + Math.abs(rgba[i + 1] - bg[1]) + Math.abs(rgba[i + 2] - bg[2]) > 24) unlikeBg++;
  }
  const [x0, y0] = [Math.max(0, Math.round(box.x)), Math.max(0, Math.round(box.y))];
  const [x1, y1] = [Math.min(width, x0 + Math.max(1, Math.round(box.width))), Math.min(height, y0 + Math.max(1, Math.round(box.height)))];
  let near = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * width + x) * 4;
      if (Math.abs(rgba[i] - rgb[0]) + Math.abs(rgba[i + 1] - rgb[1]) + Math.abs(rgba[i + 2] - rgb[2]) < 60) near++;
    }
  }
  return { width, height, colours: colours.size, unlikeBg: unlikeBg / (width * height),
    badgeShare: near / Math.max(1, (x1 - x0) * (y1 - y0)) };
}

/**
 * The pixels of a PNG as RGBA (8-bit RGB or RGBA, not interlaced: what
 * Chromium's and WebKit's screenshots are); throws on anything else.
 */
export function decodePng(png) {
  assert.equal(png.toString('latin1', 1, 4), 'PNG', 'a PNG');
  let at = 8, width = 0, height = 0, channels = 0;
  const idat = [];
  while (at < png.length) {
    const len = png.readUInt32BE(at), type = png.toString('latin1', at + 4, at + 8), data = png.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8, 13);
      channels = { 2: 3, 6: 4 }[colour];
      if (depth !== 8 || !channels || interlace !== 0) throw new Error(`PNG: depth ${depth}, colour type ${colour}, interlace ${interlace} not handled`);
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const rgba = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
      let p = 0;
      if (filter === 1) p = a;
      else if (filter === 2) p = b;
      else if (filter === 3) p = (a + b) >> 1;
      else if (filter === 4) { const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c); p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      cur[i] = (line[i] + p) & 255;
    }
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < 3; k++) rgba[(y * width + x) * 4 + k] = cur[x * channels + k];
      rgba[(y * width + x) * 4 + 3] = channels === 4 ? cur[x * channels + 3] : 255;
    }
    prev = cur;
  }
  return { width, height, rgba };
}

/** The status counts the queue card shows: `{ pending, peer_ack, cloud_ack, failed }`. */
export const tilesOf = (d) => d.page.$$eval('.tiles b', (bs) => Object.fromEntries(bs.map((b) => [b.id.slice(2), Number(b.dataset.count)])));

/** Waits until the queue card shows `want` (a subset of the tiles' counts). */
export async function waitTiles(d, what, want, ms = 20_000) {
  const until = Date.now() + ms;
  let got = {};
  while (Date.now() < until) {
    got = await tilesOf(d);
    if (Object.entries(want).every(([k, v]) => got[k] === v)) return got;
    await d.page.waitForTimeout(100);
  }
  assert.fail(`${d.kind} page: ${what}; the tiles show ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

/** Waits until the queue list shows the command `id` with `status`; its text. */
export async function waitListed(d, id, status, ms = 20_000) {
  const sel = `#queue-list li[data-id="${id}"][data-status="${status}"]`;
  try {
    await d.page.waitForSelector(sel, { timeout: ms });
  } catch {
    const items = await d.page.$$eval('#queue-list li', (lis) => lis.map((li) => `${li.dataset.id} ${li.dataset.status}`));
    assert.fail(`${d.kind} page: ${id} is not listed as ${status}; the list shows ${JSON.stringify(items)}`);
  }
  return d.page.textContent(sel);
}

/** Waits until the event log of `d` has a line matching `re`. */
export async function waitLogged(d, re, ms = 10_000) {
  try {
    await d.page.waitForFunction((src) => [...document.querySelectorAll('#log li')].some((li) => new RegExp(src).test(li.textContent)),
      re.source, { timeout: ms });
  } catch {
    assert.fail(`${d.kind} page: no log line matches ${re}; the log:\n${await d.page.textContent('#log')}`);
  }
}

/** Waits until the replication figure `id` (r-held, r-below, r-batches, r-cloud) shows at least `min`. */
export async function waitRepl(d, id, min, what, ms = 10_000) {
  try {
    await d.page.waitForFunction(([id, min]) => Number(document.getElementById(id).dataset.count) >= min, [id, min], { timeout: ms });
  } catch {
    assert.fail(`${d.kind} page: ${what}; #${id} shows ${await d.page.getAttribute(`#${id}`, 'data-count')}`);
  }
}

/**
 * An iPad-size screenshot of `d`, saved and checked: hub badge, ≥ 2 devices,
 * the queue's status tiles and the replication figures on screen, and the
 * counts in `counts` (e.g. `{ pending: 0, peer_ack: 1 }`) shown.
 */
export async function screenshot(d, name, counts) {
  const { page } = d;
  const vp = page.viewportSize();
  const badge = await boxOf(page, '#devices tr[data-hub] .badge-hub');
  // Saved first, so that a failed check below leaves the picture to look at.
  const png = await page.screenshot({ fullPage: false });
  mkdirSync(SHOTS, { recursive: true });
  writeFileSync(`${SHOTS}${name}.png`, png);
  // What a person sees without scrolling: the hub badge, the devices, the queue counts.
  assert.ok(await inViewport(page, '#devices tr[data-hub] .badge-hub'), `${name}: the hub badge is on screen`);
  const rows = await page.$$('#devices tbody tr');
  assert.ok(rows.length >= 2, `${name}: at least two devices listed`);
  for (const sel of ['#devices tbody tr:nth-child(2)', '#q-pending', '#q-cloud_ack', '#repl', '#pos-card .item']) {
    assert.ok(await inViewport(page, sel), `${name}: ${sel} is on screen`);
  }
  for (const [status, n] of Object.entries(counts)) {
    assert.equal(await page.textContent(`#q-${status}`), String(n), `${name}: ${status} count shown`);
  }
  assert.match(await page.textContent('#role'), /^(HUB|follower)$/);

  assert.ok(badge, `${name}: the hub badge was measured`);
  const px = pixels(png, badge, HUB_RGB);
  assert.deepEqual([px.width, px.height], [vp.width, vp.height], `${name}: iPad-size image`);
  assert.ok(px.colours > 40, `${name}: ${px.colours} distinct colours (a blank page has a handful)`);
  assert.ok(px.unlikeBg > 0.3, `${name}: ${(px.unlikeBg * 100).toFixed(0)}% of the pixels are content`);
  assert.ok(px.badgeShare > 0.4, `${name}: the hub badge is drawn in the hub colour (${(px.badgeShare * 100).toFixed(0)}%)`);
  return px;
}
