// A second MQTT broker implementation for the tests (issue #21): Aedes (npm)
// with a WebSocket server from `ws`, both on loopback. scripts/test's
// `e2e-aedes` part runs the MQTT and mesh end-to-end tests against it, so the
// library is checked against a broker that is not Mosquitto.
//
//   node tests/brokers/aedes.mjs --ws PORT [--tcp PORT] [--accounts FILE] [--ready FILE]
//
// --ws: MQTT over WebSocket on 127.0.0.1 (the pages'); --tcp: plain MQTT on
// 127.0.0.1 (the reference ingest's). --accounts: a JSON file
// `{ "username": "password", … }`; with it, anonymous clients are refused and
// each account reaches what config/mosquitto.acl gives it (a venue's account
// its `vm/{venue}/#`, the harness account `vm/#`, `e2e/#`, `bench/#`);
// without it, anyone may connect and use any topic (like lib.mjs's private
// Mosquitto). Like the Mosquitto configs, publishes larger than
// --max-message bytes (default 263168) are acknowledged and dropped.
// Prints `ready` (and writes --ready) once both listeners are up; SIGTERM stops it.
import { createServer as createHttp } from 'node:http';
import { createServer as createTcp } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';

const { values: a } = parseArgs({
  options: {
    ws: { type: 'string' }, tcp: { type: 'string' }, accounts: { type: 'string' }, ready: { type: 'string' },
    'max-message': { type: 'string', default: '263168' },
  },
});
if (!a.ws) { console.error('usage: aedes.mjs --ws PORT [--tcp PORT] [--accounts FILE] [--ready FILE]'); process.exit(2); }
const accounts = a.accounts ? JSON.parse(readFileSync(a.accounts, 'utf8')) : null;
const maxMessage = Number(a['max-message']);

const broker = await Aedes.createBroker({ heartbeatInterval: 3_600_000 });

// Topic rules as in config/mosquitto.acl.
const HARNESS = ['vm/', 'e2e/', 'bench/'];
/** May `user` use `topic` (a topic or filter)? Without accounts: yes. */
function allowed(user, topic) {
  if (!accounts) return !topic.startsWith('$SYS');
  if (user === 'vm-harness') return HARNESS.some((p) => topic.startsWith(p));
  return /^[A-Za-z0-9._-]{1,64}$/.test(user ?? '') && topic.startsWith(`vm/${user}/`);
}

broker.authenticate = (client, username, password, done) => {
  if (!accounts) return done(null, true);
  const ok = typeof username === 'string' && Object.hasOwn(accounts, username) &&
    password !== undefined && Buffer.from(password).toString('utf8') === accounts[username];
  if (ok) client.vmUser = username;
  const err = ok ? null : Object.assign(new Error('not authorized'), { returnCode: 5 });
  done(err, ok);
};
broker.authorizePublish = (client, packet, done) => {
  if (!allowed(client?.vmUser, packet.topic)) return done(new Error(`publish to ${packet.topic} not allowed`));
  if (packet.payload?.length > maxMessage) {
    // Acknowledged (QoS 1/2 flow completes) but not delivered or retained, like Mosquitto's message_size_limit.
    console.error(`dropped a ${packet.payload.length}-byte PUBLISH on ${packet.topic} from ${client?.id}`);
    packet.retain = false; // not stored; authorizeForward drops it
    return done(null);
  }
  done(null);
};
broker.authorizeForward = (client, packet) => (packet.payload?.length > maxMessage ? null : packet);
broker.authorizeSubscribe = (client, sub, done) => {
  if (!allowed(client?.vmUser, sub.topic)) return done(null, null); // SUBACK 0x80 for this filter
  done(null, sub);
};

const http = createHttp();
const wss = new WebSocketServer({ server: http });
wss.on('connection', (socket, req) => broker.handle(createWebSocketStream(socket), req));
const listen = (server, port) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(port), '127.0.0.1', resolve);
});
await listen(http, a.ws);
let tcp = null;
if (a.tcp) { tcp = createTcp(broker.handle); await listen(tcp, a.tcp); }
if (a.ready) writeFileSync(a.ready, JSON.stringify({ pid: process.pid, ws: Number(a.ws), tcp: Number(a.tcp) || null }));
console.log(`ready: aedes on ws://127.0.0.1:${a.ws}${a.tcp ? ` and mqtt://127.0.0.1:${a.tcp}` : ''}${accounts ? ` with ${Object.keys(accounts).length} accounts` : ', open'}`);

const stop = () => {
  for (const c of wss.clients) c.terminate();
  http.close(); tcp?.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
