// Hybrid routing: round trip of an application message (send → the peer's
// `message` event → its reply's `message` event here) over a WebRTC data
// channel vs over the broker, in the same run: one pair of pages with data
// channels, one pair with `webrtc: false` (broker only), same broker. Then
// the fallback: the data channel closed just before a send, the time until
// the reply comes back (over the broker). Figures only; no assertions.
import { launch, BROKER_AUTH, brokerAuthFragment } from '../e2e/lib.mjs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const BROKER = process.env.VM_BENCH_BROKER || 'ws://127.0.0.1:19101';
const TRIPS = Number(process.env.VM_BENCH_ROUTE_TRIPS || 200);
const FALLBACKS = Number(process.env.VM_BENCH_ROUTE_FALLBACKS || 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function member(browser, venue, kind, extra = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const q = new URLSearchParams({ venue, broker: BROKER, kind, hb: '300', ...extra });
  await page.goto(`${BASE}/tests/e2e/pages/routing.html?${q}${brokerAuthFragment(BROKER_AUTH, BROKER)}`);
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  const failed = await page.evaluate(() => window.openError ?? null);
  if (failed) throw new Error(`routing page failed to open: ${failed}`);
  // Echo every ping back to its sender.
  await page.evaluate(() => {
    window.onMessage = (m) => { if (m.text?.startsWith('ping')) window.mesh.send(m.from, `pong${m.text.slice(4)}`); };
  });
  return { context, page, id: await page.evaluate(() => window.mesh.deviceId) };
}

/** In the page: `n` sequential pings to `peer`; round trips in ms. */
function pings([peer, n, tag]) {
  return (async () => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const back = new Promise((r) => { window.onPong = r; });
      const prev = window.onMessage;
      window.onMessage = (m) => { if (m.text === `pong-${tag}-${i}`) window.onPong(); else prev?.(m); };
      window.mesh.send(peer, `ping-${tag}-${i}`);
      await back;
      window.onMessage = prev;
      out.push(performance.now() - t0);
    }
    return out;
  })();
}

async function routeOf(m, peer) {
  return m.page.evaluate((p) => window.routeOf(p), peer);
}

async function waitRtc(a, b) {
  for (let i = 0; i < 200; i++) {
    const r = await routeOf(a, b.id);
    if (r?.rtcUp && r.best === 'rtc') return true;
    await sleep(100);
  }
  return false;
}

export async function routingBench() {
  const browser = await launch();
  try {
    const venue = `bench-route-${Date.now()}`;
    const a = await member(browser, venue, 'kiosk');
    const b = await member(browser, venue, 'pos');
    const c = await member(browser, `${venue}-b`, 'kiosk', { webrtc: '0' });
    const d = await member(browser, `${venue}-b`, 'pos', { webrtc: '0' });
    // Warm up: presence, the data channel, the broker pair's first round trips.
    await a.page.evaluate(pings, [b.id, 5, 'warm']);
    await c.page.evaluate(pings, [d.id, 5, 'warm']);
    if (!(await waitRtc(a, b))) throw new Error('no data channel between the pages');
    const rtc = await a.page.evaluate(pings, [b.id, TRIPS, 'rtc']);
    const broker = await c.page.evaluate(pings, [d.id, TRIPS, 'broker']);
    const fallback = [];
    for (let k = 0; k < FALLBACKS; k++) {
      if (!(await waitRtc(a, b))) break;
      await sleep(500);
      const ms = await a.page.evaluate(async ([peer, k]) => {
        window.closeChannels();
        const t0 = performance.now();
        const back = new Promise((r) => {
          const prev = window.onMessage;
          window.onMessage = (m) => { if (m.text === `pong-fb${k}-0`) { window.onMessage = prev; r(); } else prev?.(m); };
        });
        window.mesh.send(peer, `ping-fb${k}-0`);
        await back;
        return performance.now() - t0;
      }, [b.id, k]);
      fallback.push(ms);
    }
    await Promise.all([a, b, c, d].map((m) => m.context.close()));
    const f = (x) => (x === undefined ? 'n/a' : x.toFixed(2));
    return [
      { what: `message round trip over a data channel p50, ms (${TRIPS} sequential)`, ours: f(pct(rtc, 0.5)), peer: 'same over the broker (ours)', peerValue: f(pct(broker, 0.5)), ratio: f(pct(rtc, 0.5) / pct(broker, 0.5)) },
      { what: `message round trip over a data channel p99, ms`, ours: f(pct(rtc, 0.99)), peer: 'same over the broker (ours)', peerValue: f(pct(broker, 0.99)), ratio: f(pct(rtc, 0.99) / pct(broker, 0.99)) },
      { what: `fallback: channel closed, then send → reply (broker), median of ${fallback.length}, ms`, ours: f(pct(fallback, 0.5)), peer: 'seed 002 budget', peerValue: '2000' },
    ];
  } finally {
    await browser.close();
  }
}
