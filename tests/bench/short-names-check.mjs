// Checks of scripts/short-names.mjs (issue #20), run by size-check.mjs (part
// `size`): the shipped entries still link after the renaming, and the script
// refuses a glue it cannot map instead of writing one that no longer links.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Each entry's wasm instantiates against its own glue (every import the
 * wasm names exists in the glue's import object) and an export answers. */
export async function linkChecks(dir = `${root}pkg`) {
  const out = [];
  for (const [entry, sub, name] of [['package', '', 'venuemesh'], ['mqtt', '/mqtt', 'venuemesh_mqtt']]) {
    try {
      const glue = await import(`${dir}${sub}/${name}.js`);
      const wasm = glue.initSync({ module: readFileSync(`${dir}${sub}/${name}_bg.wasm`) });
      const version = glue.version();
      const ok = typeof version === 'string' && wasm.memory instanceof WebAssembly.Memory;
      out.push({ name: `${entry} links with its glue`, ok, text: `version() = ${version}, memory exported as memory` });
    } catch (e) {
      out.push({ name: `${entry} links with its glue`, ok: false, text: String(e) });
    }
  }
  return out;
}

// A minimal module in wasm-bindgen's shape: one import from ./x_bg.js, one
// exported function, and memory.
const str = (s) => [s.length, ...Buffer.from(s)];
const section = (id, bytes) => [id, bytes.length, ...bytes];
const FIXTURE_WASM = Buffer.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, [1, 0x60, 0, 0]), // type 0: () -> ()
  ...section(2, [1, ...str('./x_bg.js'), ...str('__wbg_f_0123456789abcdef'), 0, 0]),
  ...section(3, [1, 0]), // function 1: type 0
  ...section(5, [1, 0, 1]), // memory, min 1 page
  ...section(7, [2, ...str('memory'), 2, 0, ...str('x_run'), 0, 1]),
  ...section(10, [1, 4, 0, 0x10, 0, 0x0b]), // body: call import 0
]);
const FIXTURE_JS = `function __wbg_get_imports() {
    const import0 = {
        __proto__: null,
        __wbg_f_0123456789abcdef: function() {
            globalThis.__shortNamesCalled = true;
        },
    };
    return {
        __proto__: null,
        "./x_bg.js": import0,
    };
}
export function run() { wasm.x_run(); }
let wasm;
`;
const FIXTURE_DTS = 'export interface InitOutput {\n    readonly memory: WebAssembly.Memory;\n    readonly x_run: () => void;\n}\n';
const FIXTURE_BG_DTS = 'export const memory: WebAssembly.Memory;\nexport const x_run: () => void;\n';

function runOn(js) {
  const dir = mkdtempSync(join(tmpdir(), 'short-names-'));
  try {
    writeFileSync(join(dir, 'x_bg.wasm'), FIXTURE_WASM);
    writeFileSync(join(dir, 'x.js'), js);
    writeFileSync(join(dir, 'x.d.ts'), FIXTURE_DTS);
    writeFileSync(join(dir, 'x_bg.wasm.d.ts'), FIXTURE_BG_DTS);
    const r = spawnSync(process.execPath, [`${root}scripts/short-names.mjs`, dir, 'x'], { encoding: 'utf8' });
    const read = (f) => readFileSync(join(dir, f));
    return { status: r.status, stderr: r.stderr.trim(), js: read('x.js').toString(), wasm: read('x_bg.wasm'), dts: read('x.d.ts').toString() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The renaming on the fixture: consistent on both sides, and refused when
 * the glue names an export the wasm lacks or lacks an import the wasm names. */
export async function selfChecks() {
  const out = [];
  const good = runOn(FIXTURE_JS);
  let linked = false;
  if (good.status === 0) {
    // The renamed glue's import object and export names against the renamed wasm.
    const mod = await import(`data:text/javascript,${encodeURIComponent(`${good.js}\nexport { __wbg_get_imports }; export function set(w) { wasm = w; }`)}`);
    const { instance } = await WebAssembly.instantiate(good.wasm, mod.__wbg_get_imports());
    mod.set(instance.exports);
    mod.run();
    linked = globalThis.__shortNamesCalled === true && 'memory' in instance.exports && !('x_run' in instance.exports);
  }
  out.push({ name: 'short-names renames both sides consistently', ok: good.status === 0 && linked && !good.js.includes('__wbg_f_') && !good.dts.includes('x_run'), text: good.status === 0 ? `renamed glue calls the renamed wasm (${linked})` : good.stderr });
  const unknownExport = runOn(FIXTURE_JS.replace('wasm.x_run();', 'wasm.x_run(); wasm.x_gone();'));
  out.push({ name: 'short-names refuses an export the wasm lacks', ok: unknownExport.status !== 0 && unknownExport.wasm.equals(FIXTURE_WASM), text: unknownExport.stderr || 'exited 0' });
  const missingImport = runOn(FIXTURE_JS.replace('__wbg_f_0123456789abcdef', '__wbg_g_0123456789abcdef'));
  out.push({ name: 'short-names refuses a glue without an import the wasm names', ok: missingImport.status !== 0 && missingImport.wasm.equals(FIXTURE_WASM) && missingImport.js === FIXTURE_JS.replace("__wbg_f_0123456789abcdef", "__wbg_g_0123456789abcdef"), text: missingImport.stderr || 'exited 0' });
  return out;
}
