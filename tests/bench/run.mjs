// scripts/bench entry point: runs each benchmark and prints one table.
// Usage: node tests/bench/run.mjs [name ...]   (default: all)
// The MQTT and queue benchmarks run in Chromium and then in WebKit (each with
// its peer in the same browser run); their rows are labelled and interleaved,
// the WebKit row under its Chromium twin. VM_BENCH_ENGINES=chromium (or
// webkit) runs one engine only.
import { bundleSize } from './size.mjs';
import { queueBench } from './queue.mjs';
import { mqttBench } from './mqtt.mjs';
import { electionBench } from './election.mjs';
import { replicationBench } from './replication.mjs';
import { routingBench } from './routing.mjs';
import { brokersBench } from './brokers.mjs';
import { chaosBench } from './chaos.mjs';
import { trustBench } from './trust.mjs';
import { stateBench } from './state.mjs';

const ENGINES = (process.env.VM_BENCH_ENGINES || 'chromium,webkit').split(',').filter(Boolean);
const LABEL = { chromium: 'Chromium', webkit: 'WebKit' };
/**
 * Runs `bench` per engine and labels its rows; each row of the first engine
 * is followed by the other engines' rows that measure the same thing (same
 * `what`, in order), rows without a twin come after.
 */
const perEngine = (bench) => async () => {
  const byEngine = [];
  for (const engine of ENGINES) {
    let rows;
    try {
      rows = await bench(engine);
    } catch (e) {
      console.error(`benchmark in ${LABEL[engine]} failed: ${e?.stack ?? e}`);
      rows = [{ what: 'error (see above)', ours: 'error' }];
      process.exitCode = 1;
    }
    byEngine.push(rows.map((r) => ({ ...r, key: r.what, what: `[${LABEL[engine]}] ${r.what.replace(/^ +/, '')}` })));
  }
  const [first = [], ...others] = byEngine;
  const out = [];
  for (const row of first) {
    out.push(row);
    for (const rows of others) {
      const i = rows.findIndex((r) => r.key === row.key);
      if (i >= 0) out.push(...rows.splice(i, 1));
    }
  }
  return [...out, ...others.flat()];
};

const all = { size: bundleSize, mqtt: perEngine(mqttBench), queue: perEngine(queueBench), election: electionBench,
  replication: replicationBench, routing: routingBench, brokers: brokersBench, trust: trustBench, state: stateBench, chaos: chaosBench };
// The chaos run takes minutes: only when asked for by name.
const wanted = process.argv.slice(2);
if (!wanted.length) delete all.chaos;
const rows = [];
for (const [name, run] of Object.entries(all)) {
  if (wanted.length && !wanted.includes(name)) continue;
  try {
    rows.push(...(await run()));
  } catch (e) { // one broken benchmark still leaves the others' rows
    console.error(`benchmark ${name} failed: ${e?.stack ?? e}`);
    rows.push({ what: `${name}: error (see above)`, ours: 'error' });
    process.exitCode = 1;
  }
}

// | what | venuemesh | peer | ratio |
const head = ['benchmark', 'venuemesh', 'peer', 'peer figure', 'ratio (ours/peer)'];
const table = [head, ...rows.map((r) => [r.what, r.ours, r.peer || '', r.peerValue ?? '', r.ratio ?? ''])];
const widths = head.map((_, i) => Math.max(...table.map((row) => String(row[i]).length)));
for (const [i, row] of table.entries()) {
  console.log('| ' + row.map((c, j) => String(c).padEnd(widths[j])).join(' | ') + ' |');
  if (i === 0) console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
}
