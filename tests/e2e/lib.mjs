// Shared helpers for the end-to-end tests: Debian's Chromium through
// playwright-core or Debian's WebKitGTK through WebDriver (./webkit.mjs; never
// a downloaded browser), the static server and the broker that scripts/test
// started, private brokers a test can kill, and the reference ingest
// (tests/ingest/ingest.py) as the cloud end of the upload.
import assert from 'node:assert/strict';
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';
import { launchWebKit } from './webkit.mjs';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { demoCa } from '../ca/trust.mjs';

export const BASE = process.env.VM_TEST_BASE || 'http://127.0.0.1:18080';
export const BROKER = process.env.VM_TEST_BROKER || 'ws://127.0.0.1:19001';

// Without the background-networking flags Chromium keeps dialling Google's
// hosts, which this machine's closed network refuses. Plain (not mDNS) host
// candidates let the ICE check below read the addresses a data channel uses.
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns'];

// --- the ICE check -------------------------------------------------------------------
// scripts/test and scripts/bench run everything in a network namespace of their own
// and export its networks as VM_TEST_NETS (CIDRs). Every data channel a page opens
// must run between addresses of those networks: tests/e2e/ice-probe.js reports each
// connection's selected candidate pair, a test file whose browser saw one outside
// fails (exit code 1 when it closes the browser), and scripts/test re-checks the whole run's log (VM_ICE_LOG).
// Without VM_TEST_NETS only loopback counts, so a WebRTC test run by hand on the
// real network fails instead of quietly using the machine's address.
const ICE_PROBE = readFileSync(fileURLToPath(new URL('./ice-probe.js', import.meta.url)), 'utf8');
const TEST_NETS = new net.BlockList();
for (const cidr of (process.env.VM_TEST_NETS || '127.0.0.0/8,::1/128').split(',').filter(Boolean)) {
  const [addr, bits] = cidr.split('/');
  const type = net.isIPv6(addr) ? 'ipv6' : 'ipv4';
  TEST_NETS.addSubnet(addr, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
}

/** True when `address` (of an ICE candidate) lies in one of the run's own networks. */
export function inTestNetwork(address) {
  const type = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : null;
  return type !== null && TEST_NETS.check(address, type);
}

/**
 * Why each of `pairs` (selected candidate pairs) is not allowed: a list of
 * problems, empty when every end lies in the run's networks. Chromium redacts
 * the address of a remote **peer-reflexive** candidate in `getStats()` (the
 * webrtc-stats spec: the other side's connectivity check came before its
 * signalled candidate), so such an end reads `address: ""`. It passes only when
 * the other page reported the same port as its own local end, inside the test
 * network: that page is the remote, and its address was checked.
 */
export function icePairsProblems(pairs) {
  const localPorts = new Set(pairs.map((p) => p.local).filter((c) => c && inTestNetwork(c.address)).map((c) => `${c.protocol}:${c.port}`));
  const ok = (c) => c && (inTestNetwork(c.address) || (c.address === '' && c.type === 'prflx' && localPorts.has(`${c.protocol}:${c.port}`)));
  return pairs.filter((p) => !ok(p.local) || !ok(p.remote)).map((p) =>
    `a data channel of ${p.page} uses ${p.local?.address} ↔ ${p.remote?.address || `(redacted ${p.remote?.type} :${p.remote?.port})`}, ` +
    `outside the test network (${process.env.VM_TEST_NETS || 'loopback only: VM_TEST_NETS is unset; run it through scripts/test'})`);
}

/**
 * The engine this run of a test file is for: `VM_E2E_BROWSER=webkit` (scripts/test's
 * e2e-webkit part runs the files marked `// e2e engines: chromium webkit` again
 * with it), else Chromium.
 */
export const ENGINE = process.env.VM_E2E_BROWSER === 'webkit' ? 'webkit' : 'chromium';

/** The run's browser (ENGINE): `launchChromium(extraArgs)` or `launchWebKit()`. */
export async function launch(extraArgs = []) {
  return ENGINE === 'webkit' ? launchWebKit() : launchChromium(extraArgs);
}

export { launchWebKit };

/** Debian's Chromium, headless, with our flags plus `extraArgs`; every context it makes carries the ICE probe. */
export async function launchChromium(extraArgs = []) {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
  const pairs = []; // checked when the browser closes: a redacted end is matched against every page's reports
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    await context.exposeBinding('__vmIceReport', (_source, pair) => {
      if (process.env.VM_ICE_LOG) appendFileSync(process.env.VM_ICE_LOG, `${JSON.stringify(pair)}\n`);
      pairs.push(pair);
    });
    await context.addInitScript(ICE_PROBE);
    return context;
  };
  // Not a throw: test files close the browser first in their `after` hooks and must
  // still stop their brokers. A non-zero exit code fails the file all the same.
  browser.engine = 'chromium';
  const close = browser.close.bind(browser);
  browser.close = async (...args) => {
    await close(...args);
    const problems = icePairsProblems(pairs);
    for (const problem of problems) console.error(`ICE check: ${problem}`);
    if (problems.length) {
      console.error(`ICE check: ${problems.length} data channel(s) left the test network`);
      process.exitCode = 1;
    }
  };
  return browser;
}

/**
 * The selected candidate pairs of every RTCPeerConnection the pages opened so
 * far; fails unless there is at least one and all lie in the run's networks.
 * Returns the addresses used, e.g. ["10.213.0.1"].
 */
export async function assertIceInTestNetwork(pages) {
  const pairs = (await Promise.all(pages.map(async (p) =>
    (await p.evaluate(() => window.__vmSelectedPairs?.() ?? [])).map((pair) => ({ ...pair, page: p.url() }))))).flat();
  assert.ok(pairs.length > 0, 'the pages opened data channels');
  assert.deepEqual(icePairsProblems(pairs), [], 'every data channel stays inside the test network');
  return [...new Set(pairs.flatMap((p) => [p.local.address, p.remote.address]))].sort();
}

/** A page of `path` in a fresh context (its own storage = its own device). */
export async function openPage(browser, path, { viewport } = {}) {
  const context = await browser.newContext(viewport ? { viewport } : {});
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (process.env.VM_E2E_VERBOSE) console.log(`[page] ${m.text()}`); });
  await page.goto(`${BASE}${path}`);
  return { context, page, errors };
}

export function demoUrl(params = {}) {
  const q = new URLSearchParams({ broker: BROKER, ...params });
  return `/www/?${q}${q.get('broker') === BROKER ? brokerAuthFragment() : ''}`;
}

// --- broker accounts ---------------------------------------------------------------
// The shipped broker configs admit no anonymous client: scripts/test gives the
// shared test broker (BROKER) a harness account and exports it as
// VM_TEST_BROKER_USER / VM_TEST_BROKER_PASS. Private brokers (startBroker) stay
// anonymous unless a test asks for accounts (startLockedBroker).

/** `{ username, password }` for BROKER (empty when the run has no account, e.g. by hand against an open broker). */
export const BROKER_AUTH = process.env.VM_TEST_BROKER_USER
  ? { username: process.env.VM_TEST_BROKER_USER, password: process.env.VM_TEST_BROKER_PASS ?? '' } : {};

/** An account as a URL fragment for a page (`#broker=…&user=…&pass=…`, for that broker only; `broker` null: for any; '' without an account); pages read it with their `brokerAuth`. */
export function brokerAuthFragment(auth = BROKER_AUTH, broker = BROKER) {
  if (!auth.username) return '';
  return `#${new URLSearchParams({ ...(broker ? { broker } : {}), user: auth.username, pass: auth.password ?? '' })}`;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

async function waitPort(port, ms = 10_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

/**
 * A private Mosquitto on loopback that the test may stop and restart:
 * websockets on `port` (`url`), plain MQTT on 127.0.0.1:`tcp` (for the ingest).
 * Restart it on the same ports with `startBroker({ port, tcp })`.
 */
export async function startBroker({ port, tcp, extra = '' } = {}) {
  if (BROKER_IMPL === 'aedes') return startAedes({ port, tcp });
  port ||= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'vm-broker-'));
  const conf = join(dir, 'mosquitto.conf');
  tcp ||= await freePort();
  // A plain MQTT listener first: Mosquitto 2.0.11 won't start with websockets only.
  writeFileSync(conf, `per_listener_settings false\nlistener ${tcp} 127.0.0.1\nlistener ${port} lo\nprotocol websockets\n` +
    `allow_anonymous true\npersistence false\n${extra}\n`);
  const proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
  await waitPort(port);
  return {
    port, tcp, url: `ws://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

// --- the second broker implementation ----------------------------------------------
/**
 * Which broker startBroker() starts: `mosquitto` (default) or `aedes`
 * (VM_BROKER_IMPL=aedes: scripts/test's e2e-aedes part). Tests that rely on
 * what only one of them does (Mosquitto's persistence across a restart,
 * config `extra` lines) say so by checking it.
 */
export const BROKER_IMPL = process.env.VM_BROKER_IMPL === 'aedes' ? 'aedes' : 'mosquitto';
const AEDES = fileURLToPath(new URL('../brokers/aedes.mjs', import.meta.url));

/**
 * A private Aedes (tests/brokers/aedes.mjs) on loopback, open to anyone like
 * startBroker's Mosquitto (or with `accounts`): websockets on `port`, plain
 * MQTT on 127.0.0.1:`tcp`. Same handle as startBroker.
 */
export async function startAedes({ port, tcp, accounts } = {}) {
  port ||= await freePort();
  tcp ||= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'vm-aedes-'));
  const args = [AEDES, '--ws', String(port), '--tcp', String(tcp)];
  if (accounts) {
    writeFileSync(join(dir, 'accounts.json'), JSON.stringify(accounts), { mode: 0o600 });
    args.push('--accounts', join(dir, 'accounts.json'));
  }
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  await waitPort(port).catch((e) => { throw new Error(`aedes: ${e.message}: ${stderr}`); });
  await waitPort(tcp);
  return {
    port, tcp, url: `ws://127.0.0.1:${port}`, impl: 'aedes',
    get stderr() { return stderr; },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A private Mosquitto with a shipped, locked-down config (`config/mosquitto-test.conf`
 * by default: no anonymous clients, config/mosquitto.acl, message_size_limit) on
 * ports of its own, with exactly these `accounts` ({ username: password }) in a
 * password file made with mosquitto_passwd. Same handle as startBroker; restart
 * with `startLockedBroker({ port, tcp, accounts })`.
 */
export async function startLockedBroker({ accounts, port, tcp, conf = 'config/mosquitto-test.conf', extra = '', vars = {}, bridgeAddress } = {}) {
  port ||= await freePort();
  tcp ||= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'vm-locked-broker-'));
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, '');
  for (const [user, pass] of Object.entries(accounts)) execFileSync('mosquitto_passwd', ['-b', passwd, user, pass]);

  // The ACL file too goes beside it: Mosquitto's user may not reach the checkout.
  const text = shippedBrokerConfig(conf, { port, tcp, passwd, vars, bridgeAddress, aclDir: dir }) + `\n${extra}\n`;
  const file = join(dir, 'mosquitto.conf');
  writeFileSync(file, text);
  // Mosquitto started as root drops to its own user before it reads the password and ACL files.
  if (process.getuid?.() === 0) spawnSync('chown', ['-R', 'mosquitto', dir]);
  const log = join(dir, 'mosquitto.log');
  const proc = spawn('/usr/sbin/mosquitto', ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  await waitPort(port).catch((e) => { throw new Error(`${e.message}: ${stderr}`); });
  return {
    port, tcp, url: `ws://127.0.0.1:${port}`, conf: text, log, pid: proc.pid,
    get stderr() { return stderr; },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A shipped config (path from the repository root) moved to other ports and
 * another password file, everything else as shipped: the ACL file by absolute path
 * (or copied into `aclDir`),
 * `@NAME@` placeholders filled from `vars`, a bridge's `address` from `bridgeAddress`.
 */
export function shippedBrokerConfig(conf, { port, tcp, passwd, vars = {}, bridgeAddress, aclDir }) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  let text = readFileSync(join(root, conf), 'utf8');
  for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`@${k}@`, v);
  const lines = text.split('\n');
  let tcpDone = false, wsDone = false;
  return lines.map((l) => {
    if (/^listener \d+ 127\.0\.0\.1$/.test(l) && !tcpDone) { tcpDone = true; return `listener ${tcp} 127.0.0.1`; }
    if (/^listener \d+ lo$/.test(l) && !wsDone) { wsDone = true; return `listener ${port} lo`; }
    if (l.startsWith('password_file ')) return `password_file ${passwd}`;
    if (l.startsWith('acl_file ')) {
      const acl = join(root, l.slice('acl_file '.length).trim());
      if (!aclDir) return `acl_file ${acl}`;
      copyFileSync(acl, join(aclDir, basename(acl)));
      return `acl_file ${join(aclDir, basename(acl))}`;
    }
    if (l.startsWith('address ') && bridgeAddress) return `address ${bridgeAddress}`;
    return l;
  }).join('\n');
}

/** Listening sockets of our processes that are not on loopback. */
export function nonLoopbackListeners() {
  const out = execFileSync('ss', ['-ltnupH'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /mosquitto|node|chrom|WebKit|MiniBrowser/.test(l))
    .map((l) => l.trim().split(/\s+/)[4])
    .filter((addr) => addr && !/^(127\.[\d.]+|\[::1\]|\[::ffff:127\.[\d.]+\]|localhost):/.test(addr));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `f` (sync or async) every `every` ms until it is truthy; fails the
 * test after `ms` with "timed out waiting until {what}" and, if given,
 * `detail()` (e.g. a service's stderr).
 */
export async function waitFor(f, ms, what, { every = 100, detail } = {}) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await f()) return;
    await sleep(every);
  }
  assert.fail(`timed out waiting until ${what}${detail ? `\n${detail()}` : ''}`);
}

// --- the reference ingest ------------------------------------------------------------
const INGEST_DIR = fileURLToPath(new URL('../ingest/', import.meta.url));
// Debian's interpreter is the one the ingest promises to run on.
export const PYTHON = process.env.VM_PYTHON || (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

/**
 * The reference ingest for `venue` (the cloud of the venue's test CA, `trust`) against the
 * plain MQTT listener on 127.0.0.1:`tcp`, its SQLite in a fresh temporary
 * directory; resolves once it is subscribed to `vm/{venue}/up`. `pause()` /
 * `resume()` (SIGSTOP / SIGCONT) play a cloud outage; `query()` is
 * tests/ingest/query.py's JSON (`{count, duplicates_absorbed, ids}`, with
 * `rows` when asked); `stop()` ends it and removes the directory. `auth`
 * ({ username, password }) logs it in (through --password-file).
 */
export async function startIngest({ venue, tcp, auth, timeoutMs = 10_000, trust = ingestTrust(venue) }) {
  const dir = mkdtempSync(join(tmpdir(), 'vm-ingest-'));
  const db = join(dir, 'ingest.sqlite');
  const ready = join(dir, 'ready.json');
  // The cloud's credentials (issue #15): by default from the venue's test CA, the one
  // the pages are certified by (venueCa).
  const credentials = ['--trust', join(dir, 'trust.json')];
  writeFileSync(join(dir, 'trust.json'), JSON.stringify(trust), { mode: 0o600 });
  const proc = spawn(PYTHON, [join(INGEST_DIR, 'ingest.py'), '--broker', `127.0.0.1:${tcp}`, '--venue', venue,
    ...credentials, '--db', db, '--ready-file', ready, ...ingestLogin(dir, auth)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; if (process.env.VM_E2E_VERBOSE) process.stderr.write(d); });
  const exited = new Promise((r) => proc.once('exit', r));
  const ingest = {
    proc, db,
    /** What it wrote on stderr (subscriptions, dropped messages, errors). */
    get stderr() { return stderr; },
    /** How often it has (re)subscribed. */
    subscriptions() {
      try { return JSON.parse(readFileSync(ready, 'utf8')).subscribed; } catch { return 0; }
    },
    query({ rows = false } = {}) {
      const r = spawnSync(PYTHON, [join(INGEST_DIR, 'query.py'), '--db', db, ...(rows ? ['--rows'] : [])], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`query.py failed: ${r.stderr}`);
      return JSON.parse(r.stdout);
    },
    pause() { proc.kill('SIGSTOP'); },
    resume() { proc.kill('SIGCONT'); },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        proc.kill('SIGCONT'); // a paused ingest acts on the TERM once continued
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const until = Date.now() + timeoutMs;
  while (ingest.subscriptions() < 1) {
    if (proc.exitCode !== null || proc.signalCode !== null || Date.now() > until) {
      await ingest.stop();
      throw new Error(`the ingest did not subscribe to vm/${venue}/up within ${timeoutMs} ms\n${stderr}`);
    }
    await sleep(50);
  }
  return ingest;
}

/** The ingest's arguments for a broker account ({ username, password }): the password in a file of `dir`. */
function ingestLogin(dir, auth) {
  if (!auth) return [];
  const file = join(dir, 'broker.pass');
  writeFileSync(file, `${auth.password}\n`, { mode: 0o600 });
  return ['--username', auth.username, '--password-file', file];
}

/**
 * A fresh device (browser context) with a helper page that exposes
 * `window.t` (its `ready` promise settles when the page is set up); the
 * context closes when test `t` ends.
 */
export async function helperDevice(browser, path, t) {
  const d = await openPage(browser, path);
  t.after(() => d.context.close().catch(() => {}));
  await d.page.evaluate(() => window.t.ready);
  return d;
}

/** Calls `window.t[method](...args)` in a helper page. */
export const callPage = (d, method, ...args) => d.page.evaluate(([m, a]) => window.t[m](...a), [method, args]);

/**
 * A mesh member: a fresh context (its own IndexedDB = its own device) on
 * pages/mesh.html with `VenueMesh.open` options from the query (venue,
 * broker, kind, hb = 300 by default, and `extra`: drain, batch, upload, …).
 * `page: 'routing'` opens pages/routing.html instead (records `message`
 * events: room, db, webrtc=0); `context` puts it in an existing context (a
 * second tab of that browser profile); `ca` certifies it with that CA
 * instead of the venue's (pages/pair.mjs). Throws if the page could not open
 * the mesh. `auth` ({ username, password }) logs it in to a locked broker
 * (BROKER's harness account is added on its own).
 */
export async function meshMember(browser, brokerUrl, venue, kind, extra = {}, { page: file = 'mesh', context, auth, ca } = {}) {
  context ??= await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  // `ca`: certified by that CA (e.g. one of an attacker's making) instead of the venue's.
  const q = new URLSearchParams({ venue, broker: brokerUrl, kind, hb: '300', ...extra, ...(ca ? { pair: 'manual' } : {}) });
  // An explicit account is for every broker of the page's list (a bridged venue's local and cloud).
  const fragment = auth ? brokerAuthFragment(auth, null) : brokerUrl === BROKER ? brokerAuthFragment() : '';
  await page.goto(`${BASE}/tests/e2e/pages/${file}.html?${q}${fragment}`);
  if (ca) await pairIfAsked(page, venue, { ca });
  await page.waitForFunction(() => window.mesh || window.openError, null, { timeout: 10_000 });
  const failed = await page.evaluate(() => window.openError ?? null);
  if (failed) throw new Error(`mesh page failed to open: ${failed}`);
  return { context, page, kind, errors, id: await page.evaluate(() => window.mesh.deviceId) };
}

/**
 * For a test file: the run's browser (`launch()`) and a private broker,
 * started before its tests and stopped after them; read them as
 * `env.browser` / `env.broker` inside the tests.
 */
export function browserAndBroker() {
  const env = {};
  before(async () => { [env.browser, env.broker] = await Promise.all([launch(), startBroker()]); });
  after(async () => {
    await env.browser?.close();
    await env.broker?.stop();
  });
  return env;
}

/** A private broker and the reference ingest of `venue` (the cloud of its test CA, `venueCa`) for test `t`, stopped when it ends. */
export async function privateCloud(t, venue) {
  const broker = await startBroker();
  t.after(() => broker.stop());
  const ingest = await startIngest({ venue, tcp: broker.tcp });
  t.after(() => ingest.stop());
  return { broker, ingest };
}

// A routing page's (pages/routing.mjs) view, for a member from meshMember(…, { page: 'routing' }).
export const meshStats = (m) => m.page.evaluate(() => window.mesh.getDetailedStats());
/** Enqueues `n` sales `{tag, i, ...extra}` on member `m`, one after the other; their ids. */
export const enqueueSales = (m, n, tag, extra = {}) => m.page.evaluate(async ([n, tag, extra]) => {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await window.mesh.enqueue('sale', JSON.stringify({ tag, i, ...extra })));
  return ids;
}, [n, tag, extra]);
/** The queue status of each of `ids` on member `m`. */
export const commandStatuses = (m, ids) => m.page.evaluate((ids) => ids.map((id) => window.mesh.queue.status(id)), ids);
/** `mesh.send(to, text)` for each text; the message ids. */
export const sendTexts = (m, to, texts) => m.page.evaluate(([to, texts]) => texts.map((t) => window.mesh.send(to, t)), [to, texts]);
/** The `message` events whose text starts with `prefix`. */
export const receivedWith = (m, prefix) => m.page.evaluate((p) => window.received.filter((r) => r.text?.startsWith(p)), prefix);

/**
 * `got` (["from:id", …] as one app received them) holds every message of `sent`
 * ([[from, id], …]) not sent by `me`, each exactly once.
 */
export function assertExactlyOnce(label, got, sent, me) {
  const want = sent.filter(([from]) => from !== me).map(([from, id]) => `${from}:${id}`).sort();
  const counts = new Map();
  for (const k of got) counts.set(k, (counts.get(k) ?? 0) + 1);
  const dups = [...counts].filter(([, c]) => c > 1);
  assert.deepEqual(dups, [], `${label}: duplicates`);
  assert.deepEqual([...counts.keys()].sort(), want, `${label}: every message once`);
}

/** Each sender's messages reached the app in the order it sent them (ids grow), `late` ones aside. */
export function assertSenderOrder(label, records) {
  const last = new Map();
  for (const r of records) {
    if (r.late) continue;
    assert.ok(r.id > (last.get(r.from) ?? -1), `${label}: ${r.from}'s message ${r.id} after ${last.get(r.from)}`);
    last.set(r.from, r.id);
  }
}

/**
 * A TCP proxy on loopback in front of `targetPort` (e.g. a broker's WebSocket
 * listener), for link faults no browser API can make: `blackhole()` keeps every
 * connection open but forwards nothing either way from then on (a dead Wi-Fi
 * path, a NAT that forgot the flow), `restore()` forwards again, and
 * `reset()` closes every connection at once. `url` is the ws:// address to
 * give a page instead of the broker's.
 */
export async function startLinkProxy(targetPort) {
  const conns = new Set();
  let mode = 'pass';
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const conn = { client, upstream };
    conns.add(conn);
    const forward = (to) => (data) => { if (mode === 'pass') to.write(data); };
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
    const end = () => { conns.delete(conn); client.destroy(); upstream.destroy(); };
    client.on('close', end); upstream.on('close', end);
    client.on('error', end); upstream.on('error', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    port, url: `ws://127.0.0.1:${port}`,
    blackhole() { mode = 'blackhole'; },
    restore() { mode = 'pass'; },
    reset() { for (const c of conns) { c.client.destroy(); c.upstream.destroy(); } conns.clear(); },
    /** Connections currently open through the proxy. */
    get connections() { return conns.size; },
    async stop() { this.reset(); await new Promise((r) => server.close(r)); },
  };
}

// --- trust provisioning (issue #15) ---------------------------------------------------
// Every page is its own device with its own Ed25519 key (generated in the page) and a
// certificate from the venue's test CA (tests/ca/trust.mjs), one CA per venue and test
// process, created on first use. pages/pair.mjs asks for credentials; `pairIfAsked`
// answers as the venue's server would (cloud admission).
const VENUE_CAS = new Map();

/**
 * The test CA of `venue` (root key, cloud identity, content key): `demoCa`, the same one
 * the static server's `POST /ca/issue` uses (scripts/serve.mjs), so demo pages that pair
 * themselves and pages provisioned here trust each other.
 */
export function venueCa(venue) {
  if (!VENUE_CAS.has(venue)) VENUE_CAS.set(venue, demoCa(venue));
  return VENUE_CAS.get(venue);
}

/**
 * If the page (pages/pair.mjs) is waiting for credentials, issues them from `venueCa(venue)`
 * (or `ca`) for the device and key it asked with (`role`: 'device' | 'admin'); returns the
 * request (`{ venue, device, publicKey }`) or null when the page had its own already.
 */
export async function pairIfAsked(page, venue, { ca = venueCa(venue), role = 'device', timeout = 10_000 } = {}) {
  await page.waitForFunction(() => window.mesh || window.openError || window.pairingRequest, null, { timeout });
  const request = await page.evaluate(() => (window.mesh || window.openError ? null : window.pairingRequest));
  if (!request) return null;
  const bundle = ca.bundle(request.device, Buffer.from(request.publicKey, 'base64'), { role });
  await page.evaluate((b) => window.provideCredentials(b), JSON.stringify(bundle));
  return request;
}

/** The ingest's trust file content (`ingest.py --trust`) for `venue`'s test CA. */
export const ingestTrust = (venue) => venueCa(venue).ingestTrust();
