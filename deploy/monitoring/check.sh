#!/usr/bin/env bash
# Checks the region's alert rules and dashboard (issue 29, acceptance 4), in
# seconds and without a stack:
#   1. promtool check rules alerts.yml
#   2. promtool test rules alerts_test.yml, which has, for every alert, a case
#      where it fires and one where it does not (checked here too)
#   3. every query of grafana/region.json parses as PromQL (promtool checks
#      them as recording rules)
#   4. every metric the rules and the dashboard name is one region-core
#      serves: tests/fixtures/metric-names.txt, which tests/tests/metric_names.rs
#      holds equal to the real /metrics of every role
# promtool comes from Debian's prometheus package (deploy/install.sh base).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALERTS="$HERE/alerts.yml"
TESTS="$HERE/alerts_test.yml"
DASHBOARD="$HERE/grafana/region.json"
FIXTURE="$ROOT/tests/fixtures/metric-names.txt"

fail() { echo "monitoring check: $*" >&2; exit 1; }

command -v promtool >/dev/null 2>&1 ||
  fail "promtool not found: it comes with Debian's prometheus package; run deploy/install.sh base"
command -v jq >/dev/null 2>&1 || fail "jq not found (apt-get install jq)"

echo "-- promtool check rules $(basename "$ALERTS")"
promtool check rules "$ALERTS"

echo "-- promtool test rules $(basename "$TESTS")"
(cd "$HERE" && promtool test rules "$(basename "$TESTS")")

# Each alert of the rules, and for each whether the tests expect it to fire
# (non-empty exp_alerts) and not to fire (`exp_alerts: []`) somewhere.
echo "-- every alert has a firing and a quiet case"
alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' "$ALERTS")
[ -n "$alerts" ] || fail "no alerts found in $ALERTS"
cases=$(awk '
  /^ *alertname:/ { name = $2 }
  /^ *exp_alerts: *\[\] *$/ { print name, "quiet"; next }
  /^ *exp_alerts: *$/ { print name, "fires" }
' "$TESTS" | sort -u)
for a in $alerts; do
  grep -qx "$a fires" <<<"$cases" || fail "$TESTS has no case where $a fires"
  grep -qx "$a quiet" <<<"$cases" || fail "$TESTS has no case where $a does not fire"
done

echo "-- the dashboard's queries parse"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jq -e '.panels | length > 0' "$DASHBOARD" >/dev/null || fail "$DASHBOARD has no panels"
{
  echo "groups:"
  echo "  - name: dashboard"
  echo "    rules:"
  # Grafana's own variables become what they stand for.
  jq -r '.panels[].targets[]?.expr' "$DASHBOARD" |
    sed 's/\$__rate_interval/5m/g; s/\$__interval/1m/g' |
    awk '{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "      - record: dashboard:query%d\n        expr: \"%s\"\n", NR, $0 }'
} >"$tmp/dashboard-rules.yml"
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null ||
  { promtool check rules "$tmp/dashboard-rules.yml" || true; fail "a query of $DASHBOARD does not parse"; }

echo "-- every metric named is served (tests/fixtures/metric-names.txt)"
# The series names a scraper sees: a counter as `…_total`, a histogram as
# its `_bucket`, `_sum` and `_count`, anything else as itself.
awk '!/^#/ && NF == 3 {
  name = $2
  if ($3 == "counter") { sub(/_total$/, "", name); print name "_total" }
  else if ($3 == "histogram") { print name "_bucket"; print name "_sum"; print name "_count" }
  else print name
}' "$FIXTURE" | sort -u >"$tmp/served"
{
  grep -v '^ *#' "$ALERTS"
  jq -r '.panels[].targets[]?.expr' "$DASHBOARD"
} | grep -o 'cityboard_[a-z0-9_]*' | sort -u >"$tmp/named"
[ -s "$tmp/named" ] || fail "no metric named in the rules or the dashboard"
missing=$(comm -23 "$tmp/named" "$tmp/served")
[ -z "$missing" ] || fail "named by the rules or the dashboard but not served (not in $FIXTURE):
$missing"
echo "monitoring check: ok ($(wc -l <"$tmp/named") metrics named, all served)"
