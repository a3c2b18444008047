// `scripts/bench chaos`: the long seeded mixed-fault run of issue #17
// (tests/e2e/chaos-lib.mjs; CHAOS_SECONDS, default 300, and CHAOS_SEED).
// Rows: lost / stored twice / duplicates absorbed / hub changes / time
// without a hub / time to drain. No peer to compare with: absolute figures.
export async function chaosBench() {
  const { launch, startBroker } = await import('../e2e/lib.mjs');
  const { chaosRun } = await import('../e2e/chaos-lib.mjs');
  const seconds = Number(process.env.CHAOS_SECONDS || 300);
  const seed = Number(process.env.CHAOS_SEED || 17);
  const browser = await launch();
  const broker = await startBroker();
  try {
    const r = await chaosRun({ browser, broker, seconds, seed, log: (l) => console.error(`chaos: ${l}`) });
    const what = (w) => `chaos ${seconds} s seed ${seed}: ${w}`;
    return [
      { what: what(`acknowledged commands`), ours: String(r.acked) },
      { what: what(`lost`), ours: String(r.lost) },
      { what: what(`stored twice`), ours: String(r.storedTwice) },
      { what: what(`duplicates absorbed by the ingest`), ours: String(r.duplicatesAbsorbed) },
      { what: what(`hub changes`), ours: String(r.hubChanges) },
      { what: what(`time without a hub`), ours: `${(r.noHubMs / 1000).toFixed(1)} s` },
      { what: what(`time to drain after healing`), ours: r.drainMs === null ? 'did not drain' : `${(r.drainMs / 1000).toFixed(1)} s` },
    ];
  } finally {
    await browser.close();
    await broker.stop();
  }
}
