// MQTT over WebSocket: venuemesh's MqttClient against MQTT.js 5.16, same run,
// same broker (scripts/bench: Mosquitto with max_queued_messages 0 and
// max_inflight_messages 0), same headless Chromium, MQTT 3.1.1 for both.
//
// Two pages per client (six with the floor), each its own browser context
// (device): a publisher and a subscriber. Page side: tests/bench/pages/mqtt-bench.mjs.
//
// throughput: N (10,000) × 200 B fired back to back by the publisher; the
//   subscriber (subscribed at the same QoS) notes when the N-th arrives;
//   msg/s = N ÷ (first publish call → N-th receipt), both read as
//   performance.timeOrigin + performance.now(). Connections are made first
//   and warmed up with one run of 1,000; then RUNS (5) runs per client and
//   QoS, the order rotated each run; the median is reported.
// round trip: the publisher page publishes to ping, the subscriber page
//   (the echo) republishes what it gets to pong, the publisher waits for it:
//   TRIPS (2,000) sequential trips per client after 50 warm-up ones, run in
//   blocks of RT_BLOCK (100) with the clients interleaved (A/B/C, B/C/A,
//   C/A/B, …) so load drift on this shared machine hits them alike; p50 / p99
//   over all of a client's trips (p99 of 2,000 is the 20th slowest).
// Both measurements use the same 200 B payload for every client; venuemesh
//   is loaded from the `venuemesh/mqtt` entry (pkg/mqtt/, what an MQTT-only
//   app imports; VM_BENCH_MQTT_ENTRY=full loads the whole package instead).
// Every wait is bounded: a broken client gives an error row, not a hang.
// Driver: tests/bench/cdp.mjs (DevTools protocol without the Network domain)
// by default, because playwright-core's per-WebSocket-frame instrumentation
// costs more than the clients do (see cdp.mjs); VM_BENCH_DRIVER=playwright
// drives the pages with playwright-core instead.
// A third client at QoS 0 (throughput and round trip, where it echoes like
// the others; VM_BENCH_MQTT_FLOOR=0 leaves it out): a raw WebSocket that does
// no MQTT client work (pages/mqtt-bench.mjs `floor`): hand-made PUBLISH
// frames out; in, only the payload's offset (no topic decoding, no
// subscription matching, one packet per frame assumed). It does less than
// any MQTT client must, so it is a bound, not a peer: the most any client can
// get from this browser and broker here.
// VM_BENCH_MQTT_FRAMES=1 also counts the WebSocket frames each page sends
// (a wrapper around WebSocket.prototype.send, so off by default): Mosquitto
// 2.0.11 can stall ≈ 100 ms on frames sent back to back (toolchain notes).
// Chromium only: WebDriver has no init scripts.
// VM_BENCH_MQTT_PROFILE=DIR (Chromium via cdp.mjs): Chromium's sampling CPU
// profiler (DevTools `Profiler`, 50 µs) runs on every page during the
// measured QoS 0 throughput runs and round trips, and DIR gets one
// `.cpuprofile` per page and measurement (open in DevTools, or summarise
// with `node tests/bench/mqtt-profile.mjs DIR/*.cpuprofile`). It slows the
// pages: figures from such a run are not comparable.
// mqttBench('webkit') runs the same in WebKit (Debian's WebKitGTK MiniBrowser
// over WebDriver, tests/e2e/webkit.mjs): each page its own MiniBrowser, both
// clients in the same WebKit run. The bench page is cross-origin isolated
// (scripts/serve.mjs), so performance.now() has 20 µs steps in WebKit (1 ms
// otherwise) and 5 µs in Chromium: fine enough for sub-millisecond trips.
import { launch, launchWebKit, BROKER_AUTH } from '../e2e/lib.mjs';
import { launchCdp } from './cdp.mjs';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const BROKER = process.env.VM_BENCH_BROKER || 'ws://127.0.0.1:19101';
const N = Number(process.env.VM_BENCH_MQTT_N || 10_000);
const RUNS = Number(process.env.VM_BENCH_MQTT_RUNS || 5);
const TRIPS = Number(process.env.VM_BENCH_MQTT_TRIPS || 2_000);
const RT_BLOCK = Number(process.env.VM_BENCH_MQTT_RT_BLOCK || 100);
const SIZE = 200;
const WARMUP_N = 1_000, WARMUP_TRIPS = 50;
const LIMIT_MS = 15 * 60_000; // the whole MQTT benchmark
const FLOOR = process.env.VM_BENCH_MQTT_FLOOR !== '0';
const ENTRY = process.env.VM_BENCH_MQTT_ENTRY === 'full' ? '/pkg/venuemesh.js' : '/pkg/mqtt/venuemesh_mqtt.js';
// VM_BENCH_MQTT_ALT=/.run/pages/…/venuemesh_mqtt.js: a fourth client, venuemesh
// from another build (copy a pkg/mqtt/ there first), measured interleaved with
// the others in the same run: an A/B test of a change under the same load.
const ALT = process.env.VM_BENCH_MQTT_ALT || '';
// VM_BENCH_MQTT_QOS=0 (or 1): that QoS only.
const QOSES = (process.env.VM_BENCH_MQTT_QOS ?? '0,1').split(',').filter(Boolean).map(Number);
const SIDES = { ours: 'venuemesh', peer: 'mqttjs', ...(FLOOR ? { floor: 'floor' } : {}), ...(ALT ? { alt: 'venuemesh' } : {}) };
const PEER = 'MQTT.js 5.16';
const RUN_ID = randomBytes(3).toString('hex');
const FRAMES = process.env.VM_BENCH_MQTT_FRAMES === '1';
const DRIVER = process.env.VM_BENCH_DRIVER === 'playwright' ? 'playwright' : 'cdp';
const PROFILE = process.env.VM_BENCH_MQTT_PROFILE || '';

/** Starts the CPU profiler on `pages` (no-op unless VM_BENCH_MQTT_PROFILE and cdp.mjs). */
async function profileStart(pages) {
  if (!PROFILE) return;
  for (const p of Object.values(pages)) {
    if (!p.page.cdp) continue;
    await p.page.cdp('Profiler.enable');
    await p.page.cdp('Profiler.setSamplingInterval', { interval: 50 });
    await p.page.cdp('Profiler.start');
  }
}
/** Stops it and writes DIR/{side}-{role}-{what}.cpuprofile. */
async function profileStop(side, pages, what) {
  if (!PROFILE) return;
  mkdirSync(PROFILE, { recursive: true });
  for (const [role, p] of Object.entries(pages)) {
    if (!p.page.cdp) continue;
    const { profile } = await p.page.cdp('Profiler.stop');
    writeFileSync(`${PROFILE}/${side}-${role}-${what}.cpuprofile`, JSON.stringify(profile));
  }
}

// --expose-gc so each run starts from a collected heap.
const EXTRA_ARGS = ['--js-flags=--expose-gc'];

const nodeWithin = (promise, ms, what) => {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from the page within ${ms} ms`)), ms);
  })]).finally(() => clearTimeout(timer));
};
/** page.evaluate with a Node-side deadline too (a hung page never answers). */
const ev = (side, page, fn, arg, ms, what) => nodeWithin(page.page.evaluate(fn, arg), ms, `${side}: ${what}`);

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmtRate = (x) => `${Math.round(x).toLocaleString('en-US')} msg/s`;
const fmtMs = (x) => `${x.toFixed(3)} ms`;

async function openPage(browser, side, role) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const p = { page, errors: [] };
  page.on('pageerror', (e) => p.errors.push(String(e)));
  if (FRAMES && page.addInitScript) {
    await page.addInitScript(() => {
      window.__sent = { frames: 0, bytes: 0 };
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (d) {
        window.__sent.frames++; window.__sent.bytes += d.byteLength ?? d.size ?? d.length ?? 0;
        return send.call(this, d);
      };
    });
  }
  await nodeWithin(page.goto(`${BASE}/tests/bench/pages/mqtt.html`), 20_000, `${side}: loading the page`);
  await ev(side, p, ([which, url, id, auth, entry]) => window.bench.init(which, url, id, auth, entry),
    [SIDES[side], BROKER, `bench-${RUN_ID}-${side}-${role}`, BROKER_AUTH, side === 'alt' ? ALT : ENTRY], 30_000, 'connect');
  return p;
}

const framesReset = async (side, ...ps) => {
  if (FRAMES) for (const p of ps) await ev(side, p, () => { window.__sent = { frames: 0, bytes: 0 }; }, null, 10_000, 'frames');
};
const framesText = async (side, pages) => {
  if (!FRAMES) return '';
  const [a, b] = [await ev(side, pages.pub, () => window.__sent, null, 10_000, 'frames'), await ev(side, pages.sub, () => window.__sent, null, 10_000, 'frames')];
  return `; WebSocket frames sent: publisher ${a.frames} (${a.bytes} B), subscriber ${b.frames} (${b.bytes} B)`;
};

async function throughput(side, pages, qos, n, tag) {
  const { pub, sub } = pages;
  const topic = `bench/${RUN_ID}/${side}/tp/q${qos}/${tag}`;
  await ev(side, pub, () => window.bench.gc(), null, 10_000, 'gc');
  await ev(side, sub, () => window.bench.gc(), null, 10_000, 'gc');
  await ev(side, sub, ([t, q, k]) => window.bench.tpArm(t, q, k), [topic, qos, n], 15_000, 'subscribe');
  await framesReset(side, pub, sub);
  const profiling = qos === 0 && tag === 'run0';
  if (profiling) await profileStart(pages);
  const p = await ev(side, pub, ([t, q, k, s]) => window.bench.tpPublish(t, q, k, s, 60_000), [topic, qos, n, SIZE], 70_000, 'publish');
  if (p.error) throw new Error(`${side} publisher, QoS ${qos}: ${p.error}`);
  const s = await ev(side, sub, (ms) => window.bench.tpResult(ms), 60_000, 70_000, 'receive');
  if (profiling) await profileStop(side, pages, 'tp-q0');
  const extra = await ev(side, sub, (t) => window.bench.tpDisarm(t), topic, 10_000, 'unsubscribe');
  if (s.error) throw new Error(`${side} subscriber, QoS ${qos}: ${s.error}`);
  const ms = s.tLast - p.t0;
  return { rate: n / (ms / 1000), ms, callsMs: p.tCalls - p.t0, doneMs: p.tDone - p.t0, firstMs: s.tFirst - p.t0, extra, frames: await framesText(side, pages) };
}

/** Subscribes the echo and the publisher, then the untimed warm-up trips. */
async function roundTripStart(side, pages, qos) {
  const { pub, sub } = pages;
  const ping = `bench/${RUN_ID}/${side}/rt/q${qos}/ping`, pong = `bench/${RUN_ID}/${side}/rt/q${qos}/pong`;
  await ev(side, pub, () => window.bench.gc(), null, 10_000, 'gc');
  await ev(side, sub, () => window.bench.gc(), null, 10_000, 'gc');
  await ev(side, sub, ([i, o, q]) => window.bench.echo(i, o, q), [ping, pong, qos], 15_000, 'echo subscribe');
  await ev(side, pub, ([i, o, q, w, s]) => window.bench.rttStart(i, o, q, w, s, 5_000),
    [ping, pong, qos, WARMUP_TRIPS, SIZE], 60_000, 'round-trip warm-up');
  await framesReset(side, pub, sub);
  return { ping, times: [] };
}

/** `n` timed trips, appended to `state.times`. */
async function roundTripBlock(side, pages, state, n, profile) {
  if (profile) await profileStart(pages);
  const times = await ev(side, pages.pub, (k) => window.bench.rttBlock(k), n, 5_000 * n + 10_000, 'round trips');
  if (profile) await profileStop(side, pages, profile);
  state.times.push(...times);
}

async function roundTripStop(side, pages, state) {
  const { pub, sub } = pages;
  await ev(side, pub, () => window.bench.rttStop(), null, 10_000, 'round-trip stop').catch(() => {});
  const errs = await ev(side, sub, (t) => { window.bench.unsubscribe(t); return window.bench.echoErrors(); }, state.ping, 10_000, 'echo stop').catch(() => []);
  if (errs.length) console.log(`  ${side} echo page publish errors: ${errs.join('; ')}`);
  const times = [...state.times].sort((a, b) => a - b);
  if (!times.length) throw new Error('no round trips');
  const rank = (p) => times[Math.max(0, Math.ceil(p * times.length) - 1)];
  return { n: times.length, p50: rank(0.5), p99: rank(0.99), max: times[times.length - 1],
    mean: times.reduce((a, b) => a + b, 0) / times.length, over50ms: times.filter((x) => x > 50).length,
    frames: await framesText(side, pages) };
}

/**
 * The round trips of `order`'s clients at `qos`, interleaved: block b runs
 * the clients in `order` rotated by b, so none is always first or last.
 */
async function roundTrips(order, qos, sides, fail) {
  const states = {};
  for (const side of order) {
    try { states[side] = await roundTripStart(side, sides[side].pages, qos); } catch (e) { fail(side, e); }
  }
  const blocks = Math.ceil(TRIPS / RT_BLOCK);
  for (let b = 0; b < blocks; b++) {
    const n = Math.min(RT_BLOCK, TRIPS - b * RT_BLOCK);
    const live = order.filter((s) => states[s] && !states[s].failed && !sides[s].dead);
    for (let k = 0; k < live.length; k++) {
      const side = live[(b + k) % live.length];
      try { await roundTripBlock(side, sides[side].pages, states[side], n, b === 1 && `rt-q${qos}`); } catch (e) { states[side].failed = true; fail(side, e); }
    }
  }
  const out = {};
  for (const side of order) {
    if (!states[side] || sides[side].dead) continue;
    try {
      const x = await roundTripStop(side, sides[side].pages, states[side]);
      if (!states[side].failed) out[side] = x;
    } catch (e) { fail(side, e); }
  }
  return out;
}

/** The MQTT rows for `engine` ('chromium' or 'webkit'). */
export async function mqttBench(engine = 'chromium') {
  const watchdog = setTimeout(() => {
    console.error(`mqtt bench: still running after ${LIMIT_MS / 60_000} min: giving up`);
    process.exit(1);
  }, LIMIT_MS);
  watchdog.unref();
  const browser = engine === 'webkit' ? await launchWebKit()
    : DRIVER === 'playwright' ? await launch(EXTRA_ARGS) : await launchCdp(EXTRA_ARGS);
  const driver = engine === 'webkit' ? 'WebKit via WebDriver (tests/e2e/webkit.mjs)'
    : DRIVER === 'cdp' ? 'Chromium via tests/bench/cdp.mjs' : 'Chromium via playwright-core';
  const sides = {};
  // A failed measurement leaves an error row and the rest goes on; a page
  // that stopped answering (or never connected) ends that client's part.
  const fail = (side, e, fatal = false) => {
    const msg = String(e?.message ?? e).split('\n')[0];
    sides[side].errors.push(msg);
    if (fatal || /no answer from the page/.test(msg)) sides[side].dead = true;
    console.log(`  ${side} (${SIDES[side]}) failed: ${msg}`);
  };
  const res = {};
  try {
    for (const side of Object.keys(SIDES)) {
      sides[side] = { errors: [], dead: false };
      res[side] = { tp: { 0: [], 1: [] }, rt: {} };
      try { sides[side].pages = { pub: await openPage(browser, side, 'pub'), sub: await openPage(browser, side, 'sub') }; }
      catch (e) { fail(side, e, true); }
    }
    const live = (order) => order.filter((s) => !sides[s].dead);

    console.log(`mqtt: broker ${BROKER}, ${N.toLocaleString('en-US')} × ${SIZE} B, ${RUNS} runs; ${TRIPS} round trips per client in blocks of ${RT_BLOCK}, interleaved; venuemesh from ${ENTRY}; ${driver}`);
    for (const qos of QOSES) {
      const sidesAt = (order) => live(order.filter((s) => s in SIDES && (qos === 0 || s !== 'floor')));
      for (const side of sidesAt(Object.keys(SIDES))) {
        try { await throughput(side, sides[side].pages, qos, WARMUP_N, 'warmup'); } catch (e) { fail(side, e); }
      }
      for (let r = 0; r < RUNS; r++) {
        // Rotated each run (A/B/C, B/C/A, C/A/B, …): none always goes first.
        const all = ['ours', 'peer', 'floor', 'alt'], order = all.map((_, k) => all[(r + k) % all.length]);
        for (const side of sidesAt(order)) {
          try {
            const x = await throughput(side, sides[side].pages, qos, N, `run${r}`);
            res[side].tp[qos].push(x);
            console.log(`  throughput QoS ${qos} ${side.padEnd(4)} run ${r + 1}: ${fmtRate(x.rate)} (last receipt ${x.ms.toFixed(0)} ms, ` +
              `publish calls ${x.callsMs.toFixed(0)} ms, all resolved ${x.doneMs.toFixed(0)} ms, first receipt ${x.firstMs.toFixed(0)} ms` +
              `${x.extra ? `, ${x.extra} duplicates` : ''}${x.frames})`);
          } catch (e) { fail(side, e); }
        }
      }
    }
    for (const qos of QOSES) {
      // The floor echoes at QoS 0 too: the round trip with no MQTT work.
      const order = live([...(qos ? ['ours', 'peer'] : ['ours', 'peer', ...(FLOOR ? ['floor'] : [])]), ...(ALT ? ['alt'] : [])]);
      const got = await roundTrips(order, qos, sides, fail);
      for (const [side, x] of Object.entries(got)) {
        res[side].rt[qos] = x;
        console.log(`  round trip QoS ${qos} ${side.padEnd(4)}: ${x.n} trips, p50 ${fmtMs(x.p50)}, p99 ${fmtMs(x.p99)}, max ${fmtMs(x.max)}, mean ${fmtMs(x.mean)}, ${x.over50ms} trips over 50 ms${x.frames}`);
      }
    }
    for (const side of Object.keys(SIDES)) {
      for (const p of Object.values(sides[side].pages ?? {})) if (p.errors.length) console.log(`  ${side} page errors: ${p.errors.slice(0, 3).join(' | ')}`);
    }
    if (!sides.ours.dead) {
      const st = await ev('ours', sides.ours.pages.pub, () => window.bench.stats(), null, 10_000, 'stats').catch((e) => ({ error: e.message }));
      console.log(`  ours publisher stats(): ${JSON.stringify(st)}`);
    }
  } finally {
    clearTimeout(watchdog);
    await nodeWithin(browser.close(), 20_000, 'closing the browser').catch((e) => console.error(e.message));
  }

  const value = (side, get, fmt) => {
    if (!res[side]) return { v: null, s: 'n/a' };
    try { const v = get(res[side]); if (v === undefined || Number.isNaN(v)) throw 0; return { v, s: fmt(v) }; }
    catch { return { v: null, s: sides[side].errors.length ? 'error' : 'n/a' }; }
  };
  /** `side` against `other` (default: venuemesh against MQTT.js). */
  const row = (what, get, fmt, side = 'ours', other = 'peer', otherName = PEER) => {
    const o = value(side, get, fmt), p = value(other, get, fmt);
    return { what, ours: o.s, peer: otherName, peerValue: p.s, ratio: o.v !== null && p.v !== null ? (o.v / p.v).toFixed(2) : '' };
  };
  const RAW = 'raw WebSocket';
  const tpMedian = (qos) => (r) => (r.tp[qos].length === RUNS ? median(r.tp[qos].map((x) => x.rate)) : undefined);
  const rows = [];
  for (const qos of QOSES) {
    rows.push(row(`MQTT throughput QoS ${qos}, ${N.toLocaleString('en-US')} × ${SIZE} B, median of ${RUNS} (goal ≥ 2×)`, tpMedian(qos), fmtRate));
    if (FLOOR && qos === 0) {
      rows.push(row('  same, against the floor (raw WebSocket, no MQTT work; goal ≥ 0.95×)', tpMedian(0), fmtRate, 'ours', 'floor', RAW));
      rows.push(row('  the floor against MQTT.js', tpMedian(0), fmtRate, 'floor', 'peer'));
    }
    if (ALT) rows.push(row(`  alt (${ALT}) against venuemesh`, tpMedian(qos), fmtRate, 'alt', 'ours', 'venuemesh'));
  }
  for (const qos of QOSES) {
    for (const p of ['p50', 'p99']) {
      const get = (r) => r.rt[qos][p];
      rows.push(row(`MQTT round trip via echo page QoS ${qos}, ${p} of ${TRIPS} (goal ≤ 0.9×)`, get, fmtMs));
      if (FLOOR && qos === 0) rows.push(row('  same, against the floor (raw WebSocket echo, no MQTT work)', get, fmtMs, 'ours', 'floor', RAW));
      if (ALT && qos === 0) rows.push(row(`  alt (${ALT}) against venuemesh`, get, fmtMs, 'alt', 'ours', 'venuemesh'));
    }
  }
  const errors = Object.entries(sides).flatMap(([side, s]) => s.errors.map((e) => `${side} (${SIDES[side]}): ${e}`));
  if (errors.length) {
    console.error(`mqtt bench errors:\n  ${errors.join('\n  ')}`);
    process.exitCode = 1;
  }
  return rows;
}
