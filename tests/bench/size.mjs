// Bundle size: what an app downloads (wasm + JS glue), raw and gzip -9,
// next to MQTT.js's browser bundle mqtt.min.js from the same node_modules.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const gz = (buf) => gzipSync(buf, { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KiB (${n} B)`;

export async function bundleSize() {
  const wasm = readFileSync(`${root}pkg/venuemesh_bg.wasm`);
  const glue = readFileSync(`${root}pkg/venuemesh.js`);
  const mqtt = readFileSync(`${root}node_modules/mqtt/dist/mqtt.min.js`);
  const ours = gz(wasm) + gz(glue);
  const peer = gz(mqtt);
  return [
    { what: 'package raw (wasm + glue)', ours: kb(wasm.length + glue.length), peer: 'mqtt.min.js 5.16', peerValue: kb(mqtt.length), ratio: ((wasm.length + glue.length) / mqtt.length).toFixed(2) },
    { what: 'package gzip -9 (wasm + glue)', ours: kb(ours), peer: 'mqtt.min.js 5.16', peerValue: kb(peer), ratio: (ours / peer).toFixed(2) },
  ];
}
