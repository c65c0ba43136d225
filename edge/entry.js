// The Worker's entry module. deploy/build-edge.sh bundles it over
// worker-build's output (./worker-build.js there, with the names imported
// below exported by the script), into edge/build/index.js.
//
// Why not worker-build's own entry: worker-build 0.8.7 exports a Proxy
// around a WorkerEntrypoint class, so every request constructs that class,
// a Proxy for the instance with a fresh handler object, and a Proxy with an
// async wrapper for `fetch`. The redirect ran 19-29 % faster without them
// (BENCHMARKS.md, edge round 6). This plain module object, the shape of the
// JavaScript baseline, calls Rust directly.
//
// Two Rust exports: `answerNow` answers synchronously what needs no I/O
// (the apex, a page kept in the isolate, errors the request alone decides)
// and returns undefined for the rest, which the async `fetch` serves. A
// synchronous answer skips the future, the promise and the microtask turn
// an async export costs even when it awaits nothing (BENCHMARKS.md, edge
// rounds 7 and 8). A fetch handler may return a Response or a promise of
// one.
//
// Recovery from a panic stays as it was: the wasm-bindgen glue's call
// guard starts a fresh instance on the next call after a panic, and, as
// worker-build's entry does, a wasm trap that escapes it marks the instance
// broken here and the next request resets it before it runs (test
// `a_panic_resets_the_wasm_instance_and_the_next_request_is_answered`).
import {
  answerNow,
  checkReinitialize,
  handleMaybeCritical,
  wasmFetch,
} from "./worker-build.js";

function critical(e) {
  handleMaybeCritical(e);
  throw e;
}

export default {
  fetch(request, env, ctx) {
    checkReinitialize();
    try {
      return answerNow(request, env) ?? wasmFetch(request, env, ctx).catch(critical);
    } catch (e) {
      return critical(e);
    }
  },
};
