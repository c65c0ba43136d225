# Serves the built edge Worker (edge/build/, from deploy/build-edge.sh) under
# bare workerd by hand, outside a stack (deploy/run-edge.sh PORT):
#
#   target/debug/cityboard edge-kv --dir /tmp/edge-kv &      # PAGES, on 127.0.0.1:8788
#   CITYBOARD_EDGE_FORWARD_KEY=$(cat .cityboard/secrets/edge-forward.key) \
#     workerd serve edge/workerd.capnp --socket-addr http=127.0.0.1:PORT
#
# `cityboard up` does not use this file: it generates the same shape from the
# topology into <home>/run/edge.capnp (deploy/src/edge.rs), with the stack's
# ports. The bindings below are the default topology's (deploy/topology.toml,
# apis on 17103 and 17203). Paths in `embed` are relative to this file.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    # Bare workerd has no KV store: the binding talks HTTP to this service.
    (name = "kv", external = (address = "127.0.0.1:8788", http = ())),
    # The origins are on loopback, which workerd's default `internet` refuses.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    ( name = "http",
      address = "127.0.0.1:8787",
      service = "edge",
      # Locally there is no Cloudflare in front to fill `request.cf`: a request
      # may carry it as JSON in this header (design §7). Only ever bound to
      # loopback.
      http = (cfBlobHeader = "cf-blob"),
    ),
  ],
);

const edge :Workerd.Worker = (
  modules = [
    # worker-build's entry module; it imports "./index_bg.wasm".
    (name = "index.js", esModule = embed "build/index.js"),
    (name = "index_bg.wasm", wasm = embed "build/index_bg.wasm"),
  ],
  # Same as wrangler.toml. Must not be newer than the workerd in use.
  compatibilityDate = "2026-11-01",
  bindings = [
    (name = "PAGES", kvNamespace = "kv"),
    (name = "APEX", text = "cityboard.localhost"),
    (name = "CITIES", text = "[{\"slug\":\"newyork\",\"name\":\"New York\",\"country\":\"US\",\"lat\":40.71427,\"lon\":-74.00597,\"region\":\"us-east\"},{\"slug\":\"boston\",\"name\":\"Boston\",\"country\":\"US\",\"lat\":42.35843,\"lon\":-71.05977,\"region\":\"us-east\"},{\"slug\":\"philadelphia\",\"name\":\"Philadelphia\",\"country\":\"US\",\"lat\":39.95233,\"lon\":-75.16379,\"region\":\"us-east\"},{\"slug\":\"washington\",\"name\":\"Washington\",\"country\":\"US\",\"lat\":38.89511,\"lon\":-77.03637,\"region\":\"us-east\"},{\"slug\":\"london\",\"name\":\"London\",\"country\":\"GB\",\"lat\":51.50853,\"lon\":-0.12574,\"region\":\"eu-west\"},{\"slug\":\"paris\",\"name\":\"Paris\",\"country\":\"FR\",\"lat\":48.85341,\"lon\":2.3488,\"region\":\"eu-west\"},{\"slug\":\"berlin\",\"name\":\"Berlin\",\"country\":\"DE\",\"lat\":52.52437,\"lon\":13.41053,\"region\":\"eu-west\"},{\"slug\":\"amsterdam\",\"name\":\"Amsterdam\",\"country\":\"NL\",\"lat\":52.37403,\"lon\":4.88969,\"region\":\"eu-west\"}]"),
    (name = "ORIGINS", text = "{\"us-east\":\"http://127.0.0.1:17103\",\"eu-west\":\"http://127.0.0.1:17203\"}"),
    (name = "FORWARD_KEY", fromEnvironment = "CITYBOARD_EDGE_FORWARD_KEY"),
    (name = "KV_ROUTE_KEY", fromEnvironment = "CITYBOARD_EDGE_KV_ROUTE_KEY"),
  ],
  globalOutbound = "internet",
);
