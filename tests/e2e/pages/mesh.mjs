// One mesh member for the election end-to-end tests and benchmarks.
// Query: venue, broker, kind, charging=1, hb (heartbeat ms, or `default`: the library's own timers), db, drain (ms), batch, webrtc=0, upload (see below).
// Every event is recorded in window.events with a wall-clock timestamp
// (performance.timeOrigin + performance.now(), comparable across pages).
import init, { VenueMesh } from '/pkg/venuemesh.js';
import { brokerAuth } from './broker-auth.mjs';
import { openPaired } from './pair.mjs';

const p = new URLSearchParams(location.search);
window.events = [];
const stamp = () => performance.timeOrigin + performance.now();
try {
  await init();
  const options = {
    venue: p.get('venue'),
    brokers: p.get('broker').split(','),
    ...brokerAuth(p.get('broker').split(',')),
    deviceInfo: { kind: p.get('kind') || 'phone', charging: p.get('charging') === '1' },
  };
  if (p.get('hb') !== 'default') options.heartbeatIntervalMs = Number(p.get('hb') || 300);
  if (p.get('db')) options.dbName = p.get('db');
  if (p.get('drain')) options.drainIntervalMs = Number(p.get('drain'));
  if (p.get('batch')) options.uploadBatchSize = Number(p.get('batch'));
  if (p.get('webrtc') === '0') options.webrtc = false;
  // upload=N: an app upload function that records batches, rejects its first N calls, then
  // returns the receipt of the test server's stand-in backend.
  if (p.get('upload') !== null) {
    window.uploads = [];
    let refuse = Number(p.get('upload'));
    const b64 = (u8) => btoa(Array.from(u8, (x) => String.fromCharCode(x)).join(''));
    options.upload = async (b) => {
      window.uploads.push({ batch: b.batch, ids: b.commands.map((c) => c.id), ok: refuse <= 0 });
      if (refuse-- > 0) throw new Error('backend unavailable');
      // The app's backend stores the batch and answers with the cloud's signed receipt
      // (here the test server's stand-in, POST /ca/receipt, signing with the demo cloud key).
      const res = await fetch('/ca/receipt', { method: 'POST', body: JSON.stringify({
        venue: options.venue,
        commands: b.commands.map((c) => ({ ...c, payload: b64(c.payload), originSig: b64(c.originSig) })),
        certificates: Object.fromEntries(Object.entries(b.certificates).map(([k, v]) => [k, b64(v)])),
      }) });
      if (!res.ok) throw new Error(`backend: ${await res.text()}`);
      return { receipt: (await res.json()).receipt };
    };
  }
  const mesh = await openPaired(VenueMesh, options, { manual: p.get('pair') === 'manual', role: p.get('role') || 'device', ca: p.get('ca') });
  for (const ev of ['becomeHub', 'loseHub', 'hubChanged', 'peerJoined', 'peerLeft', 'connected', 'disconnected']) {
    mesh.on(ev, (e) => window.events.push({ ev, at: stamp(), ...e }));
  }
  window.mesh = mesh;
  document.getElementById('out').textContent = `device ${mesh.deviceId}`;
} catch (err) {
  window.openError = `${err.code} ${err.message}`;
  document.getElementById('out').textContent = window.openError;
}
