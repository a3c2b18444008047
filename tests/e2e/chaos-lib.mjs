// A seeded mixed-fault run (issue #17) with real pages, the real broker and the
// reference ingest, on the library's default timers: four devices, each
// behind its own TCP link proxy (the phone without WebRTC), sales on every
// live device all the time, and every few seconds one fault drawn from the
// seed: the hub's renderer crashes (restarted 3 s later, same profile), a
// device's broker link is reset (Will, reconnect), blackholed for 10–25 s, or
// its page reloaded mid-burst. Afterwards everything heals and the run waits
// until the cloud has every acknowledged command.
//
// Used by tests/e2e/chaos.test.mjs (a short run) and by `scripts/bench chaos`
// (tests/bench/chaos.mjs, a long one). Returns the figures; asserts nothing.
import { startIngest, startLinkProxy, meshMember, sleep } from './lib.mjs';


/** xorshift32: the same fault schedule for the same seed. */
function rng(seed) {
  let x = (seed >>> 0) || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

export async function chaosRun({ browser, broker, seconds = 60, seed = 1, log = () => {} }) {
  const rand = rng(seed);
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const venue = `chaos-${seed}-${Date.now().toString(36)}`;
  const ingest = await startIngest({ venue, tcp: broker.tcp });
  const specs = [['kiosk', {}], ['pos', {}], ['ipad', { charging: '1' }], ['phone', { webrtc: '0' }]];
  const devices = [];
  try {
    for (const [kind, extra] of specs) {
      const proxy = await startLinkProxy(broker.port);
      const opts = { hb: 'default', drain: '2000', ...extra };
      const m = await meshMember(browser, proxy.url, venue, kind, opts);
      devices.push({ ...m, proxy, opts, alive: true });
    }
    const live = () => devices.filter((d) => d.alive);
    const state = (d) => d.page.evaluate(() => ({ isHub: window.mesh.isHub, hub: window.mesh.hub, connected: window.mesh.connected }))
      .catch(() => null);
    const restart = async (d) => {
      await d.page.close().catch(() => {});
      const m = await meshMember(browser, d.proxy.url, venue, d.kind, d.opts, { context: d.context });
      Object.assign(d, { page: m.page, errors: m.errors, alive: true });
    };

    // The first election (discovery I + W) is not a fault: start once a hub acts.
    for (let i = 0; i < 120 && !(await Promise.all(live().map(state))).some((x) => x?.isHub); i++) await sleep(250);

    // Sales: one every 100 ms on the next live device; acknowledged = the
    // enqueue resolved (durable on that device).
    const acked = [];
    let stop = false;
    const load = (async () => {
      for (let n = 0; !stop; n++) {
        const ds = live();
        const d = ds[n % Math.max(ds.length, 1)];
        if (d) {
          const id = await d.page.evaluate((n) => window.mesh.enqueue('sale', JSON.stringify({ n })), n).catch(() => null);
          if (id) acked.push(id);
        }
        await sleep(100);
      }
    })();

    // Watch the hub every 250 ms: changes of the acting device, time with none.
    let acting = null, changes = 0, noHubMs = 0, twoHubs = 0, last = Date.now();
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const ds = live();
        const s = await Promise.all(ds.map(state));
        const actingNow = s.map((x, i) => (x?.isHub ? ds[i].id : null)).filter(Boolean);
        const now = Date.now();
        if (actingNow.length === 0) noHubMs += now - last;
        if (actingNow.length > 1) twoHubs += 1;
        if (actingNow.length === 1 && actingNow[0] !== acting) { if (acting !== null) changes += 1; acting = actingNow[0]; }
        last = now;
        await sleep(250);
      }
    })();

    const faults = [];
    const t0 = Date.now();
    await sleep(8_000);
    while (Date.now() - t0 < seconds * 1000) {
      const kind = pick(['crash-hub', 'reset', 'blackhole', 'reload']);
      const at = Math.round((Date.now() - t0) / 1000);
      if (kind === 'crash-hub') {
        const s = await Promise.all(live().map(state));
        const hub = live()[s.findIndex((x) => x?.isHub)] ?? pick(live());
        faults.push(`${at}s crash ${hub.kind}`);
        hub.alive = false;
        const cdp = await hub.context.newCDPSession(hub.page).catch(() => null);
        cdp?.send('Page.crash').catch(() => {});
        await sleep(3_000);
        await restart(hub);
      } else if (kind === 'reset') {
        const d = pick(devices);
        faults.push(`${at}s reset ${d.kind}`);
        d.proxy.reset();
      } else if (kind === 'blackhole') {
        const d = pick(devices);
        const ms = 10_000 + Math.floor(rand() * 15_000);
        faults.push(`${at}s blackhole ${d.kind} ${ms} ms`);
        d.proxy.blackhole();
        await sleep(ms);
        d.proxy.restore();
      } else {
        const d = pick(live());
        faults.push(`${at}s reload ${d.kind}`);
        d.alive = false;
        await restart(d);
      }
      await sleep(4_000 + Math.floor(rand() * 6_000));
    }
    stop = true;
    await load;
    for (const d of devices) d.proxy.restore();
    const healed = Date.now();
    log(`faults: ${faults.join(', ')}`);
    // Drain: every acknowledged command in the cloud, nothing pending anywhere.
    const ids = new Set(acked);
    let drainMs = null;
    while (Date.now() - healed < 180_000) {
      const q = ingest.query();
      const have = new Set(q.ids);
      const counts = await Promise.all(live().map((d) => d.page.evaluate(() => window.mesh.queue.countByStatus()).catch(() => null)));
      if ([...ids].every((id) => have.has(id)) && counts.every((c) => c && c.pending === 0 && c.peerAck === 0)) {
        drainMs = Date.now() - healed;
        break;
      }
      await sleep(500);
    }
    watching = false;
    await watch;
    const q = ingest.query({ rows: true });
    const stored = new Map();
    for (const r of q.rows ?? []) stored.set(r.id, (stored.get(r.id) ?? 0) + 1);
    const have = new Set(q.ids);
    return {
      seconds, seed, acked: ids.size, faults,
      lost: [...ids].filter((id) => !have.has(id)).length,
      storedTwice: [...stored.values()].filter((n) => n > 1).length,
      duplicatesAbsorbed: q.duplicates_absorbed,
      hubChanges: changes, noHubMs, twoHubSamples: twoHubs, drainMs,
      pageErrors: devices.flatMap((d) => d.errors.map(String)),
    };
  } finally {
    for (const d of devices) {
      await d.context.close().catch(() => {});
      await d.proxy.stop().catch(() => {});
    }
    await ingest.stop();
  }
}
