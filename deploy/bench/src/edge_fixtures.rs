//! What the edge benchmarks serve: the 20 KB page, the minimal JavaScript
//! Worker (its workerd config is `edge::workerd::js_worker`), and nginx's
//! config for the same answers.

use std::path::Path;

/// The page's size.
pub const PAGE_BYTES: usize = 20 * 1024;

/// The minimal JavaScript Worker: the same two answers with nothing else.
/// It keeps KV's answer for a second in the isolate, as the Rust Worker
/// does by default (`PAGE_CACHE_MS`), so both do the same work per request.
pub const JS_WORKER: &str = r#"
const kept = new Map();
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path.startsWith("/post/")) {
      const id = path.slice(6);
      let hit = kept.get(id);
      if (hit === undefined || Date.now() - hit.at >= 1000) {
        const { value, metadata } = await env.PAGES.getWithMetadata("post:" + id, "arrayBuffer");
        if (value === null) return new Response("not in KV", { status: 404 });
        hit = { value, metadata, at: Date.now() };
        kept.set(id, hit);
      }
      return new Response(hit.value, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "etag": `"p${id}v${hit.metadata.version}"`,
          "cache-control": "public, max-age=60",
        },
      });
    }
    return new Response(null, {
      status: 302,
      headers: { "location": "http://newyork.cityboard.localhost/", "cache-control": "private, no-store" },
    });
  },
};
"#;

/// A 20 KB HTML page shaped like a rendered post.
pub fn page_html() -> String {
    let mut page = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Vintage oak desk - New York - cityboard</title></head><body><main><h1>Vintage oak desk</h1>",
    );
    let mut n = 0;
    while page.len() < PAGE_BYTES {
        page.push_str(&format!(
            "<p>Paragraph {n}: solid oak, three drawers, pick up in Brooklyn, cash only.</p>"
        ));
        n += 1;
    }
    page.truncate(PAGE_BYTES - 22);
    page.push_str("</main></body></html>\n");
    page
}

pub fn nginx_config(prefix: &Path, port: u16, etag: &str) -> String {
    // One worker, like workerd's one thread.
    super::nginx::config(
        prefix,
        1,
        port,
        &format!(
            r#"    location /post/ {{
      default_type "text/html; charset=utf-8";
      etag off;
      add_header ETag '{etag}';
      add_header Cache-Control "public, max-age=60";
    }}
    location = / {{
      add_header Cache-Control "private, no-store" always;
      return 302 http://newyork.cityboard.localhost/;
    }}"#
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_20_kb_of_html() {
        let page = page_html();
        assert_eq!(page.len(), PAGE_BYTES);
        assert!(page.ends_with("</html>\n"));
    }
}
