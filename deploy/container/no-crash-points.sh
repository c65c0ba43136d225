#!/usr/bin/env bash
# Refuses a binary that has region-core's crash points compiled in (the
# `failpoints` feature, for the chaos test only): such a build aborts
# wherever FAILPOINTS or a control file under CITYBOARD_FAILPOINT_DIR says,
# which a production process must never be able to do.
#
# The marker is the crash point's abort message (region-core
# bus::failpoint::crash_point), which exists only inside the `fail_point!`
# closure that the feature compiles in.
#
# Usage: deploy/container/no-crash-points.sh BIN...     exit 1 if one has them
#        deploy/container/no-crash-points.sh --expect BIN...   the opposite:
#        exit 1 unless each has them (deploy/test checks its failpoints
#        build with it, which proves the marker still finds them)
set -euo pipefail
MARKER=' reached: aborting'
expect=0
if [ "${1:-}" = "--expect" ]; then
  expect=1
  shift
fi
[ $# -gt 0 ] || { echo "usage: $0 [--expect] BIN..." >&2; exit 2; }
status=0
for bin in "$@"; do
  [ -f "$bin" ] || { echo "no-crash-points: $bin: no such file" >&2; exit 2; }
  if grep -qaF -- "$MARKER" "$bin"; then has=1; else has=0; fi
  if [ "$has" = 1 ] && [ "$expect" = 0 ]; then
    echo "no-crash-points: $bin has crash points compiled in (built with --features region-core/failpoints)" >&2
    status=1
  elif [ "$has" = 0 ] && [ "$expect" = 1 ]; then
    echo "no-crash-points: $bin has no crash points, but this build should (is the marker still '$MARKER'?)" >&2
    status=1
  else
    echo "no-crash-points: $bin: $([ "$has" = 1 ] && echo has crash points, as expected || echo none)"
  fi
done
exit $status
