#!/usr/bin/env bash
# Runs the built edge Worker (edge/build/, from deploy/build-edge.sh) under bare
# workerd, in the foreground, listening on 127.0.0.1:PORT, until it is signalled.
# Meant for a supervisor: it execs workerd, so the pid it started is workerd's,
# SIGTERM stops it, and its log is stdout/stderr.
#
# Health check: GET http://127.0.0.1:PORT/healthz answers 200 "ok".
#
# By hand only: `cityboard up` supervises workerd itself with a config it
# generates from the topology. This one serves edge/workerd.capnp, whose PAGES
# binding needs `cityboard edge-kv --dir DIR` on 127.0.0.1:8788 and whose
# FORWARD_KEY comes from $CITYBOARD_EDGE_FORWARD_KEY.
#
# Usage: deploy/run-edge.sh PORT [ADDRESS]     ADDRESS defaults to 127.0.0.1
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/env.sh
. "$ROOT/deploy/env.sh"

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: deploy/run-edge.sh PORT [ADDRESS]" >&2
  exit 2
fi
port=$1 addr=${2:-127.0.0.1}
[ -x "$WORKERD_BIN" ] || { echo "run-edge: workerd not found at $WORKERD_BIN (install step 'workerd'); run: deploy/install.sh edge" >&2; exit 1; }
for f in index.js index_bg.wasm; do
  [ -f "$ROOT/edge/build/$f" ] || { echo "run-edge: edge/build/$f missing; run: deploy/build-edge.sh" >&2; exit 1; }
done
# workerd's own message does not name the port ("Socket "http": bind(): Address
# already in use"); say which one the edge wanted. (Only a hint: racy by nature.)
if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then
  echo "run-edge: $addr:$port is already in use; the edge runtime (workerd) wanted it" >&2
  exit 1
fi
exec "$WORKERD_BIN" serve "$ROOT/edge/workerd.capnp" --socket-addr "http=$addr:$port"
