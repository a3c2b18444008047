// Simulated devices for tests/bench/brokers.mjs, one worker thread's share:
// each device is an MQTT.js client over WebSocket that speaks PROTOCOL.md (a
// signed HEARTBEAT every I ms on vm/{venue}/hb/{device}, subscribed to
// vm/{venue}/hb/+ like a device) and verifies every heartbeat it receives,
// noting its delay (now − the envelope's HLC wall time; one process, one clock).
// Several workers spread the clients over the cores, so that the broker, not
// one client event loop, is what the benchmark finds the limit of.
// Envelope code: ./sim-wire.mjs only.
import { parentPort, workerData } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { heartbeat, openHeartbeat, counterFloor } from './sim-wire.mjs';

const { url, devices, interval } = workerData; // devices: [{ venue, password }]

let on = false, delays = [], received = 0, bad = 0;
const clients = [], timers = [];

async function device({ venue, password }) {
  const id = `sim-${randomBytes(4).toString('hex')}`;
  const c = await mqtt.connectAsync(url, {
    username: venue, password, clientId: `${venue}-${id}`, clean: true, reconnectPeriod: 0, keepalive: 30, protocolVersion: 4,
    will: { topic: `vm/${venue}/presence/${id}`, payload: Buffer.alloc(0), qos: 1, retain: true },
  });
  clients.push(c);
  c.on('message', (_topic, payload) => {
    const now = Date.now();
    try {
      const hb = openHeartbeat(payload, venue);
      if (on) { delays.push(now - hb.sentAt); received++; }
    } catch { bad++; }
  });
  await c.subscribeAsync(`vm/${venue}/hb/+`, { qos: 1 });
  let counter = counterFloor();
  const beat = () => {
    counter += 1n;
    c.publish(`vm/${venue}/hb/${id}`, heartbeat(venue, id, counter), { qos: 0 });
  };
  // Phases spread over the interval, as independent devices would be.
  timers.push(setTimeout(() => { beat(); timers.push(setInterval(beat, interval)); }, Math.random() * interval));
}

parentPort.on('message', async (m) => {
  if (m === 'start') { delays = []; received = 0; on = true; return; }
  if (m === 'stop') {
    on = false;
    const d = Float64Array.from(delays);
    parentPort.postMessage({ delays: d, received, bad }, [d.buffer]);
    return;
  }
  if (m === 'close') {
    for (const t of timers) { clearTimeout(t); clearInterval(t); }
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    parentPort.postMessage('closed');
  }
});

for (const d of devices) await device(d);
parentPort.postMessage('ready');
