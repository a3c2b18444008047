// The durable queue: 10,000 × ~200 B records, one CommandQueue.enqueue() call
// each (no batching by the caller: the calls are made concurrently, as an app
// does when commands arrive faster than a commit), against idb 8 with one
// transaction per record and Dexie 4 bulkAdd of 100 — same browser, same page,
// same run, strict durability unless said otherwise. Plus the JS heap (CDP
// Runtime.getHeapUsage after a forced GC; Chromium only) and the wasm linear
// memory with 10,000 commands queued.
// queueBench('webkit') runs the same page in WebKit (Debian's WebKitGTK
// MiniBrowser over WebDriver, tests/e2e/webkit.mjs), idb and Dexie beside
// the queue in that same WebKit run.
import { launch, launchWebKit } from '../e2e/lib.mjs';

const BASE = process.env.VM_BENCH_BASE || 'http://127.0.0.1:18180';
const PAGE = '/tests/e2e/pages/queue.html';
const N = 10_000;
const SIZE = 200;
const RUNS = Number(process.env.VM_BENCH_RUNS || 5); // rounds for the fast variants (median)

// Runs in the page. Every variant writes the same record shape (what the
// queue stores) into a fresh database and is timed from the first call to
// the last commit.
async function variant(name, n, size) {
  const { CommandQueue } = await import('/pkg/venuemesh.js');
  const { openDB } = await import('/node_modules/idb/build/index.js');
  const { default: Dexie } = await import('/node_modules/dexie/dist/dexie.mjs');
  const dbName = `bench-${name}-${Math.random().toString(36).slice(2)}`;
  const payload = new Uint8Array(size).fill(120);
  const now = Date.now();
  const rec = (i) => ({ id: `dev1-0123456789abcdef-${i}`, topic: 'sale', payload, status: 'pending', retryCount: 0,
    createdAt: now, updatedAt: now, hlc: '0' });
  const idbOpen = () => openDB(dbName, 1, { upgrade(db) { db.createObjectStore('outbox', { keyPath: 'id' }); } });
  let t0, extra = {};
  switch (name) {
    case 'ours': {
      const q = await CommandQueue.open({ dbName });
      t0 = performance.now();
      const ps = new Array(n);
      for (let i = 0; i < n; i++) ps[i] = q.enqueue('sale', payload);
      await Promise.all(ps);
      const ms = performance.now() - t0;
      extra = { transactions: q.stats().transactions, pending: q.pendingCount() };
      q.close();
      indexedDB.deleteDatabase(dbName);
      return { ms, ...extra };
    }
    case 'ours-awaited': { // one call at a time: what group commit cannot help
      const q = await CommandQueue.open({ dbName });
      t0 = performance.now();
      for (let i = 0; i < n; i++) await q.enqueue('sale', payload);
      const ms = performance.now() - t0;
      q.close();
      indexedDB.deleteDatabase(dbName);
      return { ms };
    }
    case 'idb-strict':
    case 'idb-default': { // one transaction per record, each awaited
      const db = await idbOpen();
      const durability = name === 'idb-strict' ? 'strict' : 'default';
      t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const tx = db.transaction('outbox', 'readwrite', { durability });
        tx.store.put(rec(i));
        await tx.done;
      }
      break;
    }
    case 'idb-strict-concurrent': { // one transaction per record, all issued at once
      const db = await idbOpen();
      t0 = performance.now();
      const done = new Array(n);
      for (let i = 0; i < n; i++) {
        const tx = db.transaction('outbox', 'readwrite', { durability: 'strict' });
        tx.store.put(rec(i));
        done[i] = tx.done;
      }
      await Promise.all(done);
      break;
    }
    case 'dexie-bulk100': {
      const db = new Dexie(dbName, { chromeTransactionDurability: 'strict' });
      db.version(1).stores({ outbox: 'id' });
      await db.open();
      t0 = performance.now();
      for (let i = 0; i < n; i += 100) {
        const chunk = [];
        for (let j = i; j < Math.min(n, i + 100); j++) chunk.push(rec(j));
        await db.outbox.bulkAdd(chunk);
      }
      const ms = performance.now() - t0;
      db.close();
      await Dexie.delete(dbName);
      return { ms };
    }
    default: throw new Error(`unknown variant ${name}`);
  }
  const ms = performance.now() - t0;
  indexedDB.deleteDatabase(dbName);
  return { ms };
}

async function heapOf(page, cdp) {
  let js = NaN;
  if (cdp) {
    await cdp.send('HeapProfiler.collectGarbage');
    js = (await cdp.send('Runtime.getHeapUsage')).usedSize;
  }
  const wasm = await page.evaluate(() => window.t.wasmMemoryBytes());
  return { js, wasm };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const mb = (b) => `${(b / 1048576).toFixed(2)} MB`;

/** The queue rows for `engine` ('chromium' or 'webkit'). */
export async function queueBench(engine = 'chromium') {
  const browser = engine === 'webkit' ? await launchWebKit() : await launch();
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${BASE}${PAGE}`);
    await page.evaluate(() => window.t.ready);
    const rate = {};
    const info = {};
    // Interleaved rounds: ours and Dexie back to back in every round, so a
    // slow moment of the machine hits both; the ratio is the median of the
    // per-round ratios. The slow one-transaction-per-record variants run
    // fewer times (≈ 10 s each).
    const plan = [
      ['ours', N, RUNS], ['dexie-bulk100', N, RUNS], ['idb-strict-concurrent', N, 3],
      ['idb-strict', N, 1], ['idb-default', N, 1], ['ours-awaited', 2_000, 1],
    ];
    // Warm-up, not counted: wasm tier-up, Dexie's and idb's JIT, the IDB backend.
    for (const name of ['ours', 'dexie-bulk100', 'idb-strict']) {
      await page.evaluate(([f, a, b, c]) => (0, eval)(`(${f})`)(a, b, c), [variant.toString(), name, 1_000, SIZE]);
    }
    for (let r = 0; r < RUNS; r++) {
      for (const [name, n, runs] of plan) {
        if (r >= runs) continue;
        const res = await page.evaluate(([f, a, b, c]) => (0, eval)(`(${f})`)(a, b, c), [variant.toString(), name, n, SIZE]);
        (rate[name] ||= []).push(n / (res.ms / 1000));
        info[name] = res;
        console.error(`queue bench (${engine}): ${name} round ${r + 1}: ${fmt(n / (res.ms / 1000))} rec/s`);
      }
    }
    const perRound = (peer) => median(rate.ours.slice(0, rate[peer].length).map((v, i) => v / rate[peer][i])).toFixed(2);
    const r = Object.fromEntries(Object.entries(rate).map(([k, v]) => [k, median(v)]));

    // Memory: a fresh page, 10,000 commands queued (committed, pending).
    // The JS heap needs the DevTools protocol: Chromium only.
    const mpage = await context.newPage();
    await mpage.goto(`${BASE}${PAGE}`);
    await mpage.evaluate(() => window.t.ready);
    const cdp = engine === 'webkit' ? null : await context.newCDPSession(mpage);
    const dbName = `bench-mem-${Date.now()}`;
    await mpage.evaluate((db) => window.t.open(db), dbName);
    const before = await heapOf(mpage, cdp);
    await mpage.evaluate(async ([n, size]) => {
      const payload = new Uint8Array(size).fill(120);
      const ids = await window.t.enqueueMany(n, payload);
      return ids;
    }, [N, SIZE]);
    const afterStats = await mpage.evaluate(() => window.t.stats());
    const after = await heapOf(mpage, cdp);
    // A second burst: linear memory is reused once grown, so this shows what
    // 10,000 more queued commands really keep (the core's index), not the
    // burst's transient peak.
    await mpage.evaluate(([n, size]) => window.t.enqueueMany(n, new Uint8Array(size).fill(121)), [N, SIZE]);
    const after2 = await heapOf(mpage, cdp);
    const after2Stats = await mpage.evaluate(() => window.t.stats());
    await mpage.evaluate(() => window.t.close());

    const runs = (k) => (rate[k].length > 1 ? `, median of ${rate[k].length}` : '');
    const row = (what, ours, peer, peerValue, ratio) => ({ what, ours, peer, peerValue, ratio });
    const ratio = (a, b) => (a / b).toFixed(2);
    return [
      row(`queue: ${fmt(N)} × ${SIZE} B, one enqueue() each (concurrent calls), rec/s${runs('ours')}`,
        `${fmt(r.ours)} (${info.ours.transactions} strict tx)`, `Dexie 4 bulkAdd of 100, strict${runs('dexie-bulk100')}`, fmt(r['dexie-bulk100']), perRound('dexie-bulk100')),
      row('  same', fmt(r.ours), `idb 8, 1 tx per record, strict, all issued at once${runs('idb-strict-concurrent')}`, fmt(r['idb-strict-concurrent']), perRound('idb-strict-concurrent')),
      row('  same', fmt(r.ours), 'idb 8, 1 tx per record, strict, each awaited', fmt(r['idb-strict']), ratio(r.ours, r['idb-strict'])),
      row('  same', fmt(r.ours), 'idb 8, 1 tx per record, default durability, each awaited', fmt(r['idb-default']), ratio(r.ours, r['idb-default'])),
      row('queue: 2,000 enqueue() each awaited before the next, rec/s', fmt(r['ours-awaited']), 'idb 8, 1 tx per record, strict, each awaited', fmt(r['idb-strict']), ratio(r['ours-awaited'], r['idb-strict'])),
      ...(cdp ? [row(`queue: JS heap growth, ${fmt(afterStats.pending)} commands queued`, mb(after.js - before.js), 'goal', '< 5 MB', '')] : []),
      row(`queue: wasm memory growth, first ${fmt(afterStats.pending)} commands queued (burst peak)`, mb(after.wasm - before.wasm), '(linear memory, never shrinks)', '', ''),
      row(`queue: memory growth, next ${fmt(after2Stats.pending - afterStats.pending)} commands queued`,
        `${mb(after2.wasm - after.wasm)} wasm${cdp ? `, ${mb(after2.js - after.js)} JS` : ''}`, cdp ? '' : '(no JS heap figure without CDP)', '', ''),
    ];
  } finally {
    await browser.close();
  }
}
