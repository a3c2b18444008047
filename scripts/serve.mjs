// A tiny static file server for the demo, the e2e tests and the benchmarks.
// Binds 127.0.0.1 only and serves a few folders of the repo read-only.
// Usage: node scripts/serve.mjs PORT
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../tests/ca/trust.mjs';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const port = Number(process.argv[2] || 8080);
// Only these prefixes are served; everything else is 404.
const allowed = ['www/', 'pkg/', 'pkg-hooks/', 'tests/e2e/pages/', 'tests/bench/pages/', '.run/pages/', 'node_modules/mqtt/dist/',
  'node_modules/idb/build/', 'node_modules/dexie/dist/'];
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml',
  '.png': 'image/png', '.ts': 'text/plain; charset=utf-8', '.map': 'application/json',
};

/**
 * `POST /ca/issue` with a pairing request `{ venue, device, publicKey, role? }` → the device's
 * credential bundle from the demo CA of that venue (tests/ca/trust.mjs `demoCa`: a public seed,
 * so demo and tests only). What a venue's real server does with its own CA, for the demo's
 * cloud admission. `role: "admin"` makes a device that can invite and revoke others; `ca: NAME`
 * certifies it with another root instead (an outsider, for tests).
 */
async function readJson(req, max) {
  let body = '';
  for await (const chunk of req) { body += chunk; if (body.length > max) throw new Error('too long'); }
  return JSON.parse(body);
}

async function issue(req, res) {
  const r = await readJson(req, 4096);
  const pk = Buffer.from(String(r.publicKey), 'base64');
  if (pk.length !== 32) throw new Error('publicKey must be 32 bytes, base64');
  const role = r.role === 'admin' ? 'admin' : 'device';
  // `ca`: another CA of the same venue name (another root), for tests of outsiders.
  const ca = r.ca ? T.createCa({ venue: String(r.venue), seed: T.sha256(Buffer.from(`venuemesh other CA: ${r.venue} / ${r.ca}`)) }) : T.demoCa(String(r.venue));
  const bundle = ca.bundle(String(r.device), pk, { role });
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(bundle));
}

/**
 * `POST /ca/receipt` with an upload batch as the `upload` hook gets it (JSON: `venue`,
 * `commands` with base64 `payload` and `originSig`, `hlc` as a decimal string, and
 * `certificates` {origin: base64 chain}) → `{ receipt (base64), refused: [ids] }`: what a
 * venue's backend does after storing the batch — checks each origin signature against the
 * origin's chain and signs a receipt with the cloud key (the demo CA's). The demo's and the
 * tests' stand-in for a real backend; it stores nothing.
 */
async function receipt(req, res) {
  const r = await readJson(req, 4 << 20);
  const venue = String(r.venue), ca = T.demoCa(venue), entries = [], refused = [];
  for (const c of r.commands) {
    const cmd = { id: c.id, origin: c.origin, topic: c.topic, hlc: BigInt(c.hlc), createdAt: c.createdAt, payload: Buffer.from(c.payload, 'base64') };
    const sig = Buffer.from(c.originSig, 'base64');
    try {
      const leaf = T.verifyChain(T.decodeChain(Buffer.from(r.certificates[c.origin], 'base64')), { rootPk: ca.root.pk, venue });
      if (leaf.subject !== c.origin || !T.verifyCmd(leaf.pk, venue, cmd, sig)) throw new Error('bad origin signature');
      entries.push({ id: c.id, digest: T.cmdDigest(cmd, sig) });
    } catch { refused.push(c.id); }
  }
  const receipt = T.makeReceipt(ca.cloudKey, { venue, entries, cloudChain: ca.cloudChain });
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ receipt: receipt.toString('base64'), refused }));
}

const ENDPOINTS = { '/ca/issue': issue, '/ca/receipt': receipt };

createServer(async (req, res) => {
  if (req.method === 'POST' && ENDPOINTS[req.url]) {
    try { await ENDPOINTS[req.url](req, res); } catch (e) { res.writeHead(400, { 'content-type': 'text/plain' }); res.end(String(e.message)); }
    return;
  }
  try {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
    if (path === '') { res.writeHead(302, { location: '/www/' }); res.end(); return; }
    if (path.endsWith('/')) path += 'index.html';
    const rel = normalize(path);
    if (rel.startsWith('..') || !allowed.some((p) => rel.startsWith(p))) throw new Error('not served');
    const file = join(root, rel);
    if (!file.startsWith(root + sep)) throw new Error('outside root');
    if (!(await stat(file)).isFile()) throw new Error('not a file');
    const body = await readFile(file);
    res.writeHead(200, {
      'content-type': types[extname(file)] || 'application/octet-stream',
      'cache-control': 'no-store',
      // The benchmark pages are cross-origin isolated: performance.now() then has
      // 20 µs steps in WebKit instead of 1 ms (5 µs in Chromium instead of 100),
      // which sub-millisecond round trips need. Everything they load is same-origin.
      ...(rel.startsWith('tests/bench/pages/') ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {}),
    });
    res.end(body);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
}).listen(port, '127.0.0.1', () => console.log(`serving ${root} on http://127.0.0.1:${port}/`));
