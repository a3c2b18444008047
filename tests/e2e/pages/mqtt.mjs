// Helpers for tests/e2e/mqtt.test.mjs, on `window.t`, called with
// page.evaluate. Every wait has a deadline, so a broken client fails a test
// with a message instead of hanging it. Payloads cross page.evaluate as
// strings or as { b64 } (binary), received ones as { b64, text }.
//
// ?client=venuemesh (default): MqttClient from /pkg/venuemesh.js.
// ?client=mqttjs: the same API over MQTT.js (mqttjs-shim.mjs), to check the
// tests themselves against a well-known client.
import { brokerAuth } from './broker-auth.mjs';

const which = new URLSearchParams(location.search).get('client') || 'venuemesh';

const within = (promise, ms, what) => {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
};

const toB64 = (bytes) => {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
const fromB64 = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const payloadIn = (p) => (p && typeof p === 'object' && 'b64' in p ? fromB64(p.b64) : p);
const errorOut = (e) => ({ ok: false, name: e?.name, code: e?.code, message: String(e?.message ?? e) });

let MqttClient;
const clients = {};   // name -> client
const events = {};    // name -> [{ type, url, reason, at }]
const received = {};  // name -> [{ filter, topic, payload, qos, retain, dup }]
const unsubs = {};    // name -> { filter: unsubscribe() }
const pending = {};   // name -> [Promise]
const waiters = new Set(); // functions re-checked whenever something arrives

const poke = () => { for (const w of [...waiters]) w(); };
// Resolves with check()'s first truthy value; rejects after ms with what().
const until = (check, ms, what) => new Promise((resolve, reject) => {
  const w = () => {
    let v;
    try { v = check(); } catch (e) { waiters.delete(w); clearTimeout(timer); reject(e); return; }
    if (v) { waiters.delete(w); clearTimeout(timer); resolve(v); }
  };
  const timer = setTimeout(() => { waiters.delete(w); reject(new Error(what())); }, ms);
  waiters.add(w);
  w();
});

const client = (name) => {
  const c = clients[name];
  if (!c) throw new Error(`no client named ${name}`);
  return c;
};

function connectOptions(opts) {
  const o = { ...brokerAuth(opts.brokers), ...opts };
  if (o.will) o.will = { ...o.will, payload: payloadIn(o.will.payload) };
  return o;
}

const t = {
  which,
  ready: (async () => {
    if (which === 'mqttjs') {
      ({ MqttClient } = await import('./mqttjs-shim.mjs'));
    } else {
      const mod = await import('/pkg/venuemesh.js');
      await mod.default();
      MqttClient = mod.MqttClient;
      if (typeof MqttClient?.connect !== 'function') throw new Error('/pkg/venuemesh.js does not export MqttClient');
    }
    return which;
  })(),

  /** Connects client `name`; resolves with its url once connected. */
  async connect(name, opts, ms = 15_000) {
    await t.ready;
    const c = await within(MqttClient.connect(connectOptions(opts)), ms, `MqttClient.connect(${JSON.stringify(opts.brokers)})`);
    clients[name] = c;
    events[name] = [];
    received[name] = [];
    unsubs[name] = {};
    pending[name] = [];
    for (const type of ['connected', 'disconnected']) {
      c.on(type, (e) => { events[name].push({ type, url: e?.url ?? null, reason: e?.reason ?? null, at: Date.now() }); poke(); });
    }
    return { url: c.url, connected: c.connected };
  },

  /** MqttClient.connect that is expected to fail: { ok, name, code, message }. */
  async tryConnect(opts, ms = 15_000) {
    await t.ready;
    try {
      const c = await within(MqttClient.connect(connectOptions(opts)), ms, 'MqttClient.connect');
      c.close();
      return { ok: true, url: c.url };
    } catch (e) { return errorOut(e); }
  },

  /** Subscribes and waits for the SUBACK. */
  async sub(name, filter, qos = 0, ms = 10_000) {
    const c = client(name);
    const off = c.subscribe(filter, (topic, payload, info) => {
      received[name].push({ filter, topic, payload: new Uint8Array(payload), qos: info?.qos, retain: info?.retain, dup: info?.dup });
      poke();
    }, { qos });
    unsubs[name][filter] = off;
    const ok = await within(c.subscribed(filter), ms, `subscribed(${filter})`);
    if (ok === false) throw new Error(`the broker refused the subscription ${filter}`);
  },

  unsub(name, filter) {
    const off = unsubs[name][filter];
    if (typeof off !== 'function') throw new Error(`subscribe(${filter}) did not return a function`);
    off();
    delete unsubs[name][filter];
  },

  /** Publishes and waits for the promise (PUBACK / PUBCOMP / written). */
  async pub(name, topic, payload, opts = {}, ms = 10_000) {
    await within(client(name).publish(topic, payloadIn(payload), opts), ms, `publish(${topic})`);
  },

  /** Starts publishing `${prefix}${i}` for i in [from, to) without waiting. */
  pubMany(name, topic, prefix, from, to, opts = {}) {
    const c = client(name);
    for (let i = from; i < to; i++) {
      pending[name].push(c.publish(topic, `${prefix}${i}`, opts).then(() => null, (e) => `${i}: ${e?.code} ${e?.message}`));
    }
    return pending[name].length;
  },

  /** Waits for every promise pubMany started: the rejections' messages. */
  async settle(name, ms) {
    const all = await within(Promise.all(pending[name]), ms, `${pending[name].length} publish promises`);
    return all.filter(Boolean);
  },

  /** The messages client `name` received, for one filter or all. */
  messages(name, filter = null) {
    return received[name]
      .filter((m) => filter === null || m.filter === filter)
      .map((m) => ({ filter: m.filter, topic: m.topic, b64: toB64(m.payload), text: new TextDecoder().decode(m.payload), qos: m.qos, retain: m.retain, dup: m.dup }));
  },

  /** Waits until client `name` has n messages (for filter, or in all). */
  async waitCount(name, filter, n, ms = 10_000) {
    const count = () => received[name].filter((m) => filter === null || m.filter === filter).length;
    await until(() => count() >= n, ms, () => `only ${count()} of ${n} messages on ${filter ?? 'any filter'} within ${ms} ms`);
    return t.messages(name, filter);
  },

  /** Waits until the distinct texts on filter cover all of `texts`. */
  async waitTexts(name, filter, texts, ms = 10_000) {
    const missing = () => {
      const got = new Set(received[name].filter((m) => m.filter === filter).map((m) => new TextDecoder().decode(m.payload)));
      return texts.filter((x) => !got.has(x));
    };
    await until(() => missing().length === 0, ms, () => {
      const m = missing();
      return `${m.length} of ${texts.length} messages missing on ${filter} after ${ms} ms, e.g. ${m.slice(0, 10).join(', ')}`;
    });
    return t.messages(name, filter);
  },

  /** Waits for an event of `type` (and url, if given) at log index >= from. */
  async waitEvent(name, type, { url = null, from = 0, ms = 10_000 } = {}) {
    return until(() => {
      const i = events[name].findIndex((e, k) => k >= from && e.type === type && (url === null || e.url === url));
      return i >= 0 && { ...events[name][i], index: i };
    }, ms,
      () => `no '${type}' event${url ? ` for ${url}` : ''} within ${ms} ms; events: ${JSON.stringify(events[name])}`);
  },

  events: (name) => events[name],

  state(name) {
    const c = client(name);
    return { connected: c.connected, url: c.url, stats: c.stats() };
  },

  close(name) { client(name).close(); },

  /** Calls a method expected to fail; a sync throw and a rejection both count. */
  async tryCall(name, method, args, ms = 10_000) {
    try {
      const a = args.map(payloadIn);
      const r = client(name)[method](...a);
      if (r && typeof r.then === 'function') await within(r, ms, method);
      return { ok: true };
    } catch (e) { return errorOut(e); }
  },

  /** Subscribes with a filter expected to be refused (sync throw or subscribed() rejecting). */
  async trySub(name, filter, ms = 10_000) {
    try {
      const c = client(name);
      c.subscribe(filter, () => {}, { qos: 0 });
      const ok = await within(c.subscribed(filter), ms, `subscribed(${filter})`);
      return ok === false ? { ok: false, name: 'refused by the broker (SUBACK 0x80), not by the client' } : { ok: true };
    } catch (e) { return errorOut(e); }
  },
};

window.t = t;
t.ready.catch((e) => console.error('mqtt.mjs: loading the client failed:', e));
