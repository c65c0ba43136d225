// Validates the rendered Prometheus Operator objects (ServiceMonitor,
// PrometheusRule) of the given YAML files against the schemas that
// @kubernetes-models/prometheus-operator ships (the operator's CRDs as JSON
// schemas). kubernetes-validate knows only core Kubernetes, so
// deploy/render/validate.sh runs this beside it.
//
// Usage: node validate-monitoring.mjs TOOLS_DIR FILE...
// TOOLS_DIR is the repo's .tools (the npm packages, deploy/install.sh base).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [tools, ...files] = process.argv.slice(2);
const load = (rel) => import(pathToFileURL(join(tools, "node_modules", rel)).href);
const YAML = await load("yaml/dist/index.js");
const models = {
  ServiceMonitor: (await load("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js")).ServiceMonitor,
  PrometheusRule: (await load("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js")).PrometheusRule,
};

let checked = 0;
let failed = 0;
for (const file of files) {
  for (const doc of YAML.parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      console.error(`${file}: not YAML: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const object = doc.toJS();
    if (object?.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Model = models[object.kind];
    if (!Model) {
      console.error(`${file}: ${object.kind} has no schema here`);
      failed++;
      continue;
    }
    try {
      new Model(object).validate();
      checked++;
    } catch (e) {
      console.error(`${file}: ${object.kind} ${object.metadata?.name}: ${e.message}`);
      failed++;
    }
  }
}
if (failed > 0) process.exit(1);
if (checked === 0) {
  console.error("validate-monitoring: no ServiceMonitor or PrometheusRule found");
  process.exit(1);
}
console.log(`validate-monitoring: ${checked} Prometheus Operator objects valid`);
