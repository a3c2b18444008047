// Hub failover, end to end: real pages (tests/e2e/pages/mesh.html), the real
// broker, heartbeats every 300 ms (heartbeatIntervalMs, docs/election.md).
//
// close: the hub page's browser context is closed; figure = time from the
//   close call until another page's `becomeHub` event (both read from the
//   machine's wall clock). Peer in the same run: Mosquitto's Last Will alone
//   (an MqttClient page with a Will is closed; time until a subscriber page
//   receives the Will), since our failover cannot beat the Will it waits for
//   unless the clean leave wins.
// hang: the hub page's JavaScript is paused (CDP Debugger.pause); figure =
//   time until another page's `becomeHub`. Peer: Mosquitto's keepalive Will
//   for a client with keepalive 2 s that stops talking (the broker checks
//   keepalives only every few seconds).
// Median of RUNS runs each; every wait is bounded.
import { launch, BROKER_AUTH, brokerAuthFragment } from '../e2e/lib.mjs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const BROKER = process.env.VM_BENCH_BROKER || 'ws://127.0.0.1:19101';
const RUNS = Number(process.env.VM_BENCH_ELECTION_RUNS || 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function member(browser, venue, kind) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const q = new URLSearchParams({ venue, broker: BROKER, kind, hb: '300' });
  await page.goto(`${BASE}/tests/e2e/pages/mesh.html?${q}${brokerAuthFragment(BROKER_AUTH, BROKER)}`);
  await until(() => page.evaluate(() => !!window.mesh || window.openError), 10_000, 'mesh open');
  const failed = await page.evaluate(() => window.openError ?? null);
  if (failed) throw new Error(`mesh page failed to open: ${failed}`);
  return { context, page, id: await page.evaluate(() => window.mesh.deviceId) };
}

const becameHubAt = (m, after) => m.page.evaluate((t) => {
  const e = window.events.find((x) => x.ev === 'becomeHub' && x.at >= t);
  return e ? e.at : null;
}, after);

async function failoverRun(browser, mode, run) {
  const venue = `bench-fo-${mode}-${run}-${Date.now()}`;
  const hub = await member(browser, venue, 'kiosk');
  const next = await member(browser, venue, 'pos');
  const other = await member(browser, venue, 'phone');
  await until(async () => (await Promise.all([hub, next, other].map((m) => m.page.evaluate(() => window.mesh.hub))))
    .every((h) => h === hub.id), 10_000, 'first hub');
  await sleep(500);
  const t0 = Date.now();
  let cdp;
  if (mode === 'close') await hub.context.close();
  else { cdp = await hub.context.newCDPSession(hub.page); await cdp.send('Debugger.enable'); await cdp.send('Debugger.pause'); }
  const at = await until(() => becameHubAt(next, t0), 15_000, 'new hub');
  if (cdp) { await cdp.send('Debugger.resume').catch(() => {}); await hub.context.close(); }
  await next.context.close(); await other.context.close();
  return at - t0;
}

/** Mosquitto's Will alone: closed page (mode close) or silent client (hang). */
async function willRun(browser, mode, run) {
  const topic = `bench/will/${mode}/${run}/${Date.now()}`;
  const mk = async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${BASE}/tests/e2e/pages/mesh.html?venue=x&broker=${encodeURIComponent(BROKER)}&kind=phone&hb=300${brokerAuthFragment(BROKER_AUTH, BROKER)}`);
    await until(() => page.evaluate(() => !!window.mesh), 10_000, 'page');
    return { context, page };
  };
  const sub = await mk();
  await sub.page.evaluate(async ({ broker, topic, auth }) => {
    const { MqttClient } = await import('/pkg/venuemesh.js');
    const c = window.willSub = await MqttClient.connect({ brokers: [broker], ...auth });
    window.willAt = null;
    c.subscribe(topic, () => { window.willAt = performance.timeOrigin + performance.now(); }, { qos: 1 });
    await c.subscribed(topic);
  }, { broker: BROKER, topic, auth: BROKER_AUTH });
  const dying = await mk();
  await dying.page.evaluate(async ({ broker, topic, keepAlive, auth }) => {
    const { MqttClient } = await import('/pkg/venuemesh.js');
    window.dying = await MqttClient.connect({ brokers: [broker], keepAlive, will: { topic, payload: 'gone', qos: 1 }, ...auth });
  }, { broker: BROKER, topic, keepAlive: mode === 'close' ? 30 : 2, auth: BROKER_AUTH });
  await sleep(300);
  const t0 = Date.now();
  let cdp;
  if (mode === 'close') await dying.context.close();
  else { cdp = await dying.context.newCDPSession(dying.page); await cdp.send('Debugger.enable'); await cdp.send('Debugger.pause'); }
  const at = await until(() => sub.page.evaluate(() => window.willAt), 20_000, 'will');
  if (cdp) { await cdp.send('Debugger.resume').catch(() => {}); await dying.context.close(); }
  await sub.context.close();
  return at - t0;
}

export async function electionBench() {
  const browser = await launch();
  try {
    const rows = [];
    for (const mode of ['close', 'hang']) {
      const ours = [], peer = [];
      const runs = mode === 'hang' ? Math.min(RUNS, 3) : RUNS;
      for (let i = 0; i < runs; i++) {
        ours.push(await failoverRun(browser, mode, i));
        peer.push(await willRun(browser, mode, i));
      }
      const o = median(ours), p = median(peer);
      rows.push({
        what: mode === 'close' ? 'hub page closed → new hub (median ms)' : 'hub hung → new hub (median ms, hb 300 ms)',
        ours: `${o.toFixed(0)} ms [${ours.map((x) => x.toFixed(0)).join(', ')}]`,
        peer: mode === 'close' ? 'Mosquitto Will on close' : 'Mosquitto keepalive Will (2 s)',
        peerValue: `${p.toFixed(0)} ms`,
        ratio: (o / p).toFixed(2),
      });
    }
    return rows;
  } finally {
    await browser.close();
  }
}
