// Helpers for tests/e2e/queue.test.mjs on `window.t`, called with
// page.evaluate. What must survive a reload is written to localStorage
// synchronously, in the same turn as the event it records.
import init, { CommandQueue } from '/pkg/venuemesh.js';

const STATUSES = ['pending', 'peer_ack', 'cloud_ack', 'failed'];
const ACK = 'vmq-acked:'; // localStorage prefix: ids whose enqueue() resolved
const dec = new TextDecoder();
const toB64 = (bytes) => btoa(String.fromCharCode(...bytes));

let wasm;
let q = null;

const t = {
  ready: init().then((w) => { wasm = w; return true; }),

  /** Opens the queue; `subscribe(q)` runs before anything else can happen on it. */
  async open(dbName, options = {}, subscribe) {
    q?.close();
    q = await CommandQueue.open({ dbName, ...options });
    subscribe?.(q);
    return q.stats();
  },

  /** Enqueues `payloads` (strings, or { b64 }) concurrently; resolves with the ids. */
  async enqueueAll(topic, payloads) {
    const ps = payloads.map((p) => q.enqueue(topic, typeof p === 'string' ? p : Uint8Array.from(atob(p.b64), (c) => c.charCodeAt(0))));
    return Promise.all(ps);
  },

  /** `n` concurrent enqueues of one payload; resolves with the number stored. */
  async enqueueMany(n, payload) {
    const ps = new Array(n);
    for (let i = 0; i < n; i++) ps[i] = q.enqueue('sale', payload);
    return (await Promise.all(ps)).length;
  },

  peerAcked: (ids) => q.peerAcked(ids),
  cloudAcked: (ids) => q.cloudAcked(ids),
  uploadFailed: (ids, error) => q.uploadFailed(ids, error),
  markProcessed: (id) => q.markProcessed(id),
  isProcessed: (id) => q.isProcessed(id),
  flush: () => q.flush(),
  stats: () => q.stats(),
  counts: () => q.countByStatus(),

  /** Every stored command: { id, status, topic, text, b64, retryCount, lastError }. */
  async stored() {
    const out = [];
    for (const s of STATUSES) {
      for (const c of await q.list(s)) {
        out.push({ id: c.id, status: c.status, topic: c.topic, text: dec.decode(c.payload), b64: toB64(c.payload),
          retryCount: c.retryCount, lastError: c.lastError });
      }
    }
    return out;
  },

  /**
   * A burst of `total` enqueues, `perTurn` per macrotask. Every resolved id is
   * written to localStorage at once. With `reloadAfter`, the page reloads
   * itself in the `.then` of that many resolutions (mid-burst, while later
   * batches are queued or being written). Returns at once.
   */
  startBurst({ total, perTurn, reloadAfter, run }) {
    localStorage.setItem('vmq-burst', JSON.stringify({ total, run }));
    let resolved = 0;
    let i = 0;
    const turn = () => {
      for (let k = 0; k < perTurn && i < total; k++, i++) {
        const n = i;
        q.enqueue('sale', JSON.stringify({ run, n, pad: 'x'.repeat(150) })).then((id) => {
          localStorage.setItem(ACK + id, String(n));
          resolved++;
          if (resolved === reloadAfter) location.reload();
        }, () => {});
      }
      if (i < total) setTimeout(turn, 0);
    };
    turn();
    return true;
  },

  ackedCount: () => Object.keys(localStorage).filter((k) => k.startsWith(ACK)).length,
  acked: () => Object.keys(localStorage).filter((k) => k.startsWith(ACK)).map((k) => ({ id: k.slice(ACK.length), n: Number(localStorage.getItem(k)) })),
  clearAcked: () => localStorage.clear(),

  wasmMemoryBytes: () => wasm.memory.buffer.byteLength,
  close: () => { q?.close(); q = null; },
};

window.t = t;
