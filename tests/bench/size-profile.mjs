// Where the package's bytes go (issue #20): sums twiggy's per-item sizes of a
// wasm built with names by crate and by module path, so a cut can be aimed at
// the largest group and measured afterwards.
//
//   bash tests/bench/size-profile.sh            builds the named wasm, runs this
//   node tests/bench/size-profile.mjs top.csv [depth]
//
// `top.csv` is `twiggy top -n 1000000 -f csv named.wasm`. The sizes are the
// optimised module's (wasm-opt -Oz with -g), before gzip: gzip shrinks code
// and data by different ratios, so read the table as shares, not as the
// gzip figures the budget checks.
import { readFileSync } from 'node:fs';

/** Splits one CSV line of twiggy's output (names are quoted when they hold commas or quotes). */
function fields(line) {
  const out = [];
  let cur = '', q = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
      else if (c === '"') q = false;
      else cur += c;
    } else if (c === '"') q = true;
    else if (c === ',') { out.push(cur); cur = ''; }
    else cur += c;
  }
  out.push(cur);
  return out;
}

/** The module path an item belongs to, `depth` segments deep: the crate
 * (`depth` 1), `venuemesh::web` (2), … For `<impl a::b::T>::f` and
 * `<x::Y as z::Trait>::f` the path is the implementing type's (where the code
 * was written, or the generic instantiated); a `{{closure}}` counts with its
 * function. wasm-bindgen's generated shims, data segments and sections are
 * groups of their own. */
export function group(name, depth) {
  if (/ shim/.test(name) || /^__wbg|^__wbindgen|^__externref/.test(name)) return '(wasm-bindgen shims and glue)';
  if (/^data segment/.test(name)) return '(data segments)';
  if (/subsection|section|^elem|^table|^type\[|^import |^export |^global\[|^memory\[|^code\[/.test(name)) return `(${name.replace(/\[.*|".*"/g, '').trim() || name})`;
  let s = name.replace(/::h[0-9a-f]{16}$/, '');
  // `<impl x::T>::f` / `<x::T as y::Tr>::f` / `<&x::T as …>`: take x::T.
  s = s.replace(/^<+(?:impl\s+)?[&*]*(?:mut\s+|const\s+|dyn\s+)*/, '');
  const segs = [];
  let cur = '', angle = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '<') angle++;
    else if (c === '>') angle--;
    if (angle === 0 && c === ':' && s[i + 1] === ':') { segs.push(cur); cur = ''; i++; continue; }
    if (angle === 0 && (c === ' ' || c === '>')) break;
    if (angle === 0) cur += c;
  }
  segs.push(cur);
  const clean = segs.map((x) => x.replace(/\[[0-9a-f]+\]$/, '')).filter(Boolean);
  if (clean.length <= 1) return clean[0] && /^[a-z_0-9]+$/.test(clean[0]) ? clean[0] : '(unnamed)';
  // Stop at a type or function name: module segments are lower case.
  const mods = [];
  for (const x of clean.slice(0, -1)) {
    if (!/^[a-z_0-9]+$/.test(x)) break;
    mods.push(x);
  }
  return (mods.length ? mods : clean.slice(0, 1)).slice(0, depth).join('::');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, depthArg] = process.argv.slice(2);
  const depth = Number(depthArg || 2);
  const rows = readFileSync(file, 'utf8').trim().split('\n').slice(1).map(fields);
  const sums = new Map();
  let total = 0;
  for (const [name, size] of rows) {
    if (/function names|^"?name"? section/.test(name)) continue;
    const n = Number(size);
    total += n;
    const g = group(name, depth);
    sums.set(g, (sums.get(g) || 0) + n);
  }
  const sorted = [...sums].sort((a, b) => b[1] - a[1]);
  console.log(`${'group'.padEnd(48)} ${'KB'.padStart(7)} ${'%'.padStart(5)}`);
  for (const [g, n] of sorted) {
    if (n / total < 0.003) continue;
    console.log(`${g.padEnd(48)} ${(n / 1024).toFixed(1).padStart(7)} ${((100 * n) / total).toFixed(1).padStart(5)}`);
  }
  console.log(`${'total (without the name section)'.padEnd(48)} ${(total / 1024).toFixed(1).padStart(7)}`);
}
