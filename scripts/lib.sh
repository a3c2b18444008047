# Shared by scripts/setup, build, demo, test and bench. Source it; don't run it.
# Every step checks before it installs, so running a script twice does no
# work the second time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"          # logs and pid files of services we start
mkdir -p "$RUN_DIR"
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

say() { printf '\033[1m[venuemesh]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[venuemesh] %s\033[0m\n' "$*" >&2; exit 1; }

# The wasm-bindgen version the lock file pins; the CLI must match it exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

ensure_apt() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v mosquitto >/dev/null && [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v ss >/dev/null || missing+=(iproute2)
  command -v curl >/dev/null || missing+=(curl)
  # Debian's python3 (with sqlite3) runs the reference ingest, tests/ingest/ingest.py.
  [ -x /usr/bin/python3 ] || missing+=(python3)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # Debian starts a system mosquitto on 1883 when it installs the package;
  # our scripts run their own with the repo's config, so stop that one.
  if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    systemctl stop mosquitto || true
  fi
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
  [ -f "$ROOT/Cargo.lock" ] || (cd "$ROOT" && cargo generate-lockfile)
  local want have
  want="$(wasm_bindgen_version)"
  have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" || true
  if [ "$have" != "$want" ]; then
    say "cargo install wasm-bindgen-cli $want (installed: ${have:-none}; takes a few minutes)"
    # --locked first; the registry mirror here lacks one crate version that
    # wasm-bindgen-cli's own lock file names (webpki-roots 1.0.11), so fall
    # back to resolving afresh: the CLI version is what must match, not its deps.
    cargo install wasm-bindgen-cli --version "$want" --locked -q 2>/dev/null \
      || cargo install wasm-bindgen-cli --version "$want" -q
  fi
}

ensure_npm() {
  # node_modules is current when the lock file has not changed since npm ci.
  local stamp="$ROOT/node_modules/.venuemesh-lock"
  if [ ! -f "$stamp" ] || ! cmp -s "$ROOT/package-lock.json" "$stamp"; then
    say "npm ci (test and bench tooling)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$ROOT/package-lock.json" "$stamp"
  fi
}

setup_all() { ensure_apt; ensure_rust; ensure_npm; }

# WebKit, Safari's engine, for scripts/test and scripts/bench (the demo does
# not need it): Debian's WebKitGTK (`webkit2gtk-driver`: WebKitWebDriver and
# the MiniBrowser it drives) and a virtual display for it (`xvfb`). Debian
# packages only: Playwright's WebKit would be a downloaded browser.
ensure_webkit() {
  local missing=()
  command -v WebKitWebDriver >/dev/null || missing+=(webkit2gtk-driver)
  command -v Xvfb >/dev/null || missing+=(xvfb)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]} (WebKit for the tests)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  minibrowser >/dev/null || die "webkit2gtk-driver is installed but no MiniBrowser was found under /usr/lib/*/webkit2gtk-4.*/"
}

# The MiniBrowser of the WebKitGTK library package (multiarch lib directory).
minibrowser() {
  local m
  for m in /usr/lib/*/webkit2gtk-4.1/MiniBrowser /usr/lib/*/webkit2gtk-4.0/MiniBrowser; do
    [ -x "$m" ] && { echo "$m"; return 0; }
  done
  return 1
}

# Release wasm -> wasm-bindgen --target web -> wasm-opt -Oz -> minified glue,
# twice: pkg/ (the whole library) and pkg/mqtt/ (`MqttClient` only, built with
# --no-default-features: the package's `venuemesh/mqtt` entry).
build_pkg() {
  say "building the release package into pkg/ and pkg/mqtt/"
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  (cd "$ROOT" && cargo build --release --target wasm32-unknown-unknown --lib -q)
  # A target dir of its own: alternating feature sets in one would rebuild
  # the crate on every call.
  (cd "$ROOT" && cargo build --release --target wasm32-unknown-unknown --lib -q --no-default-features \
    --target-dir "$target/mqtt-only")
  local out="$ROOT/pkg"
  rm -rf "$out" && mkdir -p "$out/mqtt"
  bindgen_opt "$target/wasm32-unknown-unknown/release/venuemesh.wasm" "$out" venuemesh
  bindgen_opt "$target/mqtt-only/wasm32-unknown-unknown/release/venuemesh.wasm" "$out/mqtt" venuemesh_mqtt
  cp -r "$ROOT/pkg-template/." "$out/"
  # The package version follows Cargo.toml.
  local ver; ver="$(awk -F'"' '/^version = /{print $2; exit}' "$ROOT/Cargo.toml")"
  sed -i "s/\"version\": \"[^\"]*\"/\"version\": \"$ver\"/" "$out/package.json"
}

# The package with the `test-hooks` feature into pkg-hooks/ (never published):
# benchmark-only exports such as `__benchTrust` (tests/bench/trust.mjs) are
# left out of pkg/ (issue #20). Optimised like pkg/, so what it times is what ships.
build_hooks_pkg() {
  say "building the package with benchmark hooks into pkg-hooks/"
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  (cd "$ROOT" && cargo build --release --target wasm32-unknown-unknown --lib -q --features test-hooks \
    --target-dir "$target/hooks")
  rm -rf "$ROOT/pkg-hooks" && mkdir -p "$ROOT/pkg-hooks"
  bindgen_opt "$target/hooks/wasm32-unknown-unknown/release/venuemesh.wasm" "$ROOT/pkg-hooks" venuemesh
}

bindgen_opt() { # module.wasm, out dir, out name
  local wasm="$1" out="$2" name="$3"
  wasm-bindgen --target web --out-dir "$out" --out-name "$name" "$wasm"
  # npm's binaryen: Debian's wasm-opt 108 breaks modules from current rustc.
  # --low-memory-unused: rustc's wasm32 layout puts the stack (growing down from 1 MiB) below
  # the data, so addresses under 1 KiB are never used and loads/stores can fold their offsets;
  # --converge repeats -Oz until the module stops shrinking. Together ~1.4 KB gzip. After
  # changing these flags, load the result in Chromium (ONLY=e2e bash scripts/test).
  wasm-opt -Oz --low-memory-unused --converge --strip-debug --strip-producers \
    --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$out/${name}_bg.wasm" -o "$out/${name}_bg.wasm"
  # One- and two-letter import/export names in the wasm and the glue instead of
  # wasm-bindgen's hashed ones (≈ 6.6 KB gzip less for the whole library).
  node "$ROOT/scripts/short-names.mjs" "$out" "$name" >/dev/null
  # Minified glue, still an ES module with the same exports (≈ 4.8 KB gzip
  # less for the whole library). Syntax is left as wasm-bindgen wrote it: the
  # app's bundler picks its targets. The first line, which minifying drops,
  # points TypeScript and Deno at the types.
  esbuild "$out/$name.js" --minify --format=esm --log-level=warning --allow-overwrite --outfile="$out/$name.js"
  sed -i "1i /* @ts-self-types=\"./$name.d.ts\" */" "$out/$name.js"
}

# --- the test network ------------------------------------------------------------
# Tests and benchmarks run in a network namespace of their own. Chromium gathers no
# WebRTC candidates on loopback, so outside such a namespace two test pages would
# open their data channels over this machine's real interface address. Inside it
# the only interfaces are `lo` and a veth pair with a private address that exists
# nowhere else: every byte of a run stays on this machine, and parallel runs
# (other checkouts, other agents) cannot clash on ports. The namespace goes away
# when the last process of the run exits. scripts/demo does not do this: a person
# on a venue's LAN wants the real network.
TEST_NET_ADDR="10.213.0.1/24"

# Stops with a clear message (never falls back to the real network) when this
# machine cannot give the run a network namespace: it needs root and unshare.
require_test_netns() {
  [ "$(id -u)" -eq 0 ] || die "tests and benchmarks run in a network namespace of their own (WebRTC would otherwise use this machine's real address); that needs root: sudo bash scripts/$(basename "$0")"
  command -v unshare >/dev/null || die "unshare (util-linux) is missing: it makes the tests' network namespace; apt-get install util-linux"
  unshare -n true 2>/dev/null || die "unshare -n failed: this machine does not let root make a network namespace (CAP_SYS_ADMIN); not running the tests on the real network instead"
}

# Re-runs the calling script ($1, with the rest as its arguments) inside a fresh
# network namespace, unless it already runs in one.
enter_test_netns() {
  [ -n "${VM_TEST_NETNS:-}" ] && return 0
  require_test_netns
  local script="$1"; shift
  # Everything that needs the real network happens before: crates for the offline build inside.
  (cd "$ROOT" && cargo fetch -q)
  say "entering a network namespace of our own (unshare -n): lo + veth $TEST_NET_ADDR"
  exec unshare -n -- env VM_TEST_NETNS=1 CARGO_NET_OFFLINE=true bash "$script" "$@"
}

# Inside the namespace: lo up, a veth pair vm0/vm1 with a private address on vm0 and a
# default route through it (Chromium offers host candidates only on an interface with
# a route; a namespace with lo alone gives none). Exports VM_TEST_NETS, the
# namespace's own networks (CIDRs), which the e2e ICE check accepts.
setup_test_netns() {
  [ -n "${VM_TEST_NETNS:-}" ] || die "setup_test_netns outside the test namespace"
  ip link set lo up
  ip link add vm0 type veth peer name vm1
  ip addr add "$TEST_NET_ADDR" dev vm0
  ip link set vm0 up
  ip link set vm1 up
  ip route add default dev vm0
  # IPv6 link-local addresses appear a moment after the links come up; list them too.
  sleep 0.2
  VM_TEST_NETS="$(ip -o addr show | awk '{print $4}' | paste -sd, -)"
  export VM_TEST_NETS
  say "test network: $VM_TEST_NETS"
}

# The whole run's data channels (tests/e2e/ice-probe.js wrote one JSON line per
# selected candidate pair): fails if any end lies outside VM_TEST_NETS, and
# reports the addresses that were used. Zero pairs is fine only for a run of
# files that open no data channel.
check_ice_log() { # log file
  (cd "$ROOT" && node --input-type=module -e '
    import { readFileSync } from "node:fs";
    import { icePairsProblems } from "./tests/e2e/lib.mjs";
    const pairs = readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const ends = pairs.flatMap((p) => [p.local, p.remote]);
    const used = [...new Set(ends.map((c) => c?.address || `${c?.type} (redacted)`))].sort().join(", ");
    console.log(`[venuemesh] ICE check: ${pairs.length} data-channel candidate pairs, addresses used: ${used || "none"} (test networks: ${process.env.VM_TEST_NETS})`);
    const bad = icePairsProblems(pairs);
    if (bad.length) { console.error(`[venuemesh] ICE check FAILED: ${bad.length} pair(s) outside the test network:\n${bad.join("\n")}`); process.exit(1); }
  ' "$1")
}

# --- services ----------------------------------------------------------------
STARTED_PIDS=()
stop_started() {
  local pid child
  for pid in "${STARTED_PIDS[@]:-}"; do
    # WebKitWebDriver's MiniBrowser (a session a test left open) goes first: it
    # would outlive its driver and keep the test namespace alive.
    for child in $( [ -n "$pid" ] && ps -o pid= --ppid "$pid" 2>/dev/null || true); do
      kill "$child" 2>/dev/null || true
    done
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    # A process paused with `kill -STOP` (e.g. the demo's ingest, to play a cloud
    # outage) only acts on the TERM once continued.
    [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null || true
  done
  for pid in "${STARTED_PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  STARTED_PIDS=()
}

wait_port() { # port, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- broker accounts ------------------------------------------------------------
# The shipped Mosquitto configs admit no anonymous client (config/mosquitto.acl
# says what each account reaches). Passwords are made here, on first use, and
# kept in .run/broker/ (never committed): {user}.pass holds one in clear text
# (mode 600) for our clients, {name}.passwd the hashes Mosquitto reads.
BROKER_DIR="$RUN_DIR/broker"
# Mosquitto started as root drops to its own user before it reads the password
# and ACL files, and that user may not be able to reach the checkout (a clone
# under /root): start_broker gives it copies in a directory of its own here.
BROKER_RT="${TMPDIR:-/tmp}/venuemesh-broker-$(id -u)-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"

# The password of account `user` (24 random bytes as hex), made on first use.
broker_password() { # user
  local f="$BROKER_DIR/$1.pass"
  mkdir -p "$BROKER_DIR"
  if [ ! -s "$f" ]; then
    (umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$f")
  fi
  cat "$f"
}

# Writes .run/broker/{name}.passwd (mosquitto_passwd format) with these accounts.
broker_accounts() { # name, user…
  local name="$1" u; shift
  local f="$BROKER_DIR/$name.passwd"
  mkdir -p "$BROKER_DIR"
  (umask 077; : >"$f.tmp")
  for u in "$@"; do
    mosquitto_passwd -b "$f.tmp" "$u" "$(broker_password "$u")" || die "mosquitto_passwd failed for account $u"
  done
  mv -f "$f.tmp" "$f"
}

# The accounts of the test and bench brokers (config/mosquitto-{test,bench}.conf):
# the harness account the test pages use, exported for them as
# VM_TEST_BROKER_USER / VM_TEST_BROKER_PASS.
test_broker_accounts() {
  broker_accounts test vm-harness
  export VM_TEST_BROKER_USER=vm-harness
  VM_TEST_BROKER_PASS="$(broker_password vm-harness)"
  export VM_TEST_BROKER_PASS
}

# Mosquitto with the repo's config (websockets on loopback only). The config
# names its password and ACL files relative to the repository root; it runs
# with copies of them (and of itself) in BROKER_RT, which Mosquitto's user can read.
start_broker() { # config file, port
  local conf="$1" port="$2" rt="$BROKER_RT" line
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use: stop whatever listens there (a broker from an earlier run?)"
  fi
  mkdir -p "$rt" && chmod 755 "$rt"
  local rendered="$rt/$(basename "$conf")"
  : >"$rendered.tmp"
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
      password_file\ *) line="${line#password_file }"
                        install -m 600 "$ROOT/$line" "$rt/" || die "no password file $line (broker_accounts makes it)"
                        line="password_file $rt/$(basename "$line")" ;;
      acl_file\ *) cp "$ROOT/${line#acl_file }" "$rt/"; line="acl_file $rt/$(basename "${line#acl_file }")" ;;
    esac
    printf '%s\n' "$line" >>"$rendered.tmp"
  done <"$conf"
  mv -f "$rendered.tmp" "$rendered"
  if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$rt"; fi
  /usr/sbin/mosquitto -c "$rendered" >"$RUN_DIR/mosquitto-$port.log" 2>&1 &
  STARTED_PIDS+=($!)
  wait_port "$port" 10 || die "mosquitto did not start on $port (see $RUN_DIR/mosquitto-$port.log)"
  say "mosquitto on ws://127.0.0.1:$port (pid $!)"
}

# Aedes (tests/brokers/aedes.mjs, npm), the second broker implementation: websockets
# on 127.0.0.1:ws_port, plain MQTT on 127.0.0.1:tcp_port, the harness account only.
start_aedes() { # ws port, tcp port
  local ws="$1" tcp="$2" accounts="$BROKER_DIR/aedes-accounts.json"
  (umask 077; printf '{"vm-harness": "%s"}\n' "$(broker_password vm-harness)" >"$accounts")
  node "$ROOT/tests/brokers/aedes.mjs" --ws "$ws" --tcp "$tcp" --accounts "$accounts" >"$RUN_DIR/aedes-$ws.log" 2>&1 &
  STARTED_PIDS+=($!)
  wait_port "$ws" 10 && wait_port "$tcp" 10 || die "aedes did not start on $ws/$tcp (see $RUN_DIR/aedes-$ws.log)"
  say "aedes on ws://127.0.0.1:$ws (pid $!)"
}

start_static() { # port
  local port="$1"
  node "$ROOT/scripts/serve.mjs" "$port" >"$RUN_DIR/serve-$port.log" 2>&1 &
  STARTED_PIDS+=($!)
  wait_port "$port" 10 || die "static server did not start on $port"
  say "static server on http://127.0.0.1:$port (pid $!)"
}

# The reference ingest (tests/ingest/ingest.py, Debian's python3): the cloud end of
# the hub's upstream drain for one venue. It listens on nothing; it connects to the
# broker's plain MQTT listener on 127.0.0.1, stores uploads in SQLite keyed by
# command id and answers CLOUD_ACK. Its output goes to .run/ingest-{venue}.log.
# It logs in as the venue's account (username = venue, password from .run/broker/{venue}.pass).
start_ingest() { # venue, (unused: the v1 venue key), broker TCP port, SQLite file
  local venue="$1" port="$3" db="$4"
  broker_password "$venue" >/dev/null
  local ready="$RUN_DIR/ingest-$venue.ready" log="$RUN_DIR/ingest-$venue.log" pid i
  local trust="$RUN_DIR/ingest-$venue.trust.json"
  rm -f "$ready"
  # The cloud's credentials from the venue's demo CA (public seed: demos only), the CA
  # the static server's POST /ca/issue certifies the demo pages with (issue #15).
  (umask 077 && node "$ROOT/scripts/ca.mjs" ingest --demo "$venue" >"$trust")
  /usr/bin/python3 "$ROOT/tests/ingest/ingest.py" --broker "127.0.0.1:$port" --venue "$venue" \
    --trust "$trust" --db "$db" --ready-file "$ready" --username "$venue" --password-file "$BROKER_DIR/$venue.pass" >"$log" 2>&1 &
  pid=$!
  STARTED_PIDS+=($pid)
  # Ready once subscribed to vm/{venue}/up (it retries the broker with backoff meanwhile).
  for ((i = 0; i < 100; i++)); do
    [ -s "$ready" ] && break
    kill -0 "$pid" 2>/dev/null || die "the ingest exited (see $log)"
    sleep 0.1
  done
  [ -s "$ready" ] || die "the ingest did not subscribe within 10 s (see $log)"
  say "reference ingest for venue $venue on 127.0.0.1:$port (pid $pid), SQLite $db"
}

# WebKit for tests and benchmarks, inside the test namespace: a virtual X
# display (Xvfb) and `n` WebKitWebDriver servers on loopback. WebKitWebDriver
# serves one session (one MiniBrowser = one browser context, one device) at a
# time, so multi-device tests need several; tests/e2e/webkit.mjs hands them
# out. Exports VM_WEBKIT_DRIVERS (their URLs), VM_WEBKIT_BROWSER (the
# MiniBrowser) and DISPLAY; stop_started stops them with the rest.
start_webkit() { # number of WebDriver servers, first port
  local n="${1:-3}" port="${2:-19444}" dfile="$RUN_DIR/xvfb-display.$$" display="" i urls=()
  rm -f "$dfile"
  # The display listens on Linux's abstract socket only (-nolisten tcp, -nolisten
  # unix): it belongs to this network namespace, so runs in other namespaces
  # (other worktrees) have displays of their own with the same number and no
  # file in /tmp/.X11-unix to fight over. -displayfd: Xvfb takes the first free
  # number (here :0) and writes it. 1600×1600 holds an iPad viewport (1024×1366
  # or 1366×1024) plus MiniBrowser's toolbar.
  Xvfb -displayfd 9 -screen 0 1600x1600x24 -nolisten tcp -nolisten unix 9>"$dfile" >"$RUN_DIR/xvfb.log" 2>&1 &
  STARTED_PIDS+=($!)
  for ((i = 0; i < 100; i++)); do
    display="$(tr -dc 0-9 <"$dfile" 2>/dev/null || true)"
    [ -n "$display" ] && break
    sleep 0.1
  done
  rm -f "$dfile"
  [ -n "$display" ] || die "Xvfb did not start (see $RUN_DIR/xvfb.log)"
  export DISPLAY=":$display"
  VM_WEBKIT_BROWSER="$(minibrowser)" || die "no MiniBrowser (webkit2gtk-driver)"
  export VM_WEBKIT_BROWSER
  for ((i = 0; i < n; i++)); do
    # --replace-on-new-session: a session a crashed test left behind does not block the next one.
    WebKitWebDriver --port=$((port + i)) --host=local --replace-on-new-session >"$RUN_DIR/webkitdriver-$((port + i)).log" 2>&1 &
    STARTED_PIDS+=($!)
    urls+=("http://127.0.0.1:$((port + i))")
  done
  for ((i = 0; i < n; i++)); do
    wait_port $((port + i)) 10 || die "WebKitWebDriver did not start on $((port + i)) (see $RUN_DIR/webkitdriver-$((port + i)).log)"
  done
  VM_WEBKIT_DRIVERS="$(IFS=,; echo "${urls[*]}")"
  export VM_WEBKIT_DRIVERS
  say "WebKit: Xvfb $DISPLAY, $n WebKitWebDriver on 127.0.0.1:$port-$((port + n - 1)), $("$VM_WEBKIT_BROWSER" --version 2>/dev/null || echo MiniBrowser)"
}

# Fails when a process we run listens on anything but loopback.
OUR_LISTENERS='mosquitto|node|chrom|wasm-bindgen|WebKit|MiniBrowser'
check_loopback_only() {
  local bad
  bad="$(ss -ltnupH 2>/dev/null | grep -E "$OUR_LISTENERS" \
    | awk '{print $5}' | grep -vE '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]|localhost):' || true)"
  if [ -n "$bad" ]; then
    ss -ltnupH | grep -E "$OUR_LISTENERS" >&2
    die "a service of ours listens on a non-loopback address: $bad"
  fi
  say "listening sockets of ours are loopback only"
}
