// Short import and export names between the wasm and its JS glue (issue #20).
//
//   node scripts/short-names.mjs <dir> <name>     (run by scripts/lib.sh's bindgen_opt,
//                                                  after wasm-opt, before esbuild)
//
// wasm-bindgen names each import after the JS it calls plus a 16-digit hash
// (`__wbg_set_onmessage_26abc49cfa5f9ffc`) and each export after its Rust path
// (`commandqueue_markProcessed`); every name is written twice, once in the
// wasm's import or export section and once in the glue, and the hashes do not
// compress: about 6 KB gzip of the package were names. This renames them to
// one or two letters in <name>_bg.wasm and, consistently, in <name>.js
// (the import object's keys, its module key, every `wasm.<export>`) and in the
// types that list the raw exports (`InitOutput` in <name>.d.ts,
// <name>_bg.wasm.d.ts). `memory` keeps its name: pages read `wasm.memory`
// from what `init()` returns. Nothing else in the wasm changes (sections are
// copied byte for byte), and every name must be found exactly where expected
// or the script fails, so a wasm-bindgen upgrade that changes the glue's shape
// stops the build instead of shipping a glue that no longer links.
import { readFileSync, writeFileSync } from 'node:fs';

const [dir, name] = process.argv.slice(2);
if (!dir || !name) {
  console.error('usage: node scripts/short-names.mjs <dir> <name>');
  process.exit(2);
}
const die = (msg) => {
  console.error(`short-names: ${msg}`);
  process.exit(1);
};

// --- wasm reading and writing --------------------------------------------------
function uleb(buf, pos) {
  let value = 0, shift = 0, b;
  do {
    b = buf[pos++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return [value, pos];
}
function ulebBytes(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
}
function readName(buf, pos) {
  const [len, p] = uleb(buf, pos);
  return [buf.toString('utf8', p, p + len), p + len];
}
const nameBytes = (s) => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([ulebBytes(b.length), b]);
};
/** The length of an import's descriptor (function, table, memory, global, tag). */
function skipDesc(buf, pos) {
  const kind = buf[pos++];
  const limits = (p) => {
    const flags = buf[p++];
    [, p] = uleb(buf, p);
    if (flags & 1) [, p] = uleb(buf, p);
    return p;
  };
  switch (kind) {
    case 0: return uleb(buf, pos)[1];
    case 1: return limits(pos + 1); // reftype (externref / funcref: one byte), limits
    case 2: return limits(pos);
    case 3: return pos + 2; // value type, mutability
    case 4: return uleb(buf, pos + 1)[1];
    default: die(`unknown import kind ${kind}`);
  }
}

// Short names: a..z A..Z, then two characters, skipping words JS reserves.
const RESERVED = new Set(['do', 'if', 'in']);
function* shortNames() {
  const first = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const next = `${first}0123456789`;
  for (const a of first) yield a;
  for (const a of first) for (const b of next) if (!RESERVED.has(a + b)) yield a + b;
}

const wasmPath = `${dir}/${name}_bg.wasm`;
const wasm = readFileSync(wasmPath);
if (wasm.readUInt32LE(0) !== 0x6d736100) die(`${wasmPath} is not a wasm module`);
const bgModule = `./${name}_bg.js`;
const newModule = 'a';
const imports = new Map(); // old field name → new
const exportsMap = new Map();
const parts = [wasm.subarray(0, 8)];
for (let pos = 8; pos < wasm.length;) {
  const id = wasm[pos];
  const [size, start] = uleb(wasm, pos + 1);
  const end = start + size;
  if (id === 2 || id === 7) {
    const names = shortNames();
    let [count, p] = uleb(wasm, start);
    const body = [ulebBytes(count)];
    while (count--) {
      if (id === 2) {
        let mod, field;
        [mod, p] = readName(wasm, p);
        [field, p] = readName(wasm, p);
        const descEnd = skipDesc(wasm, p);
        if (mod === bgModule) {
          const short = names.next().value;
          imports.set(field, short);
          body.push(nameBytes(newModule), nameBytes(short));
        } else {
          body.push(nameBytes(mod), nameBytes(field));
        }
        body.push(wasm.subarray(p, descEnd));
        p = descEnd;
      } else {
        let field;
        [field, p] = readName(wasm, p);
        const descEnd = uleb(wasm, p + 1)[1];
        const short = field === 'memory' ? field : names.next().value;
        exportsMap.set(field, short);
        body.push(nameBytes(short), wasm.subarray(p, descEnd));
        p = descEnd;
      }
    }
    if (p !== end) die(`section ${id}: parsed ${p - start} of ${size} bytes`);
    const content = Buffer.concat(body);
    parts.push(Buffer.from([id]), ulebBytes(content.length), content);
  } else {
    parts.push(wasm.subarray(pos, end));
  }
  pos = end;
}
if (!imports.size) die(`no imports from ${bgModule} in ${wasmPath}`);

// --- the glue ------------------------------------------------------------------
const esc = (s) => s.replace(/[$]/g, '\\$&');
/** Replaces each match of `re` (global; captures: what comes before the
 * name, the name) through `map`; names the map does not know fail the build.
 * Returns the text and the names seen. */
function renameAll(text, re, map, what) {
  const seen = new Set();
  const out = text.replace(re, (m, pre, old) => {
    const short = map.get(old);
    if (short === undefined) die(`${what}: \`${old}\` is not in the wasm`);
    seen.add(old);
    return pre + short;
  });
  return [out, seen];
}

const jsPath = `${dir}/${name}.js`;
let js = readFileSync(jsPath, 'utf8');
// The import object: `        __wbg_…: function(` keys inside `const import0 = {`.
const objStart = js.indexOf('const import0 = {');
const objEnd = js.indexOf(`"${bgModule}": import0`);
if (objStart < 0 || objEnd < 0 || js.indexOf(`"${bgModule}"`, objEnd + 1) >= 0) die(`${jsPath}: import object not found`);
let [importObj, seenImports] = renameAll(js.slice(objStart, objEnd), /^( {8})([A-Za-z_$][\w$]*)(?=: function\()/gm, imports, 'import');
for (const old of imports.keys()) {
  if (!seenImports.has(old)) die(`${jsPath}: import \`${old}\` not found`);
  if (new RegExp(`\\b${esc(old)}\\b`).test(js.slice(0, objStart) + js.slice(objEnd))) die(`${jsPath}: \`${old}\` used outside the import object`);
}
js = js.slice(0, objStart) + importObj + js.slice(objEnd).replace(`"${bgModule}": import0`, `"${newModule}": import0`);
let seenExports;
[js, seenExports] = renameAll(js, /\b(wasm\.)([A-Za-z_$][\w$]*)/g, exportsMap, 'export');
if (/\bwasm\[/.test(js)) die(`${jsPath}: an export read by computed name`);

// --- the raw exports' types ------------------------------------------------------
const bgDts = `${dir}/${name}_bg.wasm.d.ts`;
const [bg] = renameAll(readFileSync(bgDts, 'utf8'), /^(export const )([A-Za-z_$][\w$]*)(?=:)/gm, exportsMap, bgDts);
const dtsPath = `${dir}/${name}.d.ts`;
let dts = readFileSync(dtsPath, 'utf8');
const io = dts.indexOf('export interface InitOutput {');
const ioEnd = dts.indexOf('\n}', io);
if (io < 0 || ioEnd < 0) die(`${dtsPath}: InitOutput not found`);
const [ioText, seenTypes] = renameAll(dts.slice(io, ioEnd), /^( {4}readonly )([A-Za-z_$][\w$]*)(?=:)/gm, exportsMap, dtsPath);
if (!seenTypes.size) die(`${dtsPath}: InitOutput lists no exports`);

// Every check passed: only now are the four files written.
writeFileSync(jsPath, js);
writeFileSync(bgDts, bg);
writeFileSync(dtsPath, dts.slice(0, io) + ioText + dts.slice(ioEnd));
writeFileSync(wasmPath, Buffer.concat(parts));
console.log(`short-names: ${name}: ${imports.size} imports, ${exportsMap.size - 1} exports renamed (${seenExports.size} used by the glue)`);
