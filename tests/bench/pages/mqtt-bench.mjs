// In-page half of tests/bench/mqtt.mjs, on `window.bench`. One client per
// page: venuemesh's MqttClient or MQTT.js 5.16 behind the same four calls
// (connect, publish -> Promise, subscribe -> SUBACK, unsubscribe), each
// used the way its own docs show. Every wait has a deadline.
const now = () => performance.timeOrigin + performance.now(); // one clock for all pages of the browser

const within = (promise, ms, what) => {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
};

// `entry`: the package entry to load, `/pkg/mqtt/venuemesh_mqtt.js` (the
// `venuemesh/mqtt` entry an MQTT-only app imports) unless the driver says.
async function venuemesh(url, clientId, auth = {}, entry = '/pkg/mqtt/venuemesh_mqtt.js') {
  const mod = await import(entry);
  await mod.default();
  if (typeof mod.MqttClient?.connect !== 'function') throw new Error(`${entry} does not export MqttClient`);
  const c = await within(mod.MqttClient.connect({ brokers: [url], clientId, keepAlive: 30, ...auth }), 10_000, 'MqttClient.connect');
  const offs = new Map();
  return {
    publish: (topic, payload, opts) => c.publish(topic, payload, opts),
    async subscribe(topic, qos, cb) {
      offs.set(topic, c.subscribe(topic, cb, { qos }));
      if ((await within(c.subscribed(topic), 10_000, `subscribed(${topic})`)) === false) throw new Error(`SUBACK refused ${topic}`);
    },
    unsubscribe(topic) { offs.get(topic)?.(); offs.delete(topic); },
    stats: () => c.stats(),
    close: () => c.close(),
  };
}

async function mqttjs(url, clientId, auth = {}) {
  const { default: mqtt } = await import('/node_modules/mqtt/dist/mqtt.esm.js');
  const c = mqtt.connect(url, { clientId, keepalive: 30, protocolVersion: 4, reconnectPeriod: 1000, connectTimeout: 5000, ...auth });
  await within(new Promise((resolve, reject) => { c.once('connect', resolve); c.once('error', reject); }), 10_000, 'mqtt.connect');
  const handlers = new Map(); // exact topics only: the benchmark uses no wildcards
  c.on('message', (topic, payload) => { const h = handlers.get(topic); if (h) h(topic, payload); });
  return {
    // The callback form, as a promise: completion like MqttClient.publish's.
    publish: (topic, payload, opts) => new Promise((resolve, reject) => c.publish(topic, payload, opts, (err) => (err ? reject(err) : resolve()))),
    async subscribe(topic, qos, cb) {
      handlers.set(topic, cb);
      await within(new Promise((resolve, reject) => c.subscribe(topic, { qos }, (err, granted) =>
        (err ? reject(err) : granted?.[0]?.qos === 128 ? reject(new Error(`SUBACK refused ${topic}`)) : resolve()))), 10_000, `subscribe(${topic})`);
    },
    unsubscribe(topic) { handlers.delete(topic); c.unsubscribe(topic); },
    stats: () => ({}),
    close: () => c.end(true),
  };
}

// The floor (VM_BENCH_MQTT_FLOOR=1, QoS 0 only): a raw WebSocket that sends
// hand-made CONNECT/SUBSCRIBE/PUBLISH packets (everything of one turn in one
// frame, as both clients do) and, receiving, only finds the payload's offset:
// what Chromium and Mosquitto cost per message with no MQTT client at all.
async function floor(url, clientId, auth = {}) {
  const ws = new WebSocket(url, 'mqtt');
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('floor: socket failed')); });
  const enc = new TextEncoder();
  const str = (s) => { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; };
  const varint = (n) => (n < 128 ? [n] : [(n & 127) | 128, n >> 7]); // packets under 16 KiB
  const packet = (first, body) => new Uint8Array([first, ...varint(body.length), ...body]);
  let onPublish = null, onSubAck = null, out = null, pid = 1;
  ws.onmessage = (e) => {
    const b = new Uint8Array(e.data);
    if (b[0] >> 4 === 3 && onPublish) {
      // The payload (QoS 0: after the remaining length and the topic), for
      // the round trip's echo and sequence check; one packet per frame.
      let i = 1, x;
      do x = b[i++]; while (x & 128);
      onPublish('', b.subarray(i + 2 + ((b[i] << 8) | b[i + 1])));
    }
    else if (b[0] === 0x90) onSubAck?.();
  };
  // Clean session; with an account, the username and password flags (0xC0)
  // and fields. Keepalive 0 (off): the floor sends no PINGREQ, and a page that
  // only receives would otherwise be dropped by the broker after 45 s.
  const login = auth.username ? [...str(auth.username), ...str(auth.password ?? '')] : [];
  ws.send(packet(0x10, [...str('MQTT'), 4, auth.username ? 0xc2 : 2, 0, 0, ...str(clientId), ...login]));
  return {
    publish(topic, payload) {
      const t = new Uint8Array(str(topic)), body = typeof payload === 'string' ? enc.encode(payload) : payload;
      if (!out) {
        out = [];
        queueMicrotask(() => {
          const frame = new Uint8Array(out.reduce((n, a) => n + a.length, 0));
          let at = 0;
          for (const a of out) { frame.set(a, at); at += a.length; }
          out = null;
          ws.send(frame);
        });
      }
      out.push(new Uint8Array([0x30, ...varint(t.length + body.length)]), t, body);
      return Promise.resolve();
    },
    async subscribe(topic, qos, cb) {
      if (qos !== 0) throw new Error('floor: QoS 0 only');
      onPublish = cb;
      const acked = new Promise((resolve) => { onSubAck = resolve; });
      ws.send(packet(0x82, [0, pid++, ...str(topic), 0]));
      await acked;
    },
    unsubscribe() { onPublish = null; },
    stats: () => ({}),
    close: () => ws.close(),
  };
}

let client = null;
let tp = null;          // the armed throughput receiver
let rt = null;          // the round-trip state (rttStart … rttStop)
const echoErrors = [];

// "00000042xxxx…": an 8-digit sequence number, then padding to `size` bytes.
const seqPayload = (i, pad) => String(i).padStart(8, '0') + pad;
const readSeq = (p) => { let s = 0; for (let k = 0; k < 8; k++) s = s * 10 + (p[k] - 48); return s; };

window.bench = {
  /**
   * `auth`: the broker account ({ username, password }; the bench broker admits no anonymous client);
   * `entry`: venuemesh's package entry (see `venuemesh`).
   */
  async init(which, url, clientId, auth, entry) {
    client = await ({ venuemesh, mqttjs, floor })[which](url, clientId, auth, entry);
    return which;
  },

  gc() { globalThis.gc?.(); },

  stats() { return client.stats(); },

  /** Subscribes the receiver: counts messages on `topic`, notes the time of the n-th. */
  async tpArm(topic, qos, n) {
    const st = { n, count: 0, tFirst: 0, tLast: 0 };
    st.done = new Promise((resolve) => { st.resolve = resolve; });
    tp = st;
    await client.subscribe(topic, qos, () => {
      const c = ++st.count;
      if (c === 1) st.tFirst = now();
      if (c === st.n) { st.tLast = now(); st.resolve(); }
    });
  },

  async tpResult(ms) {
    try { await within(tp.done, ms, 'receiving'); } catch { return { error: `only ${tp.count} of ${tp.n} messages arrived within ${ms} ms` }; }
    return { count: tp.count, tFirst: tp.tFirst, tLast: tp.tLast };
  },

  async tpDisarm(topic, settleMs = 200) {
    await new Promise((r) => setTimeout(r, settleMs)); // duplicates would show here
    const extra = tp.count - tp.n;
    client.unsubscribe(topic);
    tp = null;
    return extra;
  },

  /** Fires n publishes of `size` bytes back to back, then waits for all of them. */
  async tpPublish(topic, qos, n, size, ms) {
    const payload = 'x'.repeat(size);
    const opts = { qos };
    const promises = new Array(n);
    const t0 = now();
    for (let i = 0; i < n; i++) promises[i] = client.publish(topic, payload, opts);
    const tCalls = now();
    try { await within(Promise.all(promises), ms, `${n} publish promises`); } catch (e) { return { error: String(e?.message ?? e) }; }
    return { t0, tCalls, tDone: now() };
  },

  /** Republishes every message on inTopic to outTopic, as received. */
  async echo(inTopic, outTopic, qos) {
    const opts = { qos };
    await client.subscribe(inTopic, qos, (_t, payload) => {
      client.publish(outTopic, payload, opts).catch((e) => echoErrors.push(String(e?.message ?? e)));
    });
  },
  echoErrors: () => echoErrors.slice(0, 5),
  unsubscribe(topic) { client.unsubscribe(topic); },

  /**
   * Round trips in blocks, so tests/bench/mqtt.mjs can interleave the
   * clients (A/B/C, B/C/A, …) and load drift hits them alike: rttStart
   * subscribes to `pong` and runs `warmup` trips (not timed), rttBlock runs
   * `n` timed trips and returns their times in ms, rttStop unsubscribes.
   */
  async rttStart(ping, pong, qos, warmup, size, tripMs) {
    const st = { ping, pong, opts: { qos }, pad: 'x'.repeat(size - 8), tripMs, seq: 0, waiting: null, errors: [] };
    await client.subscribe(pong, qos, (_t, payload) => {
      if (st.waiting && readSeq(payload) === st.waiting.seq) st.waiting.resolve();
    });
    rt = st;
    await this.rttBlock(warmup);
  },
  async rttBlock(n) {
    const st = rt, times = new Array(n);
    for (let k = 0; k < n; k++) {
      const i = st.seq++;
      const payload = seqPayload(i, st.pad);
      const back = new Promise((resolve) => { st.waiting = { seq: i, resolve }; });
      const t = performance.now();
      client.publish(st.ping, payload, st.opts).catch((e) => st.errors.push(String(e?.message ?? e)));
      await within(back, st.tripMs, `round trip ${i}`);
      times[k] = performance.now() - t;
      if (st.errors.length) throw new Error(`publish failed: ${st.errors[0]}`);
    }
    st.waiting = null;
    return times;
  },
  rttStop() {
    if (rt) client.unsubscribe(rt.pong);
    rt = null;
  },
};
