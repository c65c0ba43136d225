#!/usr/bin/env bash
# Validates the rendered Kubernetes manifests offline: every core object
# (Namespace, ConfigMap, Service, StatefulSet, Deployment, HPA, PDB,
# NetworkPolicy) of the golden renderings against the Kubernetes schemas
# that kubernetes-validate ships (strict: an unknown field is an error).
# The golden files are what the renderer writes (deploy/tests/render.rs
# proves it), so this validates the renderer's output. The Prometheus
# Operator's objects (ServiceMonitor, PrometheusRule) are validated against
# the schemas of npm @kubernetes-models/prometheus-operator
# (validate-monitoring.mjs). The CloudNativePG and Strimzi objects have no
# schema in either; they are held by the golden files and the CRD versions
# and fields listed in deploy/README.md.
#
# Usage: deploy/render/validate.sh [DIR...]   (default: deploy/render/golden)
# Seconds; needs deploy/install.sh base (kubernetes-validate in .tools/venv,
# the npm models in .tools/node_modules) and node.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The Kubernetes version the manifests target (deploy/README.md).
KUBERNETES_VERSION=1.31.0
VALIDATE="${KUBERNETES_VALIDATE:-$ROOT/.tools/venv/bin/kubernetes-validate}"
if [ ! -x "$VALIDATE" ]; then
  echo "validate.sh: $VALIDATE is missing: run deploy/install.sh base" >&2
  exit 1
fi
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=("$ROOT/deploy/render/golden")
mapfile -t files < <(find "${dirs[@]}" -name '*.yaml' | sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "validate.sh: no manifests under ${dirs[*]}" >&2
  exit 1
fi
# --no-warn: the custom resources' "no schema" warnings (see above).
"$VALIDATE" --strict --quiet --no-warn -k "$KUBERNETES_VERSION" "${files[@]}"
echo "validate.sh: ${#files[@]} files valid against Kubernetes $KUBERNETES_VERSION"
node "$ROOT/deploy/render/validate-monitoring.mjs" "$ROOT/.tools" "${files[@]}"
