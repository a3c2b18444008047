// A minimal Chromium driver over the DevTools protocol (pipe transport), with
// the few calls tests/bench/mqtt.mjs makes of playwright-core: contexts,
// pages, init scripts, goto, evaluate, page errors.
//
// Why not playwright-core there: Playwright enables the DevTools `Network`
// domain on every page, so Chromium turns every WebSocket frame into a
// `Network.webSocketFrameReceived`/`Sent` event that the renderer builds and
// the browser process forwards to Node. A 10,000-message burst is 10,000+
// frames per page: measured here, that instrumentation cost more CPU than
// either MQTT client (the browser process alone went from ~0.02 s to ~1.2 s
// per burst) and squeezed both clients toward the same figure. Apps run
// without DevTools attached, so the benchmark drives pages through this
// driver (Runtime and Page domains only); VM_BENCH_DRIVER=playwright
// measures the old way.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM_ARGS } from '../e2e/lib.mjs';

// tests/e2e/lib.mjs's flags (machine specific: closed network, no sandbox)
// plus the ones playwright-core adds that matter for pages that are not in
// front: no background throttling of timers and renderers.
const ARGS = ['--headless', ...CHROMIUM_ARGS, '--disable-background-timer-throttling',
  '--disable-backgrounding-occluded-windows', '--disable-renderer-backgrounding',
  '--disable-ipc-flooding-protection', '--disable-dev-shm-usage', '--disable-field-trial-config',
  '--disable-hang-monitor', '--disable-extensions', '--no-default-browser-check', '--mute-audio'];

/** Debian's Chromium, headless, driven over `--remote-debugging-pipe`. */
export async function launchCdp(extraArgs = []) {
  const dir = mkdtempSync(join(tmpdir(), 'vm-bench-cdp-'));
  const proc = spawn('/usr/bin/chromium', [...ARGS, ...extraArgs, `--user-data-dir=${dir}`,
    '--remote-debugging-pipe', 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const [toBrowser, fromBrowser] = [proc.stdio[3], proc.stdio[4]];

  let nextId = 1;
  const pending = new Map();
  const handlers = new Map(); // sessionId -> (method, params) => void
  let closed = false;
  const failAll = (why) => {
    closed = true;
    for (const { reject } of pending.values()) reject(new Error(why));
    pending.clear();
  };
  exited.then(() => failAll(`chromium exited${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
  let buf = '';
  fromBrowser.setEncoding('utf8');
  fromBrowser.on('data', (chunk) => {
    buf += chunk;
    let end;
    while ((end = buf.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buf.slice(0, end));
      buf = buf.slice(end + 1);
      if (msg.id !== undefined) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
        else p?.resolve(msg.result);
      } else {
        handlers.get(msg.sessionId)?.(msg.method, msg.params);
      }
    }
  });
  const send = (method, params = {}, sessionId) => {
    if (closed) return Promise.reject(new Error(`${method}: the browser is gone`));
    const id = nextId++;
    toBrowser.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
  };
  await send('Browser.getVersion'); // the pipe is up

  async function newPage(browserContextId) {
    const { targetId } = await send('Target.createTarget', { url: 'about:blank', browserContextId });
    const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
    const listeners = { pageerror: [], load: [] };
    handlers.set(sessionId, (method, params) => {
      if (method === 'Runtime.exceptionThrown') {
        const d = params.exceptionDetails;
        for (const f of listeners.pageerror) f(new Error(d.exception?.description ?? d.text));
      } else if (method === 'Page.loadEventFired') {
        for (const f of listeners.load.splice(0)) f();
      }
    });
    const s = (method, params) => send(method, params, sessionId);
    await Promise.all([s('Page.enable'), s('Runtime.enable')]);
    return {
      /** Any DevTools method on this page's session (tests/bench/mqtt.mjs profiles with `Profiler.*`). */
      cdp: (method, params) => s(method, params),
      on(event, f) { listeners[event]?.push(f); },
      async addInitScript(fn) { await s('Page.addScriptToEvaluateOnNewDocument', { source: `(${fn})()` }); },
      async goto(url) {
        const loaded = new Promise((resolve) => listeners.load.push(resolve));
        const r = await s('Page.navigate', { url });
        if (r.errorText) throw new Error(`goto ${url}: ${r.errorText}`);
        await loaded;
      },
      /** Like Playwright's: `fn` is sent as source, `arg` as JSON; the result comes back by value. */
      async evaluate(fn, arg) {
        const r = await s('Runtime.evaluate', {
          expression: `(${fn})(${arg === undefined ? '' : JSON.stringify(arg)})`,
          awaitPromise: true, returnByValue: true,
        });
        if (r.exceptionDetails) {
          const d = r.exceptionDetails;
          throw new Error(d.exception?.description ?? d.text);
        }
        return r.result.value;
      },
    };
  }

  return {
    async newContext() {
      const { browserContextId } = await send('Target.createBrowserContext', { disposeOnDetach: true });
      return {
        newPage: () => newPage(browserContextId),
        close: () => send('Target.disposeBrowserContext', { browserContextId }),
      };
    },
    async close() {
      await Promise.race([send('Browser.close').catch(() => {}), exited]);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
