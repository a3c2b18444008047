// Admission for the test pages (issue #15): open the mesh with the credentials this device
// already stored; if it has none (NOT_PAIRED), make a pairing request (the device key is
// generated and kept in the page) and get it certified like an app would by its server:
// the static server's POST /ca/issue (scripts/serve.mjs, the venue's demo CA, the same one
// tests/e2e/lib.mjs `venueCa` and the ingest use). With `manual`, publish the request as
// window.pairingRequest and wait for the test to hand a bundle to
// window.provideCredentials(bundle) instead (lib.mjs `pairIfAsked`). `ca`: another root (an outsider).
export async function openPaired(VenueMesh, options, { manual = false, role = 'device', ca = null } = {}) {
  try {
    return await VenueMesh.open(options);
  } catch (e) {
    if (e.code !== 'NOT_PAIRED') throw e;
  }
  const request = await VenueMesh.createPairingRequest({ venue: options.venue, dbName: options.dbName });
  let credentials;
  if (manual) {
    credentials = await new Promise((resolve) => {
      window.provideCredentials = resolve;
      window.pairingRequest = request;
    });
  } else {
    const res = await fetch('/ca/issue', { method: 'POST', body: JSON.stringify({ ...request, role, ca }) });
    if (!res.ok) throw new Error(`/ca/issue: ${res.status} ${await res.text()}`);
    credentials = await res.text();
  }
  return VenueMesh.open({ ...options, credentials });
}
