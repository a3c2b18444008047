// The demo's trust card (issue #15): how this device got its certificate, and — on an
// admin device — admitting a new device with a one-time code and revoking one.
//
// Admission in the demo:
// * `?code=ABCD-…` (the link the admin's "Invite" shows): VenueMesh.join with that code;
//   the admin device certifies this device's key (no server involved);
// * otherwise the venue's "server" certifies it: the static server's POST /ca/issue
//   (scripts/serve.mjs; a demo CA with a public seed). `?admin=1` asks for an admin
//   certificate (the iPad of the manager).

const $ = (id) => document.getElementById(id);

/** Opens the mesh with this device's stored credentials, pairing it first if it has none. */
export async function openPaired(VenueMesh, options, params, log) {
  try {
    return await VenueMesh.open(options);
  } catch (e) {
    if (e.code !== 'NOT_PAIRED') throw e;
  }
  const code = params.get('code');
  if (code) {
    log(`pairing with code ${code.slice(0, 4)}-… (waiting for the admin device)`);
    return VenueMesh.join({ ...options, code });
  }
  const request = await VenueMesh.createPairingRequest({ venue: options.venue, dbName: options.dbName });
  const role = params.get('admin') === '1' ? 'admin' : 'device';
  log(`asking the venue server to certify ${request.device.slice(0, 8)} (${role})`);
  const res = await fetch('/ca/issue', { method: 'POST', body: JSON.stringify({ ...request, role }) });
  if (!res.ok) throw new Error(`the venue server refused: ${await res.text()}`);
  return VenueMesh.open({ ...options, credentials: await res.text() });
}

/** Wires the card's buttons; `newDeviceUrl(code)` is the link a new device opens. */
export function setupTrust(mesh, { newDeviceUrl, log }) {
  const isAdmin = mesh.certificateRole === 'admin';
  $('trust-role').textContent = isAdmin ? 'admin (may invite and revoke devices)' : 'device';
  $('trust-admin').hidden = !isAdmin;
  if (!isAdmin) return;
  $('invite').addEventListener('click', () => {
    let inv;
    try { inv = mesh.pairing.invite(); } catch (e) { log(`invite: ${e.code} ${e.message}`, 'bad'); return; }
    $('invite-code').textContent = inv.code;
    const link = $('invite-link');
    link.href = newDeviceUrl(inv.code);
    link.hidden = false;
    $('invite-expiry').textContent = `valid until ${new Date(inv.expiresAt).toLocaleTimeString()}, once`;
    log(`invite ${inv.code} made: open the link on the new device`, 'ok');
    inv.admitted.then((a) => {
      if (a) log(`admitted ${a.device.slice(0, 8)} with code ${inv.code.slice(0, 4)}-…`, 'ok');
      else log(`invite ${inv.code.slice(0, 4)}-… expired unused`);
      $('invite-code').textContent = '–';
      link.hidden = true;
    });
  });
}

/** The security counters and, on an admin, a Revoke button per peer. */
export function renderTrust(mesh, stats) {
  const s = stats.security;
  const refused = ['unknownSender', 'badChain', 'revoked', 'badSignature', 'badBody', 'wrongRole', 'badOriginSig', 'badReceipt']
    .filter((k) => s[k]).map((k) => `${k} ${s[k]}`);
  $('trust-refused').textContent = refused.length ? refused.join(' · ') : 'none';
  $('trust-revoked').textContent = String(s.revokedKeys ?? 0);
  if (mesh.certificateRole !== 'admin') return;
  const list = $('revoke-list');
  const want = stats.peers.map((p) => p.device).sort();
  if (list.dataset.peers === want.join(',')) return;
  list.dataset.peers = want.join(',');
  list.replaceChildren(...want.map((device) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button'; b.className = 'secondary'; b.textContent = `Revoke ${device.slice(0, 8)}`;
    b.dataset.device = device;
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await mesh.revoke(device); } catch (e) { b.disabled = false; b.textContent = `${e.code}`; }
    });
    li.append(b);
    return li;
  }));
}
