// Shared helpers for the end-to-end tests: Debian's Chromium through
// playwright-core (never a downloaded browser), the static server and the
// broker that scripts/test started, and private brokers a test can kill.
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

export const BASE = process.env.VM_TEST_BASE || 'http://127.0.0.1:18080';
export const BROKER = process.env.VM_TEST_BROKER || 'ws://127.0.0.1:19001';

// Without the background-networking flags Chromium keeps dialling Google's
// hosts, which this machine's closed network refuses.
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns'];

/** Debian's Chromium, headless, with our flags plus `extraArgs`. */
export async function launch(extraArgs = []) {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: [...ARGS, ...extraArgs] });
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
  return `/www/?${q}`;
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

/** A private Mosquitto on loopback that the test may stop and restart. */
export async function startBroker({ port, extra = '' } = {}) {
  port ||= await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'vm-broker-'));
  const conf = join(dir, 'mosquitto.conf');
  const tcp = await freePort();
  // A plain MQTT listener first: Mosquitto 2.0.11 won't start with websockets only.
  writeFileSync(conf, `per_listener_settings false\nlistener ${tcp} 127.0.0.1\nlistener ${port} lo\nprotocol websockets\n` +
    `allow_anonymous true\npersistence false\n${extra}\n`);
  const proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
  await waitPort(port);
  return {
    port, url: `ws://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** Listening sockets of our processes that are not on loopback. */
export function nonLoopbackListeners() {
  const out = execFileSync('ss', ['-ltnupH'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /mosquitto|node|chrom/.test(l))
    .map((l) => l.trim().split(/\s+/)[4])
    .filter((addr) => addr && !/^(127\.[\d.]+|\[::1\]|\[::ffff:127\.[\d.]+\]|localhost):/.test(addr));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
