// Summarises `.cpuprofile` files written by the MQTT benchmark
// (VM_BENCH_MQTT_PROFILE=DIR bash scripts/bench mqtt): per file, the busy
// time (everything but `(idle)`), then the functions with the most self time
// and the share of each script (wasm, glue, the bench page, MQTT.js, the
// engine's own `(program)` and `(garbage collector)`).
// Usage: node tests/bench/mqtt-profile.mjs DIR/*.cpuprofile [--top N]
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const TOP = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 15;

for (const file of args) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  // Self time per node: each sample's node gets the interval that follows it.
  const self = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i + 1] ?? 0;
    self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + dt);
  }
  const fns = new Map(), scripts = new Map();
  let busy = 0, total = 0;
  for (const [id, us] of self) {
    const { callFrame: f } = byId.get(id);
    total += us;
    if (f.functionName === '(idle)') continue;
    busy += us;
    const script = f.url ? basename(f.url.split('?')[0]) : f.functionName.startsWith('(') ? f.functionName : '(native)';
    const key = `${f.functionName || '(anonymous)'}  ${script}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    scripts.set(script, (scripts.get(script) ?? 0) + us);
  }
  const ms = (us) => (us / 1000).toFixed(1).padStart(8);
  console.log(`\n${basename(file)}: ${ms(busy)} ms busy of ${ms(total).trim()} ms`);
  for (const [k, us] of [...scripts].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`  ${ms(us)} ms  ${k}`);
  console.log('  top functions (self):');
  for (const [k, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(`  ${ms(us)} ms  ${k}`);
}
