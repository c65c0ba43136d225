#!/usr/bin/env bash
# Builds the edge Worker for wasm32 with worker-build (release) into edge/build/:
# index.js (the ES module entry) and index_bg.wasm. Prints the sizes, raw and
# gzip. Needs `deploy/install.sh edge` first.
#
# Usage: deploy/build-edge.sh [extra worker-build args]
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

# deploy/up and deploy/test may both build at once: one at a time, since
# worker-build rewrites edge/build/ in place.
mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/.build-edge.lock"
flock 9

t0=$(date +%s.%N)
cd "$ROOT/edge"
"$CARGO_HOME/bin/worker-build" --release "$@"
t1=$(date +%s.%N)

echo "build-edge: built edge/build in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s"
for f in build/index_bg.wasm build/index.js; do
  [ -f "$f" ] || { echo "build-edge: expected output edge/$f is missing" >&2; exit 1; }
  raw=$(stat -c %s "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  printf 'build-edge: edge/%-18s %8d bytes raw (%4d KiB), %8d bytes gzip (%4d KiB)\n' \
    "$f" "$raw" $((raw / 1024)) "$gz" $((gz / 1024))
done
