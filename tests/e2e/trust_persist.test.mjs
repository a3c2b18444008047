// Trust state across reloads and at rest (issue #15): devices keep the revocation lists they
// accepted in IndexedDB, so a revoked device stays shut out after every page reloads even when
// nobody re-publishes the CRL; and IndexedDB holds no raw key bytes — the credential bundle (it
// carries the venue content key) and the content keys of later epochs are sealed under the
// device key's non-extractable AES-GCM key, like the device key itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { launch, startBroker, meshMember, venueCa, sleep, waitFor, PYTHON } from './lib.mjs';
import { rogueDevice } from './rogue.mjs';

const HB = 300;
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

const stats = (m) => m.page.evaluate(() => window.mesh.getDetailedStats());
const peersOf = async (m) => (await stats(m)).peers.map((p) => p.device);

async function venue(t, roles) {
  const name = `per-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const broker = await startBroker();
  t.after(() => broker.stop());
  const pages = [];
  for (const role of roles) {
    const m = await meshMember(browser, broker.url, name, role === 'admin' ? 'kiosk' : 'pos', { webrtc: '0', role });
    t.after(() => m.context.close().catch(() => {}));
    m.console = [];
    m.page.on('console', (msg) => m.console.push(msg.text()));
    pages.push(m);
  }
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => p.length === pages.length - 1), 15_000, 'every page sees the others');
  return { name, broker, pages };
}

/** Reloads the page (same browser context: same IndexedDB) and waits for the mesh to open again from storage. */
async function reload(m) {
  await m.page.reload();
  await m.page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 15_000 })
    .catch((e) => { throw new Error(`${m.id}: ${e.message}\n${m.console.join('\n')}\n${m.errors.join('\n')}`); });
  const failed = await m.page.evaluate(() => window.openError ?? null);
  if (failed) throw new Error(`${m.id}: the mesh did not reopen from storage: ${failed}`);
  assert.equal(await m.page.evaluate(() => window.mesh.deviceId), m.id);
}

test('a revoked device stays ignored after every page reloads, with the retained CRL cleared', { timeout: 120_000 }, async (t) => {
  const { name, broker, pages } = await venue(t, ['device', 'device', 'device']);
  const ca = venueCa(name);
  const rogue = await rogueDevice({ brokerUrl: broker.url, venue: name, ca, id: 'rogue-ipad' });
  t.after(() => rogue.close());
  const beat = setInterval(() => rogue.join().catch(() => {}), HB);
  t.after(() => clearInterval(beat));
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => p.includes('rogue-ipad')), 10_000, 'the rogue is a peer (its cert is valid)');
  await rogue.client.publishAsync(`vm/${name}/crl`, ca.revoke(rogue.key.pk), { qos: 1, retain: true });
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => !p.includes('rogue-ipad')), 10_000, 'no page lists the revoked device');
  // Nobody carries the CRL any more: the retained copy is cleared, and every page reloads at once
  // (no device holds it in memory to pass on).
  await rogue.client.publishAsync(`vm/${name}/crl`, Buffer.alloc(0), { qos: 1, retain: true });
  await Promise.all(pages.map(reload));
  await waitFor(async () => (await Promise.all(pages.map(peersOf))).every((p) => p.length === pages.length - 1), 15_000, 'the pages see each other again');
  // The rogue keeps announcing itself with its (still valid, but revoked) certificate.
  await sleep(6 * HB);
  const after = await Promise.all(pages.map(stats));
  for (const [i, s] of after.entries()) {
    assert.ok(!s.peers.some((p) => p.device === 'rogue-ipad'), `${pages[i].id} lists the revoked device after the reload`);
    assert.ok(s.security.revokedKeys >= 1, `${pages[i].id} restored the revocation from IndexedDB`);
    assert.ok(s.security.revoked >= 1, `${pages[i].id} refused the revoked device's envelopes since the reload (${s.security.revoked})`);
  }
});

/** Every record of every store of the page's IndexedDB databases, bytes as hex, strings as they are. */
const dumpIdb = (m) => m.page.evaluate(async () => {
  const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
  const flat = (v, out) => {
    if (v instanceof Uint8Array) out.push(hex(v));
    else if (v instanceof ArrayBuffer) out.push(hex(new Uint8Array(v)));
    else if (ArrayBuffer.isView(v)) out.push(hex(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)));
    else if (typeof v === 'string') out.push(v);
    else if (typeof CryptoKey !== 'undefined' && v instanceof CryptoKey) out.push(`CryptoKey(${v.algorithm.name},${v.extractable})`);
    else if (v && typeof v === 'object') for (const x of Object.values(v)) flat(x, out);
    return out;
  };
  const shapes = {};
  const texts = [];
  for (const { name } of await indexedDB.databases()) {
    const db = await new Promise((res, rej) => { const r = indexedDB.open(name); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    for (const store of db.objectStoreNames) {
      const tx = db.transaction(store);
      const [keys, values] = await Promise.all(['getAllKeys', 'getAll'].map((f) => new Promise((res) => { const r = tx.objectStore(store)[f](); r.onsuccess = () => res(r.result); })));
      keys.forEach((k, i) => {
        flat(values[i], texts);
        if (store === 'meta') shapes[k] = typeof values[i] === 'string' ? 'string' : Object.keys(values[i] ?? {}).sort().join(',');
      });
    }
    db.close();
  }
  return { shapes, texts };
});

/** The content key a KEY_UPDATE wraps to the cloud, unwrapped with the cloud's seed (tests/ingest/trust.py). */
function unwrapForCloud(trustFile, raw) {
  const code = 'import sys, json, base64\nsys.path.insert(0, sys.argv[1])\nimport trust as tr\nj = json.loads(sys.argv[2])\n'
    + 'ku = tr.open_key_update(bytes.fromhex(sys.argv[3]), base64.b64decode(j["rootPublicKey"]), j["venue"], int(sys.argv[4]))\n'
    + 'print(tr.unwrap_key_update(ku, j["venue"], j["device"], base64.b64decode(j["secret"])).hex())';
  const r = spawnSync(PYTHON, ['-c', code, fileURLToPath(new URL('../ingest/', import.meta.url)), JSON.stringify(trustFile), raw.toString('hex'), String(Date.now())], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Buffer.from(r.stdout.trim(), 'hex');
}

test('IndexedDB holds no raw key bytes: the bundle and every content key are sealed under the device key', { timeout: 120_000 }, async (t) => {
  const { name, broker, pages } = await venue(t, ['admin', 'device']);
  const [admin, pos] = pages;
  const ca = venueCa(name);
  const rotation = await admin.page.evaluate(() => window.mesh.rotateContentKey({ activateInMs: 500, graceMs: 600_000 }));
  await waitFor(async () => (await Promise.all(pages.map(stats))).every((s) => s.security.keyEpoch === rotation.epoch), 15_000, 'both pages send under the new epoch');
  // The new key, as the cloud unwraps it from the retained KEY_UPDATE.
  const spy = await mqtt.connectAsync(broker.url, { clientId: `spy-${Date.now()}` });
  t.after(() => spy.endAsync(true));
  const got = new Promise((resolve) => spy.on('message', (topic, payload) => resolve(Buffer.from(payload))));
  await spy.subscribeAsync(`vm/${name}/keys`, { qos: 1 });
  const newKey = unwrapForCloud(ca.ingestTrust(), await got);
  assert.equal(newKey.length, 32);
  const secrets = { 'content key 1': ca.keys[0].key, [`content key ${rotation.epoch}`]: newKey };
  await sleep(500); // the trust record is written after the update (nothing waits for it)
  for (const m of pages) {
    await reload(m); // and read back from storage: the sealed records open
    await waitFor(async () => (await stats(m)).security.keyEpochs.includes(rotation.epoch), 10_000, `${m.id} restored epoch ${rotation.epoch}`);
    const { shapes, texts } = await dumpIdb(m);
    assert.equal(shapes.credentials, 'iv,sealed,v', `${m.id}: the bundle is sealed (${shapes.credentials})`);
    assert.match(shapes.trust_state, /contentKeysSealed/, `${m.id}: ${shapes.trust_state}`);
    assert.doesNotMatch(shapes.trust_state, /(^|,)contentKeys(,|$)/, `${m.id}: no content keys in clear`);
    assert.equal(shapes.device_key, 'device,iv,sealed,v,wrapKey');
    const all = texts.join('\n');
    for (const [what, key] of Object.entries(secrets)) {
      for (const form of [key.toString('hex'), key.toString('base64'), key.toString('base64url')]) {
        assert.ok(!all.includes(form), `${m.id}: ${what} is in IndexedDB in clear`);
      }
    }
    t.diagnostic(`${m.id}: meta records ${JSON.stringify(shapes)}`);
  }
  // The pages still work with what they read back: a sale becomes durable.
  const id = await pos.page.evaluate(() => window.mesh.enqueue('sale', 'after reload'));
  await waitFor(async () => (await pos.page.evaluate((id) => window.mesh.queue.status(id), id)) === 'peer_ack', 15_000, 'the sale is peer_ack');
});
