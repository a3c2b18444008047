// WebKit (Safari's engine) for the end-to-end tests and benchmarks: Debian's
// WebKitGTK MiniBrowser driven over plain W3C WebDriver (HTTP + JSON) by
// WebKitWebDriver, on the Xvfb display scripts/lib.sh's `start_webkit`
// started inside the test namespace. Never a downloaded browser (Playwright's
// WebKit is one).
//
// It offers the part of playwright-core's API the tests use, so a test reads
// the same in both engines: `browser.newContext({ viewport })`,
// `context.newPage()`, `context.close()`, `page.goto`, `page.evaluate(fn, arg)`,
// `page.waitForFunction`, `page.reload`, `page.screenshot`, `page.textContent`,
// `page.click`/`tap`, `page.fill`, `page.press`, `page.on('pageerror')`, …
//
// How it maps: one WebDriver session is one browser context (its own
// MiniBrowser process and storage = one device). WebKitWebDriver serves one
// session at a time, so lib.sh starts a few servers (VM_WEBKIT_DRIVERS) and
// each context takes a free one. A second page of a context is a second
// window of its session (same storage: a second tab of the device); commands
// of one session are serialised, and switch to the page's window first.
//
// Limits (none matter to the tests that run here): uncaught errors are
// collected by listeners installed after each load, so an error thrown while
// the page loads is not seen (the test pages report `openError` instead);
// there is no `console` event and no CDP.

/** The WebDriver servers lib.sh started (`start_webkit`), in order. */
export const DRIVERS = (process.env.VM_WEBKIT_DRIVERS || '').split(',').filter(Boolean);
// The WebKitGTK MiniBrowser lib.sh found; without it WebKitWebDriver starts its built-in default.
const BINARY = process.env.VM_WEBKIT_BROWSER || '';
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf'; // the W3C web element key
const KEYS = { Enter: '\uE007', Tab: '\uE004', Escape: '\uE00C', Backspace: '\uE003' };

const busy = new Set(); // drivers with a session of this process

async function wd(base, method, path, body) {
  if (method === 'POST' && body === undefined) body = {}; // WebKitWebDriver wants a JSON body on every POST
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { throw new Error(`WebDriver ${method} ${path}: HTTP ${res.status}: ${text.slice(0, 200)}`); }
  if (!res.ok || json.value?.error) {
    const e = new Error(`WebDriver ${method} ${path}: ${json.value?.error ?? res.status}: ${json.value?.message ?? text.slice(0, 200)}`);
    e.webdriver = json.value?.error;
    throw e;
  }
  return json.value;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The page side of `evaluate`: runs `src` (a function's source) with `arg`,
 * awaits it, and answers `{ ok: value }` or `{ error }`, plus the uncaught
 * errors collected since the last call (`pageerror` events).
 */
const EVAL_SCRIPT = `
const [src, arg, done] = arguments;
const errors = (window.__vmErrors || []).splice(0);
Promise.resolve().then(() => (0, eval)('(' + src + ')')(arg)).then(
  (value) => done({ ok: value === undefined ? null : value, undef: value === undefined, errors }),
  (e) => done({ error: String(e && e.stack ? e.message + '\\n' + e.stack : e), errors }));`;

/** Installed after each load: collects uncaught errors and unhandled rejections. */
const ERROR_HOOK = `
if (!window.__vmErrors) {
  window.__vmErrors = [];
  addEventListener('error', (e) => window.__vmErrors.push(String(e.error?.message ?? e.message)));
  addEventListener('unhandledrejection', (e) => window.__vmErrors.push(String(e.reason?.message ?? e.reason)));
}`;

/** Serialises the commands of one session (each may switch windows first). */
function serial() {
  let tail = Promise.resolve();
  return (f) => {
    const run = tail.then(f, f);
    tail = run.catch(() => {});
    return run;
  };
}

/**
 * Starts nothing: WebKit runs in the WebDriver servers lib.sh started. The
 * returned object stands for "the WebKit browser" as playwright's does for
 * Chromium; `close()` ends every session it opened.
 */
export async function launchWebKit() {
  if (DRIVERS.length === 0) {
    throw new Error('no WebKit: VM_WEBKIT_DRIVERS is unset (scripts/test and scripts/bench start Xvfb and WebKitWebDriver; run through them)');
  }
  const contexts = new Set();
  return {
    engine: 'webkit',
    async newContext(options = {}) {
      const ctx = await newContext(options);
      contexts.add(ctx);
      ctx.onClose = () => contexts.delete(ctx);
      return ctx;
    },
    async close() {
      await Promise.all([...contexts].map((c) => c.close().catch(() => {})));
    },
  };
}

async function newContext({ viewport } = {}) {
  const base = DRIVERS.find((d) => !busy.has(d));
  if (!base) throw new Error(`all ${DRIVERS.length} WebKit drivers are in use (one browser context each); scripts/lib.sh start_webkit starts more`);
  busy.add(base);
  let session;
  try {
    session = await wd(base, 'POST', '/session', {
      capabilities: {
        alwaysMatch: {
          browserName: 'MiniBrowser',
          ...(BINARY ? { 'webkitgtk:browserOptions': { binary: BINARY, args: ['--automation'] } } : {}),
          // Long evaluate calls (a burst of 10,000 enqueues) are the tests' own business.
          timeouts: { script: 15 * 60_000, pageLoad: 60_000, implicit: 0 },
        },
      },
    });
  } catch (e) {
    busy.delete(base);
    throw e;
  }
  const id = session.sessionId;
  const call = (method, path, body) => wd(base, method, `/session/${id}${path}`, body);
  const run = serial();
  let current = await call('GET', '/window');
  const pages = [];
  let closed = false;
  const context = {
    capabilities: session.capabilities,
    onClose: null,
    async newPage() {
      const handle = pages.length === 0 ? current : await run(async () => (await call('POST', '/window/new', { type: 'window' })).handle);
      const page = makePage({ call, run, handle, viewport, switchTo });
      pages.push(page);
      if (viewport) await page.setViewportSize(viewport);
      return page;
    },
    async close() {
      if (closed) return;
      closed = true;
      // Last uncaught errors first, then the whole MiniBrowser goes.
      for (const p of pages) await p.collectErrors().catch(() => {});
      await call('DELETE', '').catch(() => {});
      busy.delete(base);
      context.onClose?.();
    },
  };
  async function switchTo(handle) {
    if (current !== handle) {
      await call('POST', '/window', { handle });
      current = handle;
    }
  }
  return context;
}

function makePage({ call, run, handle, viewport, switchTo }) {
  const listeners = { pageerror: [] };
  let size = viewport ?? null;
  let closed = false;
  // page.url() answers from Node, synchronously like Playwright's: the last URL
  // this page loaded, read back after every navigation (reloads, redirects).
  let url = '';
  /** Runs `f` with this page's window current, after earlier commands of the session. */
  const on = (f) => run(async () => {
    if (closed) throw new Error('the page is closed');
    await switchTo(handle);
    return f();
  });
  const dispatchErrors = (errors) => {
    for (const msg of errors ?? []) for (const f of listeners.pageerror) f(new Error(msg));
  };
  const evaluateNow = async (fn, arg) => {
    const src = typeof fn === 'function' ? fn.toString() : `() => (${fn})`;
    const r = await call('POST', '/execute/async', { script: EVAL_SCRIPT, args: [src, arg === undefined ? null : arg] });
    dispatchErrors(r?.errors);
    if (r && 'error' in r) throw new Error(`page.evaluate: ${r.error}`);
    return r?.undef ? undefined : r?.ok;
  };
  const hookErrors = () => call('POST', '/execute/sync', { script: ERROR_HOOK, args: [] });
  /** Retries through a navigation (the old document is gone, the new one not ready yet). */
  const settled = async (f, ms = 15_000) => {
    const until = Date.now() + ms;
    for (;;) {
      try { return await f(); } catch (e) {
        if (Date.now() > until) throw e;
        await sleep(50);
      }
    }
  };
  /** A new document finished loading: hook its errors, note its URL. */
  const loaded = async () => {
    await hookErrors();
    url = await call('GET', '/url');
  };
  const afterLoad = () => settled(async () => {
    const ready = await call('POST', '/execute/sync', { script: 'return document.readyState', args: [] });
    if (ready !== 'complete') throw new Error(`document ${ready}`);
    await loaded();
  });
  const elementOf = async (selector) => {
    const el = await call('POST', '/element', { using: 'css selector', value: selector });
    if (!el?.[ELEMENT]) throw new Error(`WebDriver find element ${selector}: no element reference in ${JSON.stringify(el)}`);
    return el[ELEMENT];
  };

  const page = {
    engine: 'webkit',
    on(event, f) { (listeners[event] ||= []).push(f); },
    async goto(url) {
      await on(async () => { await call('POST', '/url', { url }); await afterLoad(); });
    },
    async reload() {
      await on(async () => { await call('POST', '/refresh'); await afterLoad(); });
    },
    url: () => url,
    /** Like Playwright's: `fn`'s source runs in the page with `arg` (JSON); the result comes back as JSON. */
    evaluate: (fn, arg) => on(() => evaluateNow(fn, arg)),
    async waitForFunction(fn, arg, { timeout = 30_000, polling = 100 } = {}) {
      const until = Date.now() + timeout;
      for (;;) {
        const v = await on(() => evaluateNow(fn, arg)).catch((e) => {
          if (/page\.evaluate/.test(e.message)) throw e; // the function itself failed
          return undefined; // between documents
        });
        if (v) return v;
        if (Date.now() > until) throw new Error(`page.waitForFunction: timeout ${timeout} ms exceeded`);
        await sleep(polling);
      }
    },
    /**
     * `waitForEvent('load')`: resolves once the document present now has
     * been replaced by a new one that finished loading (the page reloads
     * itself). Marks the current document first, in order with later calls.
     */
    async waitForEvent(event, { timeout = 60_000 } = {}) {
      if (event !== 'load') throw new Error(`webkit.mjs: waitForEvent('${event}') is not supported`);
      const token = `${Date.now()}-${Math.random()}`;
      const marked = on(() => evaluateNow((t) => { window.__vmDoc = t; }, token));
      await marked;
      const until = Date.now() + timeout;
      for (;;) {
        const same = await on(async () => {
          const ready = await call('POST', '/execute/sync', { script: 'return [window.__vmDoc, document.readyState]', args: [] });
          if (ready[0] === token || ready[1] !== 'complete') return true;
          await loaded();
          return false;
        }).catch(() => true);
        if (!same) return;
        if (Date.now() > until) throw new Error(`page.waitForEvent('load'): timeout ${timeout} ms exceeded`);
        await sleep(50);
      }
    },
    waitForTimeout: (ms) => sleep(ms),
    async waitForSelector(selector, { timeout = 30_000, state = 'visible' } = {}) {
      try {
        await page.waitForFunction(([sel, state]) => {
          const e = document.querySelector(sel);
          if (state === 'attached') return !!e;
          return !!e && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
        }, [selector, state], { timeout });
      } catch {
        throw new Error(`page.waitForSelector: timeout ${timeout} ms exceeded waiting for ${selector}`);
      }
    },
    async waitForURL(re, { timeout = 30_000 } = {}) {
      await page.waitForFunction((src) => new RegExp(src).test(location.href) && document.readyState === 'complete', re.source, { timeout });
      await on(loaded);
    },
    textContent: (selector) => page.evaluate((sel) => document.querySelector(sel)?.textContent ?? null, selector),
    innerHTML: (selector) => page.evaluate((sel) => document.querySelector(sel)?.innerHTML ?? null, selector),
    getAttribute: (selector, name) => page.evaluate(([sel, n]) => document.querySelector(sel)?.getAttribute(n) ?? null, [selector, name]),
    /** Like Playwright's `$`: truthy (a description) when the selector matches, else null. */
    $: (selector) => page.evaluate((sel) => (document.querySelector(sel) ? { selector: sel } : null), selector),
    /** Like Playwright's `$$`: one entry per match (only the count is meaningful). */
    $$: (selector) => page.evaluate((sel) => [...document.querySelectorAll(sel)].map((_, i) => ({ selector: sel, index: i })), selector),
    $$eval: (selector, fn, arg) => page.evaluate(([sel, src, a]) => (0, eval)(`(${src})`)([...document.querySelectorAll(sel)], a),
      [selector, fn.toString(), arg === undefined ? null : arg]),
    /** A real click through WebKit's automation (pointer events, focus), not a synthetic one. */
    click: (selector) => on(async () => call('POST', `/element/${await elementOf(selector)}/click`, {})),
    /** No touch screen under Xvfb: a tap is a click (the demo's buttons take both). */
    tap: (selector) => page.click(selector),
    fill: (selector, text) => on(async () => {
      const el = await elementOf(selector);
      await call('POST', `/element/${el}/clear`, {});
      await call('POST', `/element/${el}/value`, { text });
    }),
    press: (selector, key) => on(async () => call('POST', `/element/${await elementOf(selector)}/value`, { text: KEYS[key] ?? key })),
    /**
     * A PNG of the viewport (WebDriver's Take Screenshot), as a Buffer. WebKit
     * returns the last frame it painted, which can lag DOM changes (a scroll,
     * new text) by a few hundred ms under Xvfb: wait for two painted frames first.
     */
    screenshot: () => on(async () => {
      await evaluateNow(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true)))));
      return Buffer.from(await call('GET', '/screenshot'), 'base64');
    }),
    viewportSize: () => size,
    /** Sizes the window so that the page's viewport (innerWidth × innerHeight) is exactly `vp`. */
    async setViewportSize(vp) {
      await on(async () => {
        let rect = await call('POST', '/window/rect', { width: vp.width, height: vp.height });
        for (let i = 0; i < 3; i++) {
          const [w, h] = await call('POST', '/execute/sync', { script: 'return [innerWidth, innerHeight]', args: [] });
          if (w === vp.width && h === vp.height) break;
          // The window's chrome (MiniBrowser's toolbar) is what the difference is.
          rect = await call('POST', '/window/rect', { width: rect.width + vp.width - w, height: rect.height + vp.height - h });
        }
      });
      size = vp;
    },
    collectErrors: () => on(() => evaluateNow(() => null)),
    async close() {
      if (closed) return;
      await on(async () => {
        await evaluateNow(() => null).catch(() => {});
        await call('DELETE', '/window');
      });
      closed = true;
    },
  };
  return page;
}

