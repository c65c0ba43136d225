# Serves the built edge Worker (edge/build/, from deploy/build-edge.sh) under
# bare workerd: the local stack's edge runtime (deploy/run-edge.sh PORT).
#
#   workerd serve edge/workerd.capnp --socket-addr http=127.0.0.1:PORT
#
# The port below is only a default; run-edge.sh overrides it with --socket-addr.
# Paths in `embed` are relative to this file.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "edge", worker = .edge) ],
  sockets = [
    ( name = "http",
      address = "127.0.0.1:8787",
      service = "edge",
      # Locally there is no Cloudflare in front to fill `request.cf`: a request
      # may carry it as JSON in this header (tests inject country/city this way,
      # design §7). Only ever bound to loopback.
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
);
