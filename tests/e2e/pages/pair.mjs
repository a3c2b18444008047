// Cloud admission for the test pages (issue #15): open the mesh with the credentials this
// device already stored; if it has none (NOT_PAIRED), make a pairing request (the device
// key is generated and kept in the page), publish it as window.pairingRequest and wait for
// the test (tests/e2e/lib.mjs `pairIfAsked`, playing the venue's server and its CA) to hand
// the bundle to window.provideCredentials(bundle).
export async function openPaired(VenueMesh, options) {
  try {
    return await VenueMesh.open(options);
  } catch (e) {
    if (e.code !== 'NOT_PAIRED') throw e;
  }
  const request = await VenueMesh.createPairingRequest({ venue: options.venue, dbName: options.dbName });
  const credentials = await new Promise((resolve) => {
    window.provideCredentials = resolve;
    window.pairingRequest = request;
  });
  return VenueMesh.open({ ...options, credentials });
}
