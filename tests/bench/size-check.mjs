// The size budget (issue #20): fails when the built package grows past the
// figures recorded in config/size-budget.json. Run by `scripts/test` (part
// `size`) after the release build, so every change that adds bytes to what an
// app downloads has to raise the budget in the same commit, knowingly.
//
//   node tests/bench/size-check.mjs            check pkg/ against the budget
//   node tests/bench/size-check.mjs --self-test  also prove the check fails on
//                                                a deliberate regression
// Prints one TAP-like line per check; exit status 1 if any check failed.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { linkChecks, selfChecks } from './short-names-check.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const gz = (buf) => gzipSync(buf, { level: 9 }).length;

/** gzip -9 bytes of each entry an app can import: wasm + JS glue. */
export function measure(dir = `${root}pkg`) {
  const entry = (sub, name) => gz(readFileSync(`${dir}${sub}/${name}_bg.wasm`)) + gz(readFileSync(`${dir}${sub}/${name}.js`));
  return { package: entry('', 'venuemesh'), mqtt: entry('/mqtt', 'venuemesh_mqtt') };
}

/** The checks: one per entry, each `{ name, ok, text }`. */
export function check(sizes, budget) {
  return Object.entries(budget.gzipBytes).map(([entry, max]) => {
    const got = sizes[entry];
    if (got === undefined) return { name: entry, ok: false, text: `no measurement for budget entry "${entry}"` };
    const ok = got <= max;
    const text = `${entry}: ${got} B gzip, budget ${max} B (${ok ? `${max - got} B left` : `${got - max} B OVER: cut bytes or raise config/size-budget.json knowingly`})`;
    return { name: `${entry} within budget`, ok, text };
  });
}

/** Names of test-only hooks (`…ForTest`, `__bench…`: the `test-hooks` cargo feature)
 * found in the package's glue or wasm exports: the published build has none. */
export function testHooks(dir = `${root}pkg`) {
  const found = new Set();
  for (const f of ['venuemesh.js', 'venuemesh_bg.wasm', 'mqtt/venuemesh_mqtt.js', 'mqtt/venuemesh_mqtt_bg.wasm']) {
    for (const m of readFileSync(`${dir}/${f}`).toString('latin1').matchAll(/[A-Za-z_]*ForTest|__bench[A-Za-z]*/g)) found.add(m[0]);
  }
  return [...found];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const budget = JSON.parse(readFileSync(`${root}config/size-budget.json`, 'utf8'));
  const sizes = measure();
  const results = check(sizes, budget);
  const hooks = testHooks();
  results.push({ name: 'no test hooks in the release package', ok: hooks.length === 0, text: hooks.length ? `exports ${hooks.join(', ')}: built with --features test-hooks?` : 'none' });
  // The glue and the wasm carry short names (scripts/short-names.mjs): they must still fit.
  results.push(...await linkChecks());
  if (process.argv.includes('--self-test')) {
    // A deliberate regression: one byte more than the budget allows must fail
    // every entry, and exactly the budget must pass.
    const over = check(Object.fromEntries(Object.entries(budget.gzipBytes).map(([k, v]) => [k, v + 1])), budget);
    const exact = check({ ...budget.gzipBytes }, budget);
    results.push({ name: 'a regression of 1 byte fails', ok: over.every((r) => !r.ok), text: over.map((r) => r.text).join('; ') });
    results.push({ name: 'exactly the budget passes', ok: exact.every((r) => r.ok), text: 'budget figures themselves pass' });
    results.push(...await selfChecks());
  }
  let failed = 0;
  for (const [i, r] of results.entries()) {
    console.log(`${r.ok ? 'ok' : 'not ok'} ${i + 1} - ${r.name}: ${r.text}`);
    if (!r.ok) failed++;
  }
  console.log(`# pass ${results.length - failed}\n# fail ${failed}`);
  process.exit(failed ? 1 : 0);
}
