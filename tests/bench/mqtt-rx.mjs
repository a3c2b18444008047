// The subscriber's receive path alone: how long a page takes per incoming
// QoS 0 PUBLISH, with nothing else on the machine working at the same time.
//
//   node tests/bench/mqtt-rx.mjs [ENTRY ...]     (static server: VM_BENCH_BASE)
//
// `scripts/bench mqtt` measures a whole burst (publisher page, Mosquitto,
// subscriber page) on this 2-core machine: the pages and the broker compete
// for the cores, so a change of a few µs per message on one page is within
// the run-to-run noise. Here a stand-in broker in this process (CONNACK,
// SUBACK, then N PUBLISH frames of 200 B, one packet per WebSocket frame as
// Mosquitto sends them, all written at once) feeds one subscriber page at a
// time; the page notes the first and the N-th message (the bench page's
// `tpArm`), and µs/message = (last − first) / (N − 1). The stand-in writes
// the burst far faster than any page reads it, so that is the page's cost.
// Clients: the raw-WebSocket floor and each ENTRY (a venuemesh MQTT entry
// the static server serves, default /pkg/mqtt/venuemesh_mqtt.js), each in
// its own page, ROUNDS (VM_BENCH_RX_ROUNDS, 7) rounds in rotated order;
// prints each client's median and its ratio to the floor's.
// VM_BENCH_RX_PROFILE=DIR writes `.cpuprofile`s per client of the middle
// round, rx-* of the burst and synth-* of the synthetic loop (summarise with
// tests/bench/mqtt-profile.mjs).
import { WebSocketServer } from 'ws';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { launchCdp } from './cdp.mjs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const N = Number(process.env.VM_BENCH_RX_N || 20_000);
const ROUNDS = Number(process.env.VM_BENCH_RX_ROUNDS || 7);
const PROFILE = process.env.VM_BENCH_RX_PROFILE || '';
const ENTRIES = process.argv.slice(2).length ? process.argv.slice(2) : ['/pkg/mqtt/venuemesh_mqtt.js'];
const TOPIC = 'bench/rx/0123456789/tp/q0/run'; // as long as the MQTT bench's topics

// --- the stand-in broker -----------------------------------------------------
const varint = (n) => { const out = []; do { let b = n & 127; n >>= 7; if (n) b |= 128; out.push(b); } while (n); return out; };
const publishFrame = (topic, payload) => {
  const t = Buffer.from(topic), body = [t.length >> 8, t.length & 255, ...t, ...payload];
  return Buffer.from([0x30, ...varint(body.length), ...body]);
};
// Each packet in a WebSocket binary frame of its own (server frames are not
// masked), all N frames in one buffer: one socket write, not N (ws.send per
// frame made this process the bottleneck).
const wsFrame = (p) => Buffer.concat([Buffer.from(p.length < 126 ? [0x82, p.length] : [0x82, 126, p.length >> 8, p.length & 255]), p]);
const burst = Buffer.concat(Array.from({ length: N }, (_, i) => wsFrame(publishFrame(TOPIC, Buffer.from(String(i).padStart(8, '0') + 'x'.repeat(192))))));

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'mqtt' });
wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    const b = Buffer.from(data);
    for (let at = 0; at < b.length;) { // several packets per frame
      let i = at + 1, len = 0, shift = 0, x;
      do { x = b[i++]; len |= (x & 127) << shift; shift += 7; } while (x & 128);
      const type = b[at] >> 4, body = b.subarray(i, i + len);
      at = i + len;
      if (type === 1) ws.send(Buffer.from([0x20, 2, 0, 0])); // CONNACK
      else if (type === 8) ws.send(Buffer.from([0x90, 3, body[0], body[1], 0])); // SUBACK, QoS 0
      else if (type === 10) ws.send(Buffer.from([0xb0, 2, body[0], body[1]])); // UNSUBACK
      else if (type === 12) ws.send(Buffer.from([0xd0, 0])); // PINGRESP
      else if (type === 3) { // a PUBLISH to rx/go: the burst
        const tl = (body[0] << 8) | body[1];
        if (body.subarray(2, 2 + tl).toString() === 'rx/go') ws._socket.write(burst);
      }
    }
  });
});
await new Promise((r) => wss.once('listening', r));
const url = `ws://127.0.0.1:${wss.address().port}`;

// --- CPU time ---------------------------------------------------------------------
// Wall time on this shared 2-core machine includes waiting for a core; the CPU
// time every thread of every Chromium process spent (renderers, browser and
// network service) does not: /proc/<pid>/task/<tid>/schedstat, first field,
// in ns, summed over this process's descendants.
const descendants = () => {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(d)) continue;
    try { parent.set(Number(d), Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1])); } catch {}
  }
  const mine = new Set([process.pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, pp] of parent) if (!mine.has(pid) && mine.has(pp)) { mine.add(pid); grew = true; }
  }
  mine.delete(process.pid); // this process: the stand-in broker
  return mine;
};
const cpuNs = () => {
  let ns = 0;
  for (const pid of descendants()) {
    try {
      for (const t of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {}
  }
  return ns;
};
/** CPU time of the renderers' main threads (tid = pid), ns: one page works at a time. */
const pageNs = () => {
  let ns = 0;
  for (const pid of descendants()) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) ns += Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {}
  }
  return ns;
};

// --- the pages ------------------------------------------------------------------
const browser = await launchCdp(['--js-flags=--expose-gc']);
const clients = [{ name: 'floor', which: 'floor' }, ...ENTRIES.map((e) => ({ name: e, which: 'venuemesh', entry: e }))];
for (const c of clients) {
  const context = await browser.newContext();
  c.page = await context.newPage();
  // Keeps the page's WebSocket reachable for the synthetic measurement.
  await c.page.addInitScript(() => {
    const WS = window.WebSocket;
    window.WebSocket = function (...a) { const ws = new WS(...a); window.__ws = ws; return ws; };
    window.WebSocket.prototype = WS.prototype;
  });
  await c.page.goto(`${BASE}/tests/bench/pages/mqtt.html`);
  c.main = [];
  c.synth = [];
  await c.page.evaluate(([w, u, e]) => window.bench.init(w, u, `rx-${Math.random()}`, {}, e), [c.which, url, c.entry]);
  c.us = [];
  c.cpu = [];
}
const once = async (c, round) => {
  const p = c.page;
  await p.evaluate(() => window.bench.gc());
  await p.evaluate(([t, n]) => window.bench.tpArm(t, 0, n), [TOPIC, N]);
  const profiling = PROFILE && round === ROUNDS >> 1 && p.cdp;
  if (profiling) {
    await p.cdp('Profiler.enable');
    await p.cdp('Profiler.setSamplingInterval', { interval: 50 });
    await p.cdp('Profiler.start');
  }
  const cpu0 = cpuNs(), main0 = pageNs();
  await p.evaluate(() => window.bench.tpPublish('rx/go', 0, 1, 8, 10_000));
  const r = await p.evaluate(() => window.bench.tpResult(60_000));
  c.main.push((pageNs() - main0) / 1000 / N);
  c.cpu.push((cpuNs() - cpu0) / 1000 / N);
  if (profiling) {
    const { profile } = await p.cdp('Profiler.stop');
    mkdirSync(PROFILE, { recursive: true });
    writeFileSync(`${PROFILE}/rx-${c.name.replace(/[^a-z0-9]+/gi, '_')}.cpuprofile`, JSON.stringify(profile));
  }
  const extra = await p.evaluate((t) => window.bench.tpDisarm(t, 50), TOPIC);
  if (r.error || extra) throw new Error(`${c.name}: ${r.error ?? `${extra} duplicates`}`);
  // Synthetic: the socket's own `onmessage` called N times in a loop with one
  // MessageEvent of a PUBLISH frame: the page's JS and wasm per message
  // without Chromium's networking, on one core, timed in the page.
  await p.evaluate(([t, n]) => window.bench.tpArm(t, 0, n), [TOPIC, N]);
  const frame = [...publishFrame(TOPIC, Buffer.from('00000001' + 'x'.repeat(192)))];
  if (profiling) await p.cdp('Profiler.start');
  c.synth.push(await p.evaluate(([f, n]) => {
    const ev = new MessageEvent('message', { data: new Uint8Array(f).buffer });
    const t0 = performance.now();
    for (let i = 0; i < n; i++) window.__ws.onmessage(ev);
    return ((performance.now() - t0) * 1000) / n;
  }, [frame, N]));
  if (profiling) {
    const { profile } = await p.cdp('Profiler.stop');
    writeFileSync(`${PROFILE}/synth-${c.name.replace(/[^a-z0-9]+/gi, '_')}.cpuprofile`, JSON.stringify(profile));
  }
  await p.evaluate((t) => window.bench.tpDisarm(t, 0), TOPIC);
  return ((r.tLast - r.tFirst) * 1000) / (N - 1);
};
try {
  for (const c of clients) await once(c, -1); // warm-up (tier-up, heap)
  for (let r = 0; r < ROUNDS; r++) {
    const order = clients.map((_, k) => clients[(r + k) % clients.length]);
    for (const c of order) c.us.push(await once(c, r));
    console.log(`round ${r + 1}: ${clients.map((c) => `${c.name} ${c.us.at(-1).toFixed(2)} (cpu ${c.cpu.at(-1).toFixed(2)}, page ${c.main.at(-1).toFixed(2)}, synthetic ${c.synth.at(-1).toFixed(2)})`).join(', ')} µs/msg`);
  }
} finally {
  await browser.close();
  wss.close();
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const floorUs = median(clients[0].us), floorCpu = median(clients[0].cpu), floorMain = median(clients[0].main), floorSynth = median(clients[0].synth);
console.log(`${N.toLocaleString('en-US')} × 200 B QoS 0 into one page, ${ROUNDS} rounds, medians per message: wall time first→last message (floor's ÷ this), Chromium CPU time and the page's main thread's (this ÷ floor's, this − floor's):`);
for (const c of clients) {
  const us = median(c.us), cpu = median(c.cpu), main = median(c.main), synth = median(c.synth);
  console.log(`  ${c.name.padEnd(40)} wall ${us.toFixed(2)} µs (${(floorUs / us).toFixed(3)}×)  cpu ${cpu.toFixed(2)} µs (${(cpu / floorCpu).toFixed(3)}×, +${(cpu - floorCpu).toFixed(2)})` +
    `  page ${main.toFixed(2)} µs (${(main / floorMain).toFixed(3)}×, +${(main - floorMain).toFixed(2)})` +
    `  synthetic ${synth.toFixed(2)} µs (+${(synth - floorSynth).toFixed(2)})`);
}
