// One mesh member for the routing end-to-end tests and benchmarks.
// Query: venue, broker, kind, hb (heartbeat ms), room (joined at once), webrtc=0 (broker only),
// db (IndexedDB name: two pages of one browser profile with different names are two devices).
// window.received: every `message` event ({from, room, id, text, late, at}); window.routeOf(peer):
// whether the peer's data channel is up and which route new messages to it take.
import init, { VenueMesh } from '/pkg/venuemesh.js';
import { brokerAuth } from './broker-auth.mjs';
import { openPaired } from './pair.mjs';

const p = new URLSearchParams(location.search);
// Every data channel of the page, so a test can close one (window.closeChannels()).
// Browsers without WebRTC (WebKitGTK's MiniBrowser, web views with WebRTC off) have no
// RTCPeerConnection to wrap: the page must still open, as the library does.
window.channels = [];
const Native = window.RTCPeerConnection;
if (typeof Native === 'function') {
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('datachannel', (e) => window.channels.push(e.channel));
    }
    createDataChannel(...args) {
      const dc = super.createDataChannel(...args);
      window.channels.push(dc);
      return dc;
    }
  };
}
window.closeChannels = () => {
  let n = 0;
  for (const dc of window.channels) if (dc.readyState === 'open') { dc.close(); n++; }
  return n;
};
window.received = [];
const stamp = () => performance.timeOrigin + performance.now();
try {
  await init();
  const mesh = await openPaired(VenueMesh, {
    venue: p.get('venue'),
    brokers: p.get('broker').split(','),
    ...brokerAuth(p.get('broker').split(',')),
    deviceInfo: { kind: p.get('kind') || 'phone' },
    heartbeatIntervalMs: Number(p.get('hb') || 300),
    webrtc: p.get('webrtc') !== '0',
    ...(p.get('db') ? { dbName: p.get('db') } : {}),
  }, { manual: p.get('pair') === 'manual', role: p.get('role') || 'device', ca: p.get('ca') });
  mesh.on('message', (m) => {
    window.received.push({ from: m.from, room: m.room, id: m.id, text: m.text, late: m.late, at: stamp() });
    window.onMessage?.(m);
  });
  if (p.get('room')) mesh.joinRoom(p.get('room'));
  window.mesh = mesh;
  window.routeOf = (peer) => {
    const r = mesh.getDetailedStats().routes.peers.find((x) => x.device === peer);
    if (!r) return null;
    const rtc = r.routes.find((x) => x.route === 'rtc');
    return { best: r.best, rtcUp: rtc.up, rtc: r.rtc, pending: r.pending };
  };
  document.getElementById('out').textContent = `device ${mesh.deviceId}`;
} catch (err) {
  window.openError = `${err.code} ${err.message}`;
  document.getElementById('out').textContent = window.openError;
}
