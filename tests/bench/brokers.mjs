// `scripts/bench brokers` (issue #21): how many devices one venue and how many
// venues one broker carry, and what a bridge adds. No browser: simulated
// devices are Node MQTT clients (MQTT.js over WebSocket, like the pages) in
// worker threads (./brokers-sim.mjs) that speak PROTOCOL.md — each publishes a
// signed HEARTBEAT envelope on vm/{venue}/hb/{device} every I ms and subscribes
// to vm/{venue}/hb/+ as a device does, and every receiver opens (verifies)
// each envelope and takes its delay as now − the envelope's HLC wall time (one
// process, one clock). The broker is a private Mosquitto from the shipped,
// locked-down config (config/mosquitto-test.conf), one account per venue.
//
// Rows: for growing devices per venue (one venue) and growing venues of 10
// devices (one broker): p50/p99 heartbeat delay, messages delivered per second,
// broker CPU (its /proc utime+stime over the window, % of one core) and the
// clients' CPU (this process, all threads: when client and broker together fill
// the machine's cores, the figure is the machine's limit, not the broker's).
// A series stops once p99 passes I or the broker sheds messages. Then the
// bridge: a publisher on the local broker, subscribers on the local and the
// cloud broker (config/bridge-*.conf), added latency = cloud − local.
// Envelope code: ./sim-wire.mjs only.
import mqtt from 'mqtt';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { availableParallelism, loadavg } from 'node:os';
import { randomBytes } from 'node:crypto';
import { startLockedBroker } from '../e2e/lib.mjs';
import { heartbeat, openHeartbeat, counterFloor } from './sim-wire.mjs';

const I = Number(process.env.VM_BENCH_HB_MS || 1000); // heartbeat interval of the simulated devices
const WARM_MS = 2_000, MEASURE_MS = Number(process.env.VM_BENCH_BROKERS_MS || 6_000);
const PER_VENUE = (process.env.VM_BENCH_DEVICES || '10,25,50,100,150,200,300,400,500').split(',').map(Number);
const VENUES = (process.env.VM_BENCH_VENUES || '5,10,20,40,80,160').split(',').map(Number);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { if (!xs.length) return NaN; const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const SIM = new URL('./brokers-sim.mjs', import.meta.url);
// Client threads: enough that one client event loop is not the limit (the machine's cores are shared with the broker).
const WORKERS = Number(process.env.VM_BENCH_WORKERS || Math.max(2, availableParallelism()));
const USER_HZ = 100; // /proc/{pid}/stat counts CPU time in 1/100 s on Linux

/** utime + stime of a process in seconds (fields 14 and 15 of /proc/{pid}/stat). */
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}
const selfCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; }; // all threads

/** Runs `venues` venues of `perVenue` devices on a fresh broker, the devices spread over WORKERS threads; the measured figures. */
async function load(venues, perVenue) {
  const accounts = Object.fromEntries(Array.from({ length: venues }, (_, v) => [`bench-v${v}-${randomBytes(2).toString('hex')}`, randomBytes(12).toString('hex')]));
  const broker = await startLockedBroker({ accounts, extra: 'max_queued_messages 10000' });
  const shares = Array.from({ length: WORKERS }, () => []);
  let k = 0;
  for (const [venue, password] of Object.entries(accounts)) for (let i = 0; i < perVenue; i++) shares[k++ % WORKERS].push({ venue, password });
  const workers = shares.filter((s) => s.length).map((devices) => new Worker(SIM, { workerData: { url: broker.url, devices, interval: I } }));
  const next = (w) => new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  try {
    await Promise.all(workers.map(next)); // 'ready'
    await sleep(WARM_MS);
    const b0 = cpuSeconds(broker.pid), s0 = selfCpu(), t0 = Date.now();
    for (const w of workers) w.postMessage('start');
    await sleep(MEASURE_MS);
    const results = await Promise.all(workers.map((w) => { const r = next(w); w.postMessage('stop'); return r; }));
    const secs = (Date.now() - t0) / 1000;
    const brokerCpu = (100 * (cpuSeconds(broker.pid) - b0)) / secs, clientCpu = (100 * (selfCpu() - s0)) / secs;
    const delays = results.flatMap((r) => Array.from(r.delays));
    const received = results.reduce((n, r) => n + r.received, 0);
    return {
      devices: venues * perVenue, p50: pct(delays, 0.5), p99: pct(delays, 0.99), msgsPerSec: received / secs, brokerCpu, clientCpu,
      load: loadavg()[0], // the machine's 1-minute load: other work on it shows here
      bad: results.reduce((n, r) => n + r.bad, 0), expected: venues * perVenue * perVenue * (1000 / I),
    };
  } finally {
    await Promise.all(workers.map(async (w) => { const r = next(w).catch(() => {}); w.postMessage('close'); await Promise.race([r, sleep(10_000)]); await w.terminate(); }));
    await broker.stop();
  }
}

const fmt = (r) => `p50 ${r.p50} ms, p99 ${r.p99} ms; ${Math.round(r.msgsPerSec).toLocaleString('en-US')} msg/s delivered ` +
  `(${Math.round(100 * r.msgsPerSec / r.expected)} % of ${Math.round(r.expected).toLocaleString('en-US')}); broker CPU ${r.brokerCpu.toFixed(0)} %, clients ${r.clientCpu.toFixed(0)} %; load ${r.load.toFixed(1)}`;

/** Latency through one broker vs. across the bridge (local → cloud), same publisher, same messages. */
async function bridgeLatency() {
  const venue = `bench-bridge-${randomBytes(2).toString('hex')}`, password = randomBytes(12).toString('hex');
  const cloud = await startLockedBroker({ conf: 'config/bridge-cloud.conf', accounts: { [venue]: password } });
  const local = await startLockedBroker({ conf: 'config/bridge-local.conf', accounts: { [venue]: password },
    vars: { VENUE: venue, BRIDGE_PASSWORD: password }, bridgeAddress: `127.0.0.1:${cloud.tcp}` });
  const clients = [];
  try {
    const connect = async (url) => { const c = await mqtt.connectAsync(url, { username: venue, password, reconnectPeriod: 0 }); clients.push(c); return c; };
    const pub = await connect(local.url), onLocal = await connect(local.url), onCloud = await connect(cloud.url);
    // Sub-millisecond: the publisher notes each envelope's send time by its counter.
    const sentAt = new Map();
    const got = { local: [], cloud: [] };
    for (const [name, c] of [['local', onLocal], ['cloud', onCloud]]) {
      c.on('message', (_t, p) => {
        const at = sentAt.get(openHeartbeat(p, venue).counter);
        if (at !== undefined) got[name].push(performance.now() - at);
      });
      await c.subscribeAsync(`vm/${venue}/hb/+`, { qos: 1 });
    }
    // Wait for the bridge: a message must come through to the cloud.
    let counter = counterFloor();
    const send = () => {
      counter += 1n;
      sentAt.set(counter, performance.now());
      return pub.publishAsync(`vm/${venue}/hb/pub`, heartbeat(venue, 'pub', counter), { qos: 0 });
    };
    for (let i = 0; i < 100 && got.cloud.length === 0; i++) { await send(); await sleep(100); }
    if (!got.cloud.length) throw new Error('nothing crossed the bridge in 10 s');
    got.local.length = 0; got.cloud.length = 0;
    for (let i = 0; i < 500; i++) { await send(); await sleep(10); }
    await sleep(500);
    return { n: 500, local: got.local, cloud: got.cloud };
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    await local.stop();
    await cloud.stop();
  }
}

export async function brokersBench() {
  const rows = [];
  console.log(`brokers: simulated devices (MQTT.js over WebSocket in ${WORKERS} threads, signed heartbeats every ${I} ms), Mosquitto with the shipped config`);
  // 1. One venue, growing.
  let lastOk = null;
  for (const n of PER_VENUE) {
    const r = await load(1, n);
    console.log(`  1 venue × ${n} devices: ${fmt(r)}`);
    rows.push({ what: `1 venue × ${n} devices: heartbeat delay`, ours: fmt(r) });
    if (r.p99 > I || r.msgsPerSec < 0.8 * r.expected) break; // over the bound, or the broker shed messages
    lastOk = n;
  }
  rows.push({ what: `devices per venue before p99 heartbeat delay > ${I} ms`, ours: lastOk === null ? `< ${PER_VENUE[0]}` : `≥ ${lastOk}${lastOk === PER_VENUE.at(-1) ? ' (largest step tried)' : ''}` });
  // 2. Venues of 10 devices on one broker, growing.
  lastOk = null;
  for (const v of VENUES) {
    const r = await load(v, 10);
    console.log(`  ${v} venues × 10 devices: ${fmt(r)}`);
    rows.push({ what: `${v} venues × 10 devices: heartbeat delay`, ours: fmt(r) });
    if (r.p99 > I || r.msgsPerSec < 0.8 * r.expected) break; // over the bound, or the broker shed messages
    lastOk = v;
  }
  rows.push({ what: `venues (10 devices each) per broker before p99 > ${I} ms`, ours: lastOk === null ? `< ${VENUES[0]}` : `≥ ${lastOk}${lastOk === VENUES.at(-1) ? ' (largest step tried)' : ''}` });
  // 3. The bridge.
  const b = await bridgeLatency();
  const [l50, l99, c50, c99] = [pct(b.local, 0.5), pct(b.local, 0.99), pct(b.cloud, 0.5), pct(b.cloud, 0.99)];
  const ms = (x) => x.toFixed(2);
  const sign = (x) => `${x >= 0 ? '+' : '−'}${ms(Math.abs(x))}`;
  rows.push({
    what: 'bridge local → cloud: delivery delay (p50 / p99)',
    ours: `${ms(c50)} / ${ms(c99)} ms (${b.cloud.length} of ${b.n})`,
    peer: 'same messages, subscriber on the local broker', peerValue: `${ms(l50)} / ${ms(l99)} ms (${b.local.length})`,
    ratio: `${(c50 / l50).toFixed(2)} (added: ${sign(c50 - l50)} / ${sign(c99 - l99)} ms)`,
  });
  return rows;
}
