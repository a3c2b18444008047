// The demo page: one mesh member per tab. Query parameters:
//   ?venue=NAME            venue to join (default "demo")
//   &broker=ws://host:port broker URL(s), comma separated (default ws://<this host>:9001)
//   &db=NAME               IndexedDB name (tests give each page its own)
//   &key=SECRET            venue key (≥ 16 characters; the demo default is for demos only)
//   &kind=ipad|kiosk|pos|phone   device kind for the hub score
//   &hb=MS                 heartbeat interval (300 = fast failover)
import init, { VenueMesh, version } from '../pkg/venuemesh.js';

const params = new URLSearchParams(location.search);
const venue = params.get('venue') || 'demo';
const brokers = (params.get('broker') || `ws://${location.hostname || '127.0.0.1'}:9001`).split(',');
const $ = (id) => document.getElementById(id);

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(li);
  while ($('log').children.length > 200) $('log').lastChild.remove();
}

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
  el.className = `pill ${state === 'connected' ? 'pill-on' : 'pill-off'}`;
}

async function main() {
  await init();
  $('version').textContent = version();
  $('venue').textContent = venue;
  const options = { venue, brokers, venueKey: params.get('key') || 'venuemesh-demo-key-not-secret' };
  if (params.get('kind')) options.deviceInfo = { kind: params.get('kind') };
  if (params.get('hb')) options.heartbeatIntervalMs = Number(params.get('hb'));
  if (params.get('db')) options.dbName = params.get('db');
  const mesh = await VenueMesh.open(options);
  window.mesh = mesh; // for tests and for poking at it from the console
  $('device-id').textContent = mesh.deviceId;
  log(`opened as ${mesh.deviceId}`);
  mesh.on('connected', (e) => { setConn('connected', 'connected'); $('broker').textContent = e.url; log(`connected to ${e.url}`); });
  mesh.on('disconnected', (e) => { setConn('disconnected', 'offline'); log(`disconnected: ${e.reason}`); });
}

main().catch((err) => {
  setConn('error', 'error');
  log(`error: ${err.code || ''} ${err.message}`);
  console.error(err);
});
