// The app of tests/e2e/package.test.mjs: it imports `venuemesh` as installed
// from the packed tarball, is type-checked with `tsc --strict` and bundled by
// esbuild (`--loader:.wasm=file`), then runs in Chromium against the broker.
// Query: venue, broker (comma separated), kind.
import init, { MqttClient, VenueMesh, version } from 'venuemesh';
import type { DeviceInfoInput, VenueMeshError, VenueMeshErrorCode } from 'venuemesh';
import wasmUrl from 'venuemesh/venuemesh_bg.wasm';

export interface AppResult {
  version: string;
  deviceId: string;
  url: string;
  commandId: string;
  status: string | null;
  badOpen: { name: string; code: VenueMeshErrorCode; isError: boolean } | null;
  echo: string;
}

declare global {
  interface Window { mesh?: VenueMesh; result?: Promise<AppResult | { error: string }> }
}

const q = new URLSearchParams(location.search);
const venue = q.get('venue') ?? 'package-test';
const brokers = (q.get('broker') ?? 'ws://127.0.0.1:19001').split(',');
const kind = (q.get('kind') ?? 'pos') as NonNullable<DeviceInfoInput['kind']>;
// The broker account from the fragment (the test broker admits no anonymous client).
const h = new URLSearchParams(location.hash.slice(1));
const auth: { username?: string; password?: string } = h.get('user') ? { username: h.get('user')!, password: h.get('pass') ?? '' } : {};

function isVenueMeshError(e: unknown): e is VenueMeshError {
  return e instanceof Error && e.name === 'VenueMeshError';
}

async function run(): Promise<AppResult> {
  await init({ module_or_path: wasmUrl });

  // Errors are typed JS errors with a `code`.
  let badOpen: AppResult['badOpen'] = null;
  try {
    await VenueMesh.open({ venue: 'not a venue!', brokers });
  } catch (e) {
    if (!isVenueMeshError(e)) throw e;
    badOpen = { name: e.name, code: e.code, isError: e instanceof Error };
  }

  // The README's quick start: this device's key is made here; the venue's server (the test
  // static server's demo CA, POST /ca/issue) certifies it; open() checks and keeps the bundle.
  const request = await VenueMesh.createPairingRequest({ venue });
  const certified = await fetch('/ca/issue', { method: 'POST', body: JSON.stringify(request) });
  const credentials = await certified.text();
  const mesh = await VenueMesh.open({
    venue, credentials, brokers, ...auth, deviceInfo: { kind }, heartbeatIntervalMs: 300,
  });
  window.mesh = mesh;
  const url = await new Promise<string>((resolve) => {
    const off = mesh.on('connected', (e) => { off(); resolve(e.url); });
    if (mesh.connected) resolve(mesh.getDetailedStats().broker.url ?? '');
  });
  const commandId = await mesh.enqueue('pos/transaction', JSON.stringify({ item: 'espresso', cents: 240 }));

  // The plain MQTT client: a round trip on an application topic.
  const client = await MqttClient.connect({ brokers, ...auth });
  const topic = `vm/${venue}/topic/echo`;
  const echo = new Promise<string>((resolve) => {
    client.subscribe(topic, (_topic, payload) => resolve(new TextDecoder().decode(payload)), { qos: 1 });
  });
  await client.subscribed(topic);
  await client.publish(topic, 'hello', { qos: 1 });
  const echoed = await echo;
  client.close();

  const out = document.getElementById('out');
  if (out) out.textContent = `device ${mesh.deviceId} connected to ${url}`;
  return { version: version(), deviceId: mesh.deviceId, url, commandId, status: mesh.queue.status(commandId), badOpen, echo: echoed };
}

window.result = run().catch((e: unknown) => ({
  error: isVenueMeshError(e) ? `${e.code}: ${e.message}` : String(e),
}));
