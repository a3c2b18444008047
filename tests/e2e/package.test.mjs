// The npm package as a user gets it: `npm pack` the built pkg/, install the
// tarball into a small app (tests/e2e/package-app/), type-check that app and
// the README's quick start with `tsc --strict` against the installed types,
// bundle it with esbuild, and run it in Chromium against the broker; the same
// for the MQTT-only entry `venuemesh/mqtt` (package-app/mqtt.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { launch, BASE, BROKER, sleep, brokerAuthFragment } from './lib.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PKG = join(ROOT, 'pkg');
const FIXTURE = join(ROOT, 'tests/e2e/package-app');
const BIN = join(ROOT, 'node_modules/.bin');
const RUN = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
// Served by scripts/serve.mjs (it serves .run/pages/).
const OUT_REL = `.run/pages/package-app-${RUN}`;
const OUT = join(ROOT, OUT_REL);
const EXPECTED_FILES = ['README.md', 'index.d.ts', 'package.json', 'venuemesh.d.ts', 'venuemesh.js',
  'venuemesh_bg.wasm', 'venuemesh_bg.wasm.d.ts', 'mqtt/index.d.ts', 'mqtt/venuemesh_mqtt.d.ts',
  'mqtt/venuemesh_mqtt.js', 'mqtt/venuemesh_mqtt_bg.wasm', 'mqtt/venuemesh_mqtt_bg.wasm.d.ts'];

let browser, tmp, app, packed;

/** Runs a command; on failure the error carries its output. */
function run(cmd, args, cwd) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.status}):\n${e.stdout}\n${e.stderr}`);
  }
}

/** The first ```js block of the package README: the quick start. */
function quickStart() {
  const readme = readFileSync(join(app, 'node_modules/venuemesh/README.md'), 'utf8');
  const m = /## Quick start\s+```js\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'the README has a "Quick start" js block');
  return m[1];
}

before(async () => {
  assert.ok(existsSync(join(PKG, 'package.json')), 'pkg/ is built (scripts/test runs build_pkg first)');
  tmp = mkdtempSync(join(tmpdir(), 'vm-package-'));
  // 1. npm pack, as `npm publish` would.
  const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', tmp, '--loglevel=error'], PKG));
  packed = info;
  // 2. A fresh app that installs the tarball (it has no dependencies: offline).
  app = join(tmp, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'vm-package-test-app', private: true, type: 'module' }));
  for (const f of readdirSync(FIXTURE)) cpSync(join(FIXTURE, f), join(app, f));
  run('npm', ['install', join(tmp, info.filename), '--no-audit', '--no-fund', '--offline', '--loglevel=error'], app);
  // 3. Bundle with esbuild; the wasm's URL comes from the `file` loader.
  run(join(BIN, 'esbuild'), ['main.ts', 'mqtt.ts', '--bundle', '--format=esm', '--target=es2020,safari15', '--minify',
    '--loader:.wasm=file', `--outdir=${OUT}`, '--log-level=warning'], app);
  for (const f of ['index.html', 'mqtt.html']) cpSync(join(app, f), join(OUT, f));
  browser = await launch();
});

after(async () => {
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  rmSync(OUT, { recursive: true, force: true });
});

test('npm pack ships the package files and a package.json that points at them', () => {
  assert.deepEqual(packed.files.map((f) => f.path).sort(), [...EXPECTED_FILES].sort());
  const installed = join(app, 'node_modules/venuemesh');
  const pj = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
  const cargoVersion = /^version = "([^"]+)"/m.exec(readFileSync(join(ROOT, 'Cargo.toml'), 'utf8'))[1];
  assert.equal(pj.name, 'venuemesh');
  assert.equal(pj.version, cargoVersion, 'the version follows Cargo.toml');
  assert.equal(pj.type, 'module');
  assert.equal(pj.sideEffects, false);
  assert.equal(pj.exports['.'].types, pj.types);
  for (const p of [pj.main, pj.module, pj.types, pj.exports['.'].types, pj.exports['.'].default, pj.exports['./venuemesh_bg.wasm'],
    pj.exports['./mqtt'].types, pj.exports['./mqtt'].default, pj.exports['./mqtt/venuemesh_mqtt_bg.wasm']]) {
    assert.ok(existsSync(join(installed, p)), `${p} is in the installed package`);
  }
  // The README's quick start is five lines.
  assert.equal(quickStart().trimEnd().split('\n').length, 5, 'a five-line quick start');
});

test('the installed types check under tsc --strict: per-event callbacks, no any, the README quick start', { timeout: 120_000 }, () => {
  // The quick start, as a module of the app (it uses top-level await).
  writeFileSync(join(app, 'quickstart.ts'), quickStart());
  const tsconfig = JSON.parse(readFileSync(join(app, 'tsconfig.json'), 'utf8'));
  tsconfig.files.push('quickstart.ts');
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  const tsc = join(BIN, 'tsc');
  run(tsc, ['-p', 'tsconfig.json'], app); // moduleResolution: Bundler
  run(tsc, ['-p', 'tsconfig.json', '--module', 'node16', '--moduleResolution', 'node16'], app);
});

test('an esbuild app with the installed package connects to the broker and opens a mesh', { timeout: 60_000 }, async () => {
  const venue = `e2e-package-${RUN}`;
  const pages = [];
  for (const kind of ['pos', 'phone']) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e}`));
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
    const q = new URLSearchParams({ venue, broker: BROKER, kind });
    await page.goto(`${BASE}/${OUT_REL}/index.html?${q}${brokerAuthFragment()}`);
    pages.push({ context, page, problems, kind });
  }
  const results = [];
  for (const p of pages) {
    const r = await p.page.evaluate(() => window.result);
    assert.equal(r.error, undefined, `${p.kind}: ${r.error}`);
    assert.equal(r.url, BROKER, 'connected to the test broker');
    assert.match(r.deviceId, /^[0-9a-f-]{36}$/);
    assert.match(r.version, /^\d+\.\d+\.\d+/);
    // In the queue: `pending`, or already `peer_ack` once the other page holds a
    // replica (no ingest here, so never `cloud_ack`).
    assert.ok(['pending', 'peer_ack'].includes(r.status), `the enqueued command is in the queue (status ${r.status})`);
    assert.deepEqual(r.badOpen, { name: 'VenueMeshError', code: 'INVALID_OPTIONS', isError: true });
    assert.equal(r.echo, 'hello', 'MqttClient round trip');
    assert.match(await p.page.textContent('#out'), /connected to ws:\/\//);
    results.push(r);
  }
  // The two apps are one mesh: each lists the other, and both name the POS as hub.
  const [pos, phone] = results;
  const until = Date.now() + 15_000;
  let seen;
  while (Date.now() < until) {
    seen = await Promise.all(pages.map((p) => p.page.evaluate(() => {
      const s = window.mesh.getDetailedStats();
      return { hub: s.hub?.hub ?? null, peers: s.peers.map((x) => x.device) };
    })));
    if (seen[0].hub === pos.deviceId && seen[1].hub === pos.deviceId &&
        seen[0].peers.includes(phone.deviceId) && seen[1].peers.includes(pos.deviceId)) break;
    await sleep(100);
  }
  assert.deepEqual(seen, [{ hub: pos.deviceId, peers: [phone.deviceId] }, { hub: pos.deviceId, peers: [pos.deviceId] }]);
  for (const p of pages) {
    assert.deepEqual(p.problems, [], `${p.kind}: page errors or failed requests`);
    await p.context.close();
  }
});

test('venuemesh/mqtt: the MQTT-only module imports, connects and round-trips a message in Chromium', { timeout: 60_000 }, async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  const wasm = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    if (r.url().endsWith('.wasm')) wasm.push(r.url().split('/').pop());
  });
  const q = new URLSearchParams({ venue: `e2e-package-${RUN}`, broker: BROKER });
  await page.goto(`${BASE}/${OUT_REL}/mqtt.html?${q}${brokerAuthFragment()}`);
  const r = await page.evaluate(() => window.mqttResult);
  assert.equal(r.error, undefined, r.error);
  assert.deepEqual(r, { version: r.version, url: BROKER, echo: 'hello from venuemesh/mqtt', qos: 1, connected: true });
  assert.match(r.version, /^\d+\.\d+\.\d+/);
  assert.equal(wasm.length, 1, `one wasm module loaded: ${wasm}`);
  assert.match(wasm[0], /^venuemesh_mqtt_bg/, 'the MQTT-only module, not the whole library');
  assert.match(await page.textContent('#out'), /venuemesh\/mqtt connected to ws:\/\//);
  assert.deepEqual(problems, []);
  await context.close();
});
