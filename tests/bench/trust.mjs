// The trust model's per-message cost in wasm (issue #15), Chromium: Ed25519 sign and verify
// of an envelope (260 bytes: header + 200-byte body), and ChaCha20-Poly1305 of the body
// under the sender's HKDF subkey, each run N times inside wasm (the hidden `__benchTrust`
// export, only in the test-hooks build scripts/bench writes to pkg-hooks/) and timed from
// the page. Peers in the same run: HMAC-SHA256 in wasm (what the v1 envelope cost per
// message) for the signature rows, and the browser's own WebCrypto Ed25519 where Chromium
// has it.
import { launch } from '../e2e/lib.mjs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const N = Number(process.env.VM_BENCH_TRUST_N || 2000);

function inPage(n) {
  const time = (op) => { const t0 = performance.now(); window.vm.__benchTrust(op, n); return ((performance.now() - t0) * 1000) / n; };
  for (const op of ['sign', 'verify', 'seal', 'open', 'hmac']) time(op); // warm-up
  const r = {};
  for (const op of ['sign', 'verify', 'seal', 'open', 'hmac']) r[op] = time(op);
  return (async () => {
    try {
      const k = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
      const msg = new Uint8Array(260);
      const sig = await crypto.subtle.sign('Ed25519', k.privateKey, msg);
      const m = Math.min(n, 500);
      let t0 = performance.now();
      for (let i = 0; i < m; i++) await crypto.subtle.sign('Ed25519', k.privateKey, msg);
      r.webSign = ((performance.now() - t0) * 1000) / m;
      t0 = performance.now();
      for (let i = 0; i < m; i++) await crypto.subtle.verify('Ed25519', k.publicKey, sig, msg);
      r.webVerify = ((performance.now() - t0) * 1000) / m;
    } catch { /* no Ed25519 in this browser's WebCrypto */ }
    return r;
  })();
}

export async function trustBench() {
  const browser = await launch();
  try {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${BASE}/tests/e2e/pages/blank.html?pkg=hooks`);
    await page.waitForFunction(() => window.ready, null, { timeout: 10_000 });
    const r = await page.evaluate(inPage, N);
    const f = (x) => x.toFixed(1);
    const web = (x) => (x === undefined ? ['', ''] : ['WebCrypto Ed25519 (async, same page)', f(x)]);
    const [wsp, wsv] = web(r.webSign), [wvp, wvv] = web(r.webVerify);
    return [
      { what: 'envelope sign (Ed25519, 260 B) in wasm, µs/message', ours: f(r.sign), peer: 'HMAC-SHA256 in wasm (v1 envelope)', peerValue: f(r.hmac), ratio: f(r.sign / r.hmac) },
      { what: 'envelope verify (Ed25519) in wasm, µs/message', ours: f(r.verify), peer: 'HMAC-SHA256 in wasm (v1 envelope)', peerValue: f(r.hmac), ratio: f(r.verify / r.hmac) },
      { what: 'sign: wasm vs the browser\'s WebCrypto, µs/message', ours: f(r.sign), peer: wsp, peerValue: wsv, ratio: r.webSign ? f(r.sign / r.webSign) : '' },
      { what: 'verify: wasm vs the browser\'s WebCrypto, µs/message', ours: f(r.verify), peer: wvp, peerValue: wvv, ratio: r.webVerify ? f(r.verify / r.webVerify) : '' },
      { what: 'body encrypt (HKDF subkey + ChaCha20-Poly1305, 200 B), µs/message', ours: f(r.seal), peer: 'encrypt + decrypt', peerValue: f(r.open) },
    ];
  } finally {
    await browser.close();
  }
}
