// Bundle size: what an app downloads (wasm + JS glue), raw and gzip -9,
// next to MQTT.js's browser bundle mqtt.min.js from the same node_modules.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const gz = (buf) => gzipSync(buf, { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KiB (${n} B)`;

export async function bundleSize() {
  const mqtt = readFileSync(`${root}node_modules/mqtt/dist/mqtt.min.js`);
  const peer = gz(mqtt);
  const rows = [];
  // The whole library, and the MQTT client alone (`venuemesh/mqtt`, built
  // with --no-default-features): the apples-to-apples row against MQTT.js.
  for (const [what, dir, name] of [['package', 'pkg', 'venuemesh'], ['venuemesh/mqtt (MQTT only)', 'pkg/mqtt', 'venuemesh_mqtt']]) {
    const wasm = readFileSync(`${root}${dir}/${name}_bg.wasm`);
    const glue = readFileSync(`${root}${dir}/${name}.js`);
    const ours = gz(wasm) + gz(glue);
    rows.push(
      { what: `${what} raw (wasm + glue)`, ours: kb(wasm.length + glue.length), peer: 'mqtt.min.js 5.16', peerValue: kb(mqtt.length), ratio: ((wasm.length + glue.length) / mqtt.length).toFixed(2) },
      { what: `${what} gzip -9 (wasm + glue)`, ours: kb(ours), peer: 'mqtt.min.js 5.16', peerValue: kb(peer), ratio: (ours / peer).toFixed(2) },
    );
  }
  return rows;
}
