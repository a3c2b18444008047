// venuemesh's MqttClient API over MQTT.js 5.16, only to check the e2e tests
// themselves against a well-known client (mqtt.html?client=mqttjs,
// VM_E2E_CLIENT=mqttjs). Not part of the package. No preferred-broker probing
// (MQTT.js has none): the failover switch-back test fails with it by design.
import mqtt from '/node_modules/mqtt/dist/mqtt.esm.js';

const matches = (filter, topic) => {
  const f = filter.split('/'), t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
};

const fail = (code, message) => Object.assign(new Error(message), { name: 'VenueMeshError', code });

export class MqttClient {
  static connect(o) {
    if (!Array.isArray(o?.brokers) || o.brokers.length === 0) return Promise.reject(fail('INVALID_OPTIONS', 'brokers: empty'));
    const servers = o.brokers.map((u) => { const x = new URL(u); return { protocol: x.protocol.slice(0, -1), host: x.hostname, port: Number(x.port) }; });
    const will = o.will && { topic: o.will.topic, payload: o.will.payload, qos: o.will.qos ?? 0, retain: !!o.will.retain };
    const c = mqtt.connect(o.brokers[0], {
      protocolVersion: 4, clientId: o.clientId, keepalive: o.keepAlive ?? 30, clean: o.clean ?? true,
      username: o.username, password: o.password, will, connectTimeout: o.connectTimeoutMs ?? 2000,
      reconnectPeriod: 500, ...(servers.length > 1 ? { servers } : {}),
    });
    return new Promise((resolve) => {
      const self = new MqttClient(c);
      c.once('connect', () => resolve(self));
    });
  }

  constructor(c) {
    this.c = c;
    this.subs = new Map();     // filter -> { cb, acked }
    this.listeners = { connected: new Set(), disconnected: new Set() };
    this.connects = 0;
    c.on('connect', () => {
      this.connects++;
      for (const cb of this.listeners.connected) cb({ url: this.url });
    });
    c.on('close', () => { for (const cb of this.listeners.disconnected) cb({ reason: 'closed' }); });
    c.on('message', (topic, payload, packet) => {
      for (const [filter, s] of this.subs) {
        if (matches(filter, topic)) s.cb(topic, new Uint8Array(payload), { qos: packet.qos, retain: packet.retain, dup: packet.dup });
      }
    });
  }

  get connected() { return this.c.connected; }
  get url() {
    if (!this.c.connected) return null;
    const o = this.c.options;
    return `${o.protocol}://${o.hostname}:${o.port}`;
  }

  publish(topic, payload, options = {}) {
    if (/[+#]/.test(topic)) return Promise.reject(fail('INVALID_ARGUMENT', 'wildcard in topic'));
    if (this.c.disconnecting) return Promise.reject(fail('CLOSED', 'closed'));
    return new Promise((resolve, reject) => this.c.publish(topic, payload, { qos: options.qos ?? 0, retain: !!options.retain },
      (err) => (err ? reject(err) : resolve())));
  }

  subscribe(filter, cb, options = {}) {
    const acked = new Promise((resolve, reject) =>
      this.c.subscribe(filter, { qos: options.qos ?? 0 }, (err) => (err ? reject(err) : resolve())));
    acked.catch(() => {});
    this.subs.set(filter, { cb, acked });
    return () => { this.subs.delete(filter); this.c.unsubscribe(filter); };
  }

  subscribed(filter) { return this.subs.get(filter)?.acked ?? Promise.reject(fail('INVALID_ARGUMENT', 'not subscribed')); }

  on(event, cb) { this.listeners[event].add(cb); return () => this.listeners[event].delete(cb); }

  stats() { return { rttMs: null, reconnects: Math.max(0, this.connects - 1), bytesIn: 0, bytesOut: 0 }; }

  close() { this.c.end(false); }
}
