#!/usr/bin/env bash
# Where the whole package's bytes go (issue #20): builds the release wasm as
# scripts/lib.sh's build_pkg does, but keeps the function names
# (wasm-bindgen --keep-debug, wasm-opt -g), runs twiggy on it and sums the
# items by crate (depth 1) and by module (depth 3) with size-profile.mjs.
#   bash tests/bench/size-profile.sh [outdir]     (twiggy: cargo install twiggy)
# Writes outdir/top.csv (every item) and prints both tables plus twiggy's top 40.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
out="${1:-$RUN_DIR/size-profile}"
mkdir -p "$out"
command -v twiggy >/dev/null || die "twiggy not found: cargo install twiggy"
target="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release --target wasm32-unknown-unknown --lib -q)
wasm-bindgen --target web --keep-debug --out-dir "$out" --out-name named "$target/wasm32-unknown-unknown/release/venuemesh.wasm"
# The same optimisation as bindgen_opt, with -g: the names survive, the code is what ships.
wasm-opt -g -Oz --low-memory-unused --converge \
  --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$out/named_bg.wasm" -o "$out/named.wasm"
twiggy top -n 1000000 -f csv "$out/named.wasm" >"$out/top.csv"
say "by crate (KB before gzip, the name section left out)"
node "$ROOT/tests/bench/size-profile.mjs" "$out/top.csv" 1
say "by module"
node "$ROOT/tests/bench/size-profile.mjs" "$out/top.csv" 3
say "largest items"
twiggy top -n 40 "$out/named.wasm"
