// The second entry of the package test app: `venuemesh/mqtt`, the MQTT client
// on its own (a smaller module), as installed from the packed tarball. Type-
// checked and bundled like main.ts; connects to the broker and round-trips a
// message. Query: venue, broker (comma separated).
import init, { MqttClient, version } from 'venuemesh/mqtt';
import type { MessageInfo, MqttConnectOptions, VenueMeshError } from 'venuemesh/mqtt';
import wasmUrl from 'venuemesh/mqtt/venuemesh_mqtt_bg.wasm';

export interface MqttAppResult {
  version: string;
  url: string | null;
  echo: string;
  qos: MessageInfo['qos'];
  connected: boolean;
}

declare global {
  interface Window { mqttResult?: Promise<MqttAppResult | { error: string }> }
}

const q = new URLSearchParams(location.search);
const brokers = (q.get('broker') ?? 'ws://127.0.0.1:19001').split(',');
// The broker account from the fragment (the test broker admits no anonymous client).
const h = new URLSearchParams(location.hash.slice(1));
const topic = `vm/${q.get('venue') ?? 'package-test'}/topic/mqtt-only`;

async function run(): Promise<MqttAppResult> {
  await init({ module_or_path: wasmUrl });
  const options: MqttConnectOptions = { brokers, keepAlive: 30 };
  if (h.get('user')) { options.username = h.get('user')!; options.password = h.get('pass') ?? ''; }
  const client = await MqttClient.connect(options);
  const off = client.on('disconnected', (e) => { const why: string = e.reason; void why; });
  const echo = new Promise<[string, MessageInfo]>((resolve) => {
    client.subscribe(topic, (_topic, payload, info) => resolve([new TextDecoder().decode(payload), info]), { qos: 1 });
  });
  await client.subscribed(topic);
  await client.publish(topic, 'hello from venuemesh/mqtt', { qos: 1 });
  const [text, info] = await echo;
  const result = { version: version(), url: client.url, echo: text, qos: info.qos, connected: client.connected };
  off();
  client.close();
  const out = document.getElementById('out');
  if (out) out.textContent = `venuemesh/mqtt connected to ${result.url}`;
  return result;
}

window.mqttResult = run().catch((e: unknown) => {
  const err = e as Partial<VenueMeshError>;
  return { error: err?.name === 'VenueMeshError' ? `${err.code}: ${err.message}` : String(e) };
});
