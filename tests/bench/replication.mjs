// Quorum replication, end to end: three pages (kiosk hub, POS, iPad) on the
// local broker, measured twice in one run: with WebRTC (replication takes
// the data channels its traffic opened, after a warm-up) and with
// `webrtc: false` (everything through the broker). Figures are read in the
// POS page:
//   latency: enqueue() call → the mesh's `peerAck` event (the SYNC_ACK of
//     a replica arrived, sent after its IndexedDB commit: a majority holds
//     the command durably), one command at a time, p50/p99; and → the
//     queue's `statusChanged` to peer_ack (that status written too);
//   sustained: 1,000 commands enqueued at once, → all peer_ack, commands/s.
// Peer in the same run: the same page's local commit alone (enqueue() →
// resolved), the floor replication adds to. No ingest: the drain interval
// is set out of the way.
import { launch, BROKER_AUTH, brokerAuthFragment } from '../e2e/lib.mjs';
import { timelineInit, takeTimeline, stages, report, pageNotes, capture } from './replication-timeline.mjs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const BROKER = process.env.VM_BENCH_BROKER || 'ws://127.0.0.1:19101';
const TRIPS = Number(process.env.VM_BENCH_QUORUM_TRIPS || 300);
const BURST = Number(process.env.VM_BENCH_QUORUM_BURST || 1000);
// VM_BENCH_QUORUM_TIMELINE=1: stamp every stage of each sequential command in
// all three pages and print where the time goes (replication-timeline.mjs).
const TIMELINE = process.env.VM_BENCH_QUORUM_TIMELINE === '1';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function member(browser, venue, kind, extra = {}) {
  const context = await browser.newContext();
  if (TIMELINE) await context.addInitScript(timelineInit);
  const page = await context.newPage();
  const q = new URLSearchParams({ venue, broker: BROKER, kind, hb: '300', drain: '600000', ...extra });
  await page.goto(`${BASE}/tests/e2e/pages/mesh.html?${q}${brokerAuthFragment(BROKER_AUTH, BROKER)}`);
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  const failed = await page.evaluate(() => window.openError ?? null);
  if (failed) throw new Error(`mesh page failed to open: ${failed}`);
  return { context, page, venue, id: await page.evaluate(() => window.mesh.deviceId) };
}

/** In the page: latency per command and burst throughput, quorum vs local commit. */
function measure([trips, burst]) {
  const q = window.mesh.queue;
  // id -> time, and waiters, for the quorum event and for the written status.
  const tracker = () => {
    const at = new Map(), waiters = new Map();
    return {
      hit(id) { const t = performance.now(); at.set(id, t); waiters.get(id)?.(t); },
      of: (id) => at.has(id) ? Promise.resolve(at.get(id)) : new Promise((r) => waiters.set(id, r)),
    };
  };
  const decided = tracker(), written = tracker();
  window.mesh.on('peerAck', (e) => e.ids.forEach((id) => decided.hit(id)));
  q.on('statusChanged', (e) => { if (e.to === 'peer_ack') written.hit(e.id); });
  const ackOf = written.of;
  return (async () => {
    const quorum = [], status = [], local = [], marks = [];
    for (let i = 0; i < trips; i++) {
      const t0 = performance.now();
      const id = await window.mesh.enqueue('sale', `{"i":${i},"total":12.5}`);
      local.push(performance.now() - t0);
      const acked = await decided.of(id);
      quorum.push(acked - t0);
      // Absolute times (one clock for every page) for the timeline.
      marks.push({ t0: performance.timeOrigin + t0, ack: performance.timeOrigin + acked });
      status.push((await written.of(id)) - t0);
    }
    const t0 = performance.now();
    const ids = await Promise.all(Array.from({ length: burst }, (_, i) => window.mesh.enqueue('sale', `{"b":${i}}`)));
    const committed = performance.now() - t0;
    const last = Math.max(...(await Promise.all(ids.map(ackOf))));
    return { quorum, status, local, marks, burstLocalMs: committed, burstQuorumMs: last - t0 };
  })();
}

/** Three pages of a fresh venue with the kiosk as hub; `webrtc`: let replication open data channels and wait for them. */
async function trio(browser, webrtc) {
  const venue = `bench-quorum-${webrtc ? 'rtc' : 'broker'}-${Date.now()}`;
  const extra = webrtc ? {} : { webrtc: '0' };
  const kiosk = await member(browser, venue, 'kiosk', extra);
  const pos = await member(browser, venue, 'pos', extra);
  const ipad = await member(browser, venue, 'ipad', { charging: '1', ...extra });
  const all = [kiosk, pos, ipad];
  for (let i = 0; i < 100; i++) {
    const hubs = await Promise.all(all.map((m) => m.page.evaluate(() => window.mesh.hub)));
    if (hubs.every((h) => h === kiosk.id)) break;
    await sleep(100);
  }
  if (webrtc) {
    // Warm-up: replication partners get data channels; measure once they are open.
    await Promise.all(all.map((m) => m.page.evaluate(() => Promise.all(Array.from({ length: 5 }, () => window.mesh.enqueue('warm', '{}'))))));
    const rtcUp = (m) => m.page.evaluate((ids) => {
      const peers = window.mesh.getDetailedStats().routes.peers;
      return ids.every((id) => peers.find((p) => p.device === id)?.routes.find((r) => r.route === 'rtc')?.up);
    }, all.filter((o) => o !== m).map((o) => o.id));
    for (let i = 0; i < 150 && !(await Promise.all(all.map(rtcUp))).every(Boolean); i++) await sleep(100);
  }
  return { all, pos, kiosk, ipad };
}

async function measureOn(browser, webrtc) {
  const { all, pos, kiosk, ipad } = await trio(browser, webrtc);
  if (TIMELINE) await Promise.all(all.map((m) => takeTimeline(m.page))); // drop the warm-up's marks
  const sniffer = TIMELINE ? await capture(Number(new URL(BROKER).port)) : null;
  const before = await pos.page.evaluate(() => window.mesh.getDetailedStats().traffic);
  const r = await pos.page.evaluate(measure, [TRIPS, BURST]);
  const after = await pos.page.evaluate(() => window.mesh.getDetailedStats().traffic);
  // Replication messages out of the POS during the run, and how many went on data channels.
  r.directOut = after.direct.msgsOut - before.direct.msgsOut;
  r.brokerOut = after.replication.msgsOut - before.replication.msgsOut;
  if (sniffer) {
    const [o, k, i] = [await takeTimeline(pos.page), await takeTimeline(kiosk.page), await takeTimeline(ipad.page)];
    const sniffed = await sniffer.stop();
    const rows = stages(r.marks, { id: pos.id, events: o }, [{ id: kiosk.id, events: k }, { id: ipad.id, events: i }], sniffed);
    const label = webrtc ? 'data channels' : 'broker only';
    const span = [r.marks[0].t0 - o.offset, r.marks.at(-1).ack - o.offset];
    const lines = [...report(rows, label), `  clocks (page − bench process, ms): pos ${o.offset.toFixed(2)}, kiosk ${k.offset.toFixed(2)}, ipad ${i.offset.toFixed(2)}`, `  pages during the ${r.marks.length} trips (${label}):`,
      ...pageNotes([{ name: 'pos', events: o }, { name: 'kiosk (hub)', events: k }, { name: 'ipad', events: i }], ...span)];
    console.error(lines.join('\n'));
  }
  await Promise.all(all.map((m) => m.context.close()));
  return r;
}

export async function replicationBench() {
  const browser = await launch();
  try {
    const b = await measureOn(browser, false);
    const r = await measureOn(browser, true);
    const f = (x) => x.toFixed(2);
    const rate = (n, ms) => Math.round(n / (ms / 1000));
    console.error(`replication bench: POS sent ${r.directOut} envelopes on data channels and ${r.brokerOut} replication messages on the broker (data-channel run); ${b.brokerOut} on the broker in the broker-only run`);
    return [
      { what: `quorum ack (enqueue → peerAck, 3 pages, data channels) p50, ms`, ours: f(pct(r.quorum, 0.5)), peer: 'local commit alone (ours)', peerValue: f(pct(r.local, 0.5)), ratio: f(pct(r.quorum, 0.5) / pct(r.local, 0.5)) },
      { what: `quorum ack p99, ms (${TRIPS} sequential, data channels)`, ours: f(pct(r.quorum, 0.99)), peer: 'local commit alone (ours)', peerValue: f(pct(r.local, 0.99)), ratio: f(pct(r.quorum, 0.99) / pct(r.local, 0.99)) },
      { what: `quorum ack over the broker only (webrtc: false) p50 / p99, ms`, ours: `${f(pct(b.quorum, 0.5))} / ${f(pct(b.quorum, 0.99))}`, peer: 'data channels (ours, above)', peerValue: `${f(pct(r.quorum, 0.5))} / ${f(pct(r.quorum, 0.99))}`, ratio: f(pct(b.quorum, 0.5) / pct(r.quorum, 0.5)) },
      { what: `peer_ack status written (statusChanged) p50 / p99, ms`, ours: `${f(pct(r.status, 0.5))} / ${f(pct(r.status, 0.99))}`, peer: 'local commit alone (ours)', peerValue: `${f(pct(r.local, 0.5))} / ${f(pct(r.local, 0.99))}` },
      { what: `sustained with quorum, ${BURST} at once, commands/s (data channels)`, ours: rate(BURST, r.burstQuorumMs), peer: 'local commit alone (ours)', peerValue: rate(BURST, r.burstLocalMs), ratio: f(r.burstLocalMs / r.burstQuorumMs) },
      { what: `sustained with quorum, broker only, commands/s`, ours: rate(BURST, b.burstQuorumMs), peer: 'data channels (ours, above)', peerValue: rate(BURST, r.burstQuorumMs), ratio: f(r.burstQuorumMs / b.burstQuorumMs) },
    ];
  } finally {
    await browser.close();
  }
}
