//! Embeds the compact city database (geo-router `compile` output) in the
//! Worker: the file named by `CITYBOARD_EDGE_MMDB` is copied to
//! `OUT_DIR/cities.mmdb`, which `src/geo.rs` includes with `include_bytes!`.
//! Unset (or empty), an empty file is written: the Worker then has no IP
//! lookup and sends visitors the `cf` object cannot place to the city picker.
//! A path that is set but unreadable fails the build, so a deployment never
//! ships without the database it asked for.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=CITYBOARD_EDGE_MMDB");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("cities.mmdb");
    let source = std::env::var_os("CITYBOARD_EDGE_MMDB").filter(|s| !s.is_empty());
    match source {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "CITYBOARD_EDGE_MMDB={}: cannot read it: {e}",
                    path.display()
                )
            });
            std::fs::write(&out, bytes).expect("write OUT_DIR/cities.mmdb");
        }
        None => std::fs::write(&out, b"").expect("write OUT_DIR/cities.mmdb"),
    }
}
