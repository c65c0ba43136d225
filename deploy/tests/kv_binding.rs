//! `cityboard edge-kv` behind a real workerd `kvNamespace` binding: a tiny
//! JavaScript Worker calls `env.PAGES.put/get/getWithMetadata/list/delete`
//! with metadata and `expirationTtl`, so the wire protocol is proven
//! against the runtime itself, not against our reading of its source.
//! Then the service is restarted and the Worker reads what it wrote.
//!
//! Needs workerd (`deploy/install.sh edge`); fails, never skips, without it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cityboard_deploy::{edge, http};
use serde_json::{Value, json};

const WORKER: &str = r#"
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/write") {
      await env.PAGES.put("post:1", "<h1>one</h1>", { metadata: { version: 3, city: "newyork" } });
      await env.PAGES.put("post:2", "two", { metadata: { version: 1, gone: true }, expirationTtl: 120 });
      await env.PAGES.put("post:3", "three");
      await env.PAGES.put("route:new york/ü", JSON.stringify({ region: "us-east" }));
      let refused = null;
      try {
        await env.PAGES.put("post:4", "x", { expirationTtl: 10 });
      } catch (e) {
        refused = String(e);
      }
      return Response.json({ refused });
    }
    if (path === "/read") {
      const withMeta = await env.PAGES.getWithMetadata("post:1");
      const noMeta = await env.PAGES.getWithMetadata("post:3");
      const missing = await env.PAGES.getWithMetadata("post:404");
      const route = await env.PAGES.get("route:new york/ü", "json");
      const list = await env.PAGES.list({ prefix: "post:" });
      const first = await env.PAGES.list({ prefix: "post:", limit: 2 });
      const rest = await env.PAGES.list({ prefix: "post:", limit: 2, cursor: first.cursor });
      const bulk = Object.fromEntries(await env.PAGES.get(["post:1", "nope"]));
      return Response.json({ withMeta, noMeta, missing, route, list, first, rest, bulk });
    }
    if (path === "/stream") {
      const body = await env.PAGES.get("post:1", "stream");
      return new Response(body, { headers: { "content-type": "text/html" } });
    }
    if (path === "/delete") {
      await env.PAGES.delete("post:1");
      return Response.json({ after: await env.PAGES.get("post:1") });
    }
    return new Response("no such test route", { status: 404 });
  },
};
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_kv(dir: &Path, port: u16) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_cityboard"))
            .arg("edge-kv")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting cityboard edge-kv"),
    )
}

async fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json(port: u16, path: &str) -> Value {
    let r = http::request(port, "GET", path, &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.text()))
}

#[tokio::test]
async fn a_javascript_worker_uses_the_service_through_its_kv_binding() {
    let scratch = tempfile::tempdir().unwrap();
    let kv_dir = scratch.path().join("kv");
    let kv_port = free_port();
    let edge_port = free_port();
    std::fs::write(scratch.path().join("worker.js"), WORKER).unwrap();
    std::fs::write(
        scratch.path().join("test.capnp"),
        edge::workerd::js_worker(
            &format!("127.0.0.1:{edge_port}"),
            &format!("127.0.0.1:{kv_port}"),
            "worker.js",
        ),
    )
    .unwrap();
    let workerd = edge::workerd_bin().expect("workerd (deploy/install.sh edge)");
    let kv = start_kv(&kv_dir, kv_port);
    let _workerd = Killed(
        Command::new(workerd)
            .arg("serve")
            .arg(scratch.path().join("test.capnp"))
            .spawn()
            .expect("starting workerd"),
    );
    wait_port(kv_port, "edge-kv").await;
    wait_port(edge_port, "workerd").await;

    let wrote = get_json(edge_port, "/write").await;
    let refused = wrote["refused"].as_str().expect("a 10 s TTL is refused");
    assert!(refused.contains("400"), "{refused}");

    let read = get_json(edge_port, "/read").await;
    assert_eq!(read["withMeta"]["value"], "<h1>one</h1>", "{read:#}");
    assert_eq!(
        read["withMeta"]["metadata"],
        json!({"version": 3, "city": "newyork"})
    );
    assert_eq!(read["noMeta"]["value"], "three");
    assert_eq!(read["noMeta"]["metadata"], Value::Null);
    assert_eq!(read["missing"]["value"], Value::Null);
    assert_eq!(read["route"], json!({"region": "us-east"}));
    let names: Vec<&str> = read["list"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["post:1", "post:2", "post:3"]);
    assert_eq!(read["list"]["list_complete"], true);
    // Metadata reaches the Worker as an object, expiration as unix seconds.
    let post2 = &read["list"]["keys"][1];
    assert_eq!(post2["metadata"], json!({"version": 1, "gone": true}));
    let expiration = post2["expiration"].as_i64().expect("expiration");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 100..=now + 125).contains(&expiration),
        "{expiration} vs {now}"
    );
    assert_eq!(read["first"]["keys"].as_array().unwrap().len(), 2);
    assert_eq!(read["first"]["list_complete"], false);
    assert_eq!(read["rest"]["keys"][0]["name"], "post:3");
    assert_eq!(read["rest"]["list_complete"], true);
    assert_eq!(
        read["bulk"],
        json!({"post:1": "<h1>one</h1>", "nope": null})
    );

    let streamed = http::request(edge_port, "GET", "/stream", &[], b"")
        .await
        .unwrap();
    assert_eq!(streamed.body, b"<h1>one</h1>");

    // A restart of the service: what was written is still there.
    drop(kv);
    let _kv = start_kv(&kv_dir, kv_port);
    wait_port(kv_port, "edge-kv after a restart").await;
    let read = get_json(edge_port, "/read").await;
    assert_eq!(read["withMeta"]["metadata"]["version"], 3, "{read:#}");
    assert_eq!(read["list"]["keys"].as_array().unwrap().len(), 3);

    let deleted = get_json(edge_port, "/delete").await;
    assert_eq!(deleted["after"], Value::Null);
}
