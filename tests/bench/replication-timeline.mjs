// Per-command timeline for the quorum bench (`VM_BENCH_QUORUM_TIMELINE=1
// bash scripts/bench replication`): where the time between enqueue() and
// `peerAck` goes, stage by stage, across the three pages.
//
// JS-side only, injected by the bench into its own pages (an init script):
// nothing of it is in the package. It wraps the browser APIs the library
// uses and stamps each call with the page's absolute time
// (performance.timeOrigin + performance.now(): one clock for every page of
// the machine):
//   - WebSocket send / message: the MQTT packets of the frame (type, topic);
//   - IndexedDB: a readwrite transaction created on `outbox`, and its
//     `complete` event;
//   - setTimeout(0) (the inbox's turn, issue #16): when it was asked for,
//     when it ran and how long its callback took;
//   - MessageChannel tasks (the link's flush) and long tasks (≥ 50 ms).
// The stamps are plain numbers in arrays (no per-event objects kept while
// measuring, so the instrumentation itself adds little garbage).
//
// analyse() then cuts each sequential trip into the stages of the issue:
// enqueue → local IDB commit → COPY sent → COPY in the replica's message
// task → its IDB transaction created (the inbox turn and verification done)
// → replica IDB commit → ack sent → ack in the origin's message task →
// peerAck, following the replica whose ack arrived first.

/** The init script: runs in every page of the bench before its own code. */
export function timelineInit() {
  const T0 = performance.timeOrigin;
  const now = () => T0 + performance.now();
  // kind codes: 1 ws send publish, 2 ws recv publish, 3 idb tx created,
  // 4 idb complete, 5 timeout(0) asked, 6 timeout(0) ran (t = start, a = duration),
  // 7 long task (a = duration), 8 message-channel task ran (a = duration)
  const tl = { t: [], k: [], a: [], s: [] };
  window.__vmTimeline = tl;
  const rec = (k, s, a = 0, t = now()) => { tl.t.push(t); tl.k.push(k); tl.s.push(s); tl.a.push(a); };
  // MQTT packets in one WebSocket frame: each PUBLISH's topic.
  const topics = (buf) => {
    const b = buf instanceof ArrayBuffer ? new Uint8Array(buf) : ArrayBuffer.isView(buf) ? new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) : null;
    const out = [];
    if (!b) return out;
    let i = 0;
    while (i < b.length) {
      const type = b[i] >> 4;
      let len = 0, mul = 1, j = i + 1;
      for (; j < b.length; j++) { len += (b[j] & 127) * mul; mul *= 128; if (!(b[j] & 128)) { j++; break; } }
      if (type === 3 && j + 2 <= b.length) {
        const tlen = (b[j] << 8) | b[j + 1];
        out.push(String.fromCharCode(...b.subarray(j + 2, j + 2 + tlen)));
      }
      i = j + len;
    }
    return out;
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const t = now();
    for (const topic of topics(data)) rec(1, topic, 0, t);
    return send.call(this, data);
  };
  const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
  Object.defineProperty(WebSocket.prototype, 'onmessage', {
    configurable: true,
    get() { return onmessage.get.call(this); },
    set(f) {
      onmessage.set.call(this, f && function (e) {
        const t = now();
        for (const topic of topics(e.data)) rec(2, topic, 0, t);
        return f.call(this, e);
      });
    },
  });
  // Data channels: an envelope's kind is its second byte (4 COPY, 5 ack); labelled `rtc:{kind}`.
  const kindOf = (d) => {
    const b = d instanceof ArrayBuffer ? new Uint8Array(d) : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : null;
    return b && b[0] === 2 ? `rtc:${b[1]}` : 'rtc:other';
  };
  const dcSend = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) { rec(1, kindOf(data)); return dcSend.call(this, data); };
  const dcOn = Object.getOwnPropertyDescriptor(RTCDataChannel.prototype, 'onmessage');
  Object.defineProperty(RTCDataChannel.prototype, 'onmessage', {
    configurable: true,
    get() { return dcOn.get.call(this); },
    set(f) { dcOn.set.call(this, f && function (e) { rec(2, kindOf(e.data)); return f.call(this, e); }); },
  });
  const transaction = IDBDatabase.prototype.transaction;
  IDBDatabase.prototype.transaction = function (stores, mode, ...rest) {
    const tx = transaction.call(this, stores, mode, ...rest);
    if (mode === 'readwrite') {
      const name = String(stores);
      rec(3, name);
      tx.addEventListener('complete', () => rec(4, name));
    }
    return tx;
  };
  const setTimeout0 = window.setTimeout;
  window.setTimeout = function (f, ms, ...rest) {
    if (!ms && typeof f === 'function') {
      const asked = now();
      rec(5, '', 0, asked);
      return setTimeout0.call(this, (...args) => { const t = now(); try { return f(...args); } finally { rec(6, '', now() - t, t); } }, ms, ...rest);
    }
    return setTimeout0.call(this, f, ms, ...rest);
  };
  const onPort = Object.getOwnPropertyDescriptor(MessagePort.prototype, 'onmessage');
  Object.defineProperty(MessagePort.prototype, 'onmessage', {
    configurable: true,
    get() { return onPort.get.call(this); },
    set(f) {
      onPort.set.call(this, f && function (e) { const t = now(); try { return f.call(this, e); } finally { rec(8, '', now() - t, t); } });
    },
  });
  try {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) rec(7, e.name, e.duration, T0 + e.startTime); })
      .observe({ type: 'longtask', buffered: true });
  } catch { /* no long-task timing in this browser */ }
}

/**
 * The page's clock minus this process's (ms), from the evaluate round trip
 * with the least delay: the pages' and the sniffer's stamps are put on one
 * clock with it (two processes' timeOrigin can differ by milliseconds).
 */
async function clockOffset(page) {
  const here = () => performance.timeOrigin + performance.now();
  let best = { rtt: Infinity, off: 0 };
  for (let i = 0; i < 15; i++) {
    const a = here();
    const p = await page.evaluate(() => performance.timeOrigin + performance.now());
    const b = here();
    if (b - a < best.rtt) best = { rtt: b - a, off: p - (a + b) / 2 };
  }
  return best.off;
}

/**
 * Reads and clears a page's timeline: [{t, k, s, a}], sorted by time, on
 * this process's clock; `offset` (page minus here) to convert the page's own marks.
 */
export async function takeTimeline(page) {
  const offset = await clockOffset(page);
  const tl = await page.evaluate(() => {
    const tl = window.__vmTimeline;
    const out = { t: tl.t, k: tl.k, s: tl.s, a: tl.a };
    window.__vmTimeline = Object.assign(tl, { t: [], k: [], s: [], a: [] });
    return out;
  });
  const events = tl.t.map((t, i) => ({ t: t - offset, k: tl.k[i], s: tl.s[i], a: tl.a[i] })).sort((x, y) => x.t - y.t);
  return Object.assign(events, { offset });
}

/**
 * Captures the broker's WebSocket traffic on loopback with tcpdump (when it
 * is installed; this process runs in the bench's own network namespace):
 * when each PUBLISH reached the broker (`k: 10`) and when the broker sent it
 * on (`k: 9`), kernel timestamps on the same clock as the pages'. Splits a
 * hop into page → broker socket, inside the broker, and broker socket →
 * page task. `stop()` resolves to the events, or to [] without tcpdump.
 */
export async function capture(port) {
  const { spawn, spawnSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  if (spawnSync('tcpdump', ['--version']).status !== 0) {
    console.error('quorum timeline: no tcpdump, so the broker hops are not split (apt-get install tcpdump)');
    return { stop: async () => [] };
  }
  const dir = mkdtempSync(join(tmpdir(), 'vm-quorum-'));
  const file = join(dir, 'broker.pcap');
  const proc = spawn('tcpdump', ['-i', 'lo', '-U', '-n', '-s', '0', '--time-stamp-precision=micro', '-w', file, 'tcp', 'port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  // tcpdump says "listening on lo" once it captures.
  for (let i = 0; i < 50 && !err.includes('listening'); i++) await new Promise((r) => setTimeout(r, 100));
  return {
    stop: async () => {
      proc.kill('SIGINT');
      await new Promise((r) => proc.once('exit', r));
      const events = parsePcap(readFileSync(file), port);
      if (process.env.VM_BENCH_QUORUM_PCAP_KEEP === '1') console.error(`quorum timeline: capture kept in ${file}`);
      else rmSync(dir, { recursive: true, force: true });
      return events;
    },
  };
}

/** PUBLISH topics in a pcap of MQTT over WebSocket (loopback, Ethernet framing, IPv4). */
export function parsePcap(buf, port) {
  const out = [];
  if (buf.length < 24) return out;
  const le = buf.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const link = u32(20);
  const streams = new Map(); // "srcport>dstport" -> pending bytes
  for (let o = 24; o + 16 <= buf.length;) {
    const t = u32(o) * 1000 + u32(o + 4) / 1000, len = u32(o + 8);
    const pkt = buf.subarray(o + 16, o + 16 + len);
    o += 16 + len;
    const ip = link === 1 ? 14 : link === 113 ? 16 : 0; // Ethernet or Linux cooked
    if (pkt.length < ip + 20 || pkt[ip] >> 4 !== 4) continue;
    const tcp = ip + (pkt[ip] & 15) * 4;
    const total = pkt.readUInt16BE(ip + 2);
    const sport = pkt.readUInt16BE(tcp), dport = pkt.readUInt16BE(tcp + 2);
    const data = pkt.subarray(tcp + (pkt[tcp + 12] >> 4) * 4, ip + total);
    if (!data.length) continue;
    const key = `${sport}>${dport}`;
    let pending = Buffer.concat([streams.get(key) ?? Buffer.alloc(0), data]);
    // Whole WebSocket frames (after the HTTP upgrade); their MQTT packets' topics.
    if (pending.subarray(0, 4).toString() === 'GET ' || pending.subarray(0, 4).toString() === 'HTTP') {
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) { streams.set(key, pending); continue; }
      pending = pending.subarray(end + 4);
    }
    // `f`: the frame's place among the frames this segment completed (0: first).
    for (let f = 0; ; f++) {
      if (pending.length < 2) break;
      const masked = pending[1] & 128;
      let n = pending[1] & 127, h = 2;
      if (n === 126) { if (pending.length < 4) break; n = pending.readUInt16BE(2); h = 4; }
      else if (n === 127) { if (pending.length < 10) break; n = Number(pending.readBigUInt64BE(2)); h = 10; }
      const m = masked ? 4 : 0;
      if (pending.length < h + m + n) break;
      const payload = Buffer.from(pending.subarray(h + m, h + m + n));
      if (masked) for (let i = 0; i < n; i++) payload[i] ^= pending[h + (i & 3)];
      for (const topic of mqttTopics(payload)) out.push({ t, k: dport === port ? 10 : 9, s: topic, a: 0, f, conn: dport === port ? sport : dport });
      pending = pending.subarray(h + m + n);
    }
    streams.set(key, pending);
  }
  return out.sort((a, b) => a.t - b.t);
}

/** The topics of the PUBLISH packets in `b` (whole MQTT packets). */
function mqttTopics(b) {
  const out = [];
  let i = 0;
  while (i < b.length) {
    const type = b[i] >> 4;
    let len = 0, mul = 1, j = i + 1;
    for (; j < b.length; j++) { len += (b[j] & 127) * mul; mul *= 128; if (!(b[j] & 128)) { j++; break; } }
    if (type === 3 && j + 2 <= b.length) out.push(b.subarray(j + 2, j + 2 + b.readUInt16BE(j)).toString());
    i = j + len;
  }
  return out;
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

/**
 * Stage durations per trip. `trips`: [{t0, ack}] absolute times on the
 * origin; `origin`, `replicas`: {id, events} (events from takeTimeline).
 * Returns one object per trip (stage → ms, NaN where a mark is missing).
 */
export function stages(trips, origin, replicas, broker = []) {
  const after = (ev, t, k, pred = () => true) => ev.find((e) => e.t >= t && e.k === k && pred(e));
  const lastBefore = (ev, t, k, pred = () => true) => { let r; for (const e of ev) { if (e.t > t) break; if (e.k === k && pred(e)) r = e; } return r; };
  const rep = (id) => (e) => e.s === 'rtc:4' || e.s.endsWith(`/dev/${id}/rep`);
  const ack = (e) => e.s === 'rtc:5' || e.s.endsWith(`/dev/${origin.id}/ack`);
  const outbox = (e) => e.s === 'outbox';
  const off = origin.events.offset ?? 0; // the trips' marks are on the origin page's clock
  return trips.map(({ t0: p0, ack: pAck }) => {
    const t0 = p0 - off, tAck = pAck - off;
    const o = origin.events;
    const commit = after(o, t0, 4, outbox);
    const ackIn = lastBefore(o, tAck, 2, ack);
    // Each replica's path; the one whose ack went out just before the origin got one is the winner.
    const paths = replicas.map((r) => {
      const sent = after(o, t0, 1, rep(r.id));
      const got = sent && after(r.events, sent.t, 2, rep(r.id));
      const tx = got && after(r.events, got.t, 3, outbox);
      // The inbox turn that handled it (none: handled in the message task itself, as data channels are).
      const queued = got && tx && after(r.events, got.t, 6, (e) => e.t <= tx.t);
      const done = tx && after(r.events, tx.t, 4, outbox);
      const acked = done && after(r.events, done.t, 1, ack);
      const turn = queued ?? got;
      // The COPY and the ack on the broker's socket: in, and forwarded.
      // (Not for what went on a data channel.)
      const viaBroker = (e) => e && !e.s.startsWith('rtc:');
      const bIn = viaBroker(sent) ? after(broker, sent.t, 10, rep(r.id)) : undefined;
      const fwd = bIn && after(broker, bIn.t, 9, rep(r.id));
      const ackBIn = viaBroker(acked) ? after(broker, acked.t, 10, ack) : undefined;
      const ackFwd = ackBIn && after(broker, ackBIn.t, 9, ack);
      return { id: r.id, sent, got, tx, done, acked, turn, bIn, fwd, ackBIn, ackFwd };
    });
    const ok = paths.filter((p) => p.acked && (!ackIn || p.acked.t <= ackIn.t));
    const w = ok.sort((a, b) => b.acked.t - a.acked.t)[0] ?? paths[0];
    const d = (a, b) => (a && b ? b.t - a.t : NaN);
    return {
      total: tAck - t0,
      'enqueue → local commit': commit ? commit.t - t0 : NaN,
      'local commit → COPY sent': d(commit, w.sent),
      'COPY: send() → broker socket': d(w.sent, w.bIn),
      'COPY: inside the broker': d(w.bIn, w.fwd),
      'COPY: broker socket → replica task': d(w.fwd ?? w.sent, w.got),
      'replica: COPY task → inbox turn': d(w.got, w.turn),
      'replica: inbox turn → IDB tx (verify, store)': d(w.turn, w.tx),
      'replica: IDB commit': d(w.tx, w.done),
      'replica: commit → ack sent': d(w.done, w.acked),
      'ack: send() → broker socket': d(w.acked, w.ackBIn),
      'ack: inside the broker': d(w.ackBIn, w.ackFwd),
      'ack: broker socket → origin task': d(w.ackFwd ?? w.acked, ackIn),
      'origin: ack task → peerAck': ackIn ? tAck - ackIn.t : NaN,
      winner: w.id,
    };
  });
}

/** p50 / p99 of each stage, and the stages of the slowest trips, as text lines. */
export function report(rows, label, slowest = 5) {
  const keys = Object.keys(rows[0] ?? {}).filter((k) => k !== 'winner');
  const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const lines = [`quorum timeline (${label}, ${rows.length} trips): stage p50 / p90 / p99 / max, ms`];
  for (const k of keys) {
    const xs = rows.map((r) => r[k]).filter(Number.isFinite);
    lines.push(`  ${k.padEnd(46)} ${f(pct(xs, 0.5))} / ${f(pct(xs, 0.9))} / ${f(pct(xs, 0.99))} / ${f(Math.max(...xs))}`);
  }
  lines.push(`  slowest ${slowest} trips (${keys.join(' | ')}):`);
  for (const r of [...rows].sort((a, b) => b.total - a.total).slice(0, slowest)) {
    lines.push(`   ${keys.map((k) => f(r[k])).join(' | ')}`);
  }
  return lines;
}

/** Long tasks and slow timeout(0) turns seen on each page during the trips. */
export function pageNotes(pages, from, to) {
  const lines = [];
  for (const { name, events } of pages) {
    const within = events.filter((e) => e.t >= from && e.t <= to);
    const long = within.filter((e) => e.k === 7);
    const turns = within.filter((e) => e.k === 6).map((e) => e.a);
    const asked = within.filter((e) => e.k === 5);
    // Delay of each timeout(0): asked → ran (paired in order).
    const ran = within.filter((e) => e.k === 6);
    const delays = asked.slice(0, ran.length).map((a, i) => ran[i].t - a.t).filter((x) => x >= 0);
    const port = within.filter((e) => e.k === 8).map((e) => e.a);
    const f = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
    // The page's own heartbeats through the broker and back (send() → its message task): a broker
    // round trip measured in the same pages and run, the load's yardstick.
    const echo = [];
    for (const e of within) {
      if (e.k !== 1 || !/\/hb\//.test(e.s)) continue;
      const back = within.find((x) => x.k === 2 && x.t >= e.t && x.s === e.s);
      if (back) echo.push(back.t - e.t);
    }
    lines.push(`  ${name}: own heartbeat via the broker and back p50/p99 ${f(pct(echo, 0.5))}/${f(pct(echo, 0.99))} ms (${echo.length})`);
    lines.push(`  ${name}: long tasks ${long.length} (max ${f(Math.max(0, ...long.map((e) => e.a)))} ms); timeout(0) turns ${turns.length}, `
      + `delay p50/p99/max ${f(pct(delays, 0.5))}/${f(pct(delays, 0.99))}/${f(Math.max(0, ...delays))} ms, run p99/max ${f(pct(turns, 0.99))}/${f(Math.max(0, ...turns))} ms; `
      + `flush tasks ${port.length} (max ${f(Math.max(0, ...port))} ms)`);
  }
  return lines;
}
