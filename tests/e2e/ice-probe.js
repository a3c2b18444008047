// Page side of the e2e ICE check (tests/e2e/lib.mjs adds it to every context
// before any page script runs). It wraps RTCPeerConnection so that each
// connection the library opens is recorded in `window.__vmPeerConnections`,
// and when one becomes `connected` it reads the selected candidate pair from
// `getStats()` and hands its two addresses to the test process through the
// `__vmIceReport` binding. The library itself is not touched: it calls
// `new RTCPeerConnection(...)` on the global at call time.
(() => {
  const Native = globalThis.RTCPeerConnection;
  if (typeof Native !== 'function' || Native.__vmProbe) return;

  /** The selected pair of one connection: {local, remote} candidates, or null before one is chosen. */
  async function selectedPair(pc) {
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    if (!pairId) stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pairId = s.id; });
    const pair = pairId && stats.get(pairId);
    if (!pair) return null;
    const cand = (id) => {
      const c = stats.get(id);
      return c && { address: c.address ?? c.ip, port: c.port, protocol: c.protocol, type: c.candidateType };
    };
    return { local: cand(pair.localCandidateId), remote: cand(pair.remoteCandidateId) };
  }

  class ProbedPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      (globalThis.__vmPeerConnections ||= []).push(this);
      let reported = false;
      this.addEventListener('connectionstatechange', async () => {
        if (reported || this.connectionState !== 'connected') return;
        const pair = await selectedPair(this).catch(() => null);
        if (!pair || reported) return;
        reported = true;
        globalThis.__vmIceReport?.({ ...pair, page: location.pathname });
      });
    }
  }
  ProbedPeerConnection.__vmProbe = true;
  globalThis.RTCPeerConnection = ProbedPeerConnection;
  /** Every recorded connection's selected pair (for tests that ask at a given moment). */
  globalThis.__vmSelectedPairs = async () =>
    (await Promise.all((globalThis.__vmPeerConnections || []).map((pc) => selectedPair(pc).catch(() => null)))).filter(Boolean);
})();
