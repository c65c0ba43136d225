#!/usr/bin/env bash
# Property-based and stateful API tests of a running region api with
# schemathesis, against the api's own /openapi.json.
#
#   region-core/tests/schemathesis.sh [BASE_URL] [schemathesis args...]
#
# BASE_URL is a region api of the stack at $CITYBOARD_HOME (e.g.
# http://127.0.0.1:27010); the region is the one whose api_port is BASE_URL's
# port. Without it (or with "-"), the first region's api of the state file. Needs: $CITYBOARD_HOME (its state.json), schemathesis in
# $CITYBOARD_VENV (deploy/install.sh base; `. deploy/env.sh` sets it), the
# region-core binary ($REGION_CORE_BIN, default target/debug/region-core).
#
# What it does:
#   1. adds demo posts to the region (`region-core setup --demo`, idempotent),
#      so listing and GET /post/{id} have data to answer 2xx with;
#   2. runs schemathesis with every check, all phases including stateful
#      (OpenAPI links: listing -> post, listing -> next page, signup -> login,
#      new post -> edit, delete, renew, report, its command's status),
#      requests sent for `<first city of the region>.<apex>` and signed as
#      the edge signs them (hooks.py, with $CITYBOARD_HOME/secrets/
#      edge-forward.key): the api keeps requiring signatures;
#   3. fails on any 5xx, any response that breaks the schema, or an operation
#      that never answered 2xx.
# Extra arguments go to `schemathesis run` (e.g. --max-examples 20).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
: "${CITYBOARD_HOME:?set CITYBOARD_HOME to the stack home (its state.json describes BASE_URL)}"
BASE_URL=${1:--}
[ $# -gt 0 ] && shift
if [ "$BASE_URL" = - ]; then
  BASE_URL=$(python3 -c 'import json,sys; print("http://127.0.0.1:%d" % json.load(open(sys.argv[1]))["regions"][0]["api_port"])' "$CITYBOARD_HOME/state.json")
fi
BASE_URL=${BASE_URL%/}
VENV=${CITYBOARD_VENV:-$ROOT/.tools/venv}
ST="$VENV/bin/schemathesis"
[ -x "$ST" ] || { echo "$0: no schemathesis at $ST (run deploy/install.sh base)" >&2; exit 2; }
BIN=${REGION_CORE_BIN:-$ROOT/target/debug/region-core}
[ -x "$BIN" ] || { echo "$0: no region-core binary at $BIN (cargo build -p region-core)" >&2; exit 2; }
STATE="$CITYBOARD_HOME/state.json"

# Region and host from the state file: the region whose api_port is ours.
read -r REGION HOST CITY OPERATOR_PORT < <(python3 - "$STATE" "$BASE_URL" <<'PY'
import json, sys, urllib.parse
state = json.load(open(sys.argv[1]))
port = urllib.parse.urlparse(sys.argv[2]).port
for r in state["regions"]:
    if r["api_port"] == port:
        cities = [c for s in r["shards"] for c in s["cities"]]
        if not cities:
            sys.exit(f"region {r['name']} serves no city")
        print(r["name"], f"{cities[0]}.{state['apex']}", cities[0], r["operator_port"])
        break
else:
    sys.exit(f"no region of {sys.argv[1]} has api_port {port}")
PY
)

echo "== demo posts for $REGION"
"$BIN" setup --state "$STATE" --region "$REGION" --demo

REPORT_DIR=${SCHEMATHESIS_REPORT_DIR:-$CITYBOARD_HOME/schemathesis}
mkdir -p "$REPORT_DIR"
export CITYBOARD_ST_BASE_URL="$BASE_URL" CITYBOARD_ST_HOST="$HOST" CITYBOARD_ST_CITY="$CITY"
export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$HERE/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
# Requests answered per (route, method, status), from the api's /metrics
# (on its operator listener).
snapshot() { curl -fsS "http://127.0.0.1:$OPERATOR_PORT/metrics" > "$1"; }
snapshot "$REPORT_DIR/metrics.before"

echo "== schemathesis against $BASE_URL (Host: $HOST)"
cd "$REPORT_DIR"
status=0
"$ST" --config-file "$HERE/schemathesis/schemathesis.toml" run "$BASE_URL/openapi.json" \
  --url "$BASE_URL" \
  --header "Host: $HOST" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" \
  --seed "${SCHEMATHESIS_SEED:-20261123}" \
  --request-timeout 30 \
  --report junit \
  --report-dir "$REPORT_DIR" \
  "$@" || status=$?

# Every operation of the document answered 2xx (or a form's 303) at least
# once during the run: schemathesis alone would pass an api that only ever
# says 4xx.
snapshot "$REPORT_DIR/metrics.after"
curl -fsS "$BASE_URL/openapi.json" > "$REPORT_DIR/openapi.json"
python3 - "$REPORT_DIR" <<'PY' || status=1
import json, re, sys
d = sys.argv[1]
line = re.compile(r'^cityboard_http_requests_total\{route="([^"]*)",method="([^"]*)",status="(\d+)"\} (\d+)$')
def load(name):
    out = {}
    for l in open(f"{d}/{name}"):
        m = line.match(l.strip())
        if m:
            out[(m[1], m[2], int(m[3]))] = int(m[4])
    return out
before, after = load("metrics.before"), load("metrics.after")
doc = json.load(open(f"{d}/openapi.json"))
# A 2xx of these needs what schemathesis cannot make yet: an upload token
# from the owner's photos page and real image bytes (and, for /media, a
# stored photo). Their success paths are tested in region-core/tests/
# photos.rs; schemathesis still checks every answer they give against the
# document and that none is a 5xx. (Issue 29 asks for uploads here too.)
NOT_YET_2XX = {("POST", "/post/{id}/photos"), ("GET", "/media/{post}/{photo}/{file}")}
missing = []
for path, item in doc["paths"].items():
    for method in item:
        if method not in ("get", "post", "put", "delete", "patch"):
            continue
        ok = sum(n - before.get(k, 0) for k, n in after.items()
                 if k[0] == path and k[1] == method.upper() and (200 <= k[2] < 300 or k[2] == 303))
        print(f"  {method.upper():6} {path:16} 2xx answers during the run: {ok}")
        if ok == 0 and (method.upper(), path) not in NOT_YET_2XX:
            missing.append(f"{method.upper()} {path}")
if missing:
    sys.exit("operations that never answered 2xx: " + ", ".join(missing))
PY
if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: FAILED (reports in $REPORT_DIR)" >&2
  exit "$status"
fi
echo "schemathesis.sh: passed (reports in $REPORT_DIR)"
