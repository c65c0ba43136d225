//! Embeds the IPv4 range table (geo-router `range-table` output, made from
//! the compact city database by `deploy/build-edge.sh`) in the Worker: the
//! file named by `CITYBOARD_EDGE_RANGES` is copied to
//! `OUT_DIR/cities.ranges`, which `src/geo.rs` includes with
//! `include_bytes!`. The table rather than the compact mmdb because the
//! Worker only asks for the city of an address, and the table says exactly
//! that in an eighth of the gzip bytes the upload limit counts.
//!
//! Unset (or empty), an empty file is written: the Worker then has no IP
//! lookup and sends visitors the `cf` object cannot place to the city picker.
//! A path that is set but unreadable, or a file that is not a range table
//! (say, the mmdb itself), fails the build, so a deployment never ships
//! without the lookup it asked for. The table is fully validated when the
//! Worker first decodes it; the build only checks the magic.

use std::path::PathBuf;

/// First bytes of a range table (geo-router's `range_table::MAGIC`).
const MAGIC: &[u8] = b"CBRT";

fn main() {
    println!("cargo:rerun-if-env-changed=CITYBOARD_EDGE_RANGES");
    println!("cargo:rerun-if-env-changed=CITYBOARD_EDGE_MMDB");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("cities.ranges");
    let source = std::env::var_os("CITYBOARD_EDGE_RANGES").filter(|s| !s.is_empty());
    match source {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "CITYBOARD_EDGE_RANGES={}: cannot read it: {e}",
                    path.display()
                )
            });
            assert!(
                bytes.starts_with(MAGIC),
                "CITYBOARD_EDGE_RANGES={} is not a range table (make one with `geo-router range-table`)",
                path.display()
            );
            std::fs::write(&out, bytes).expect("write OUT_DIR/cities.ranges");
        }
        None => {
            // A build driven the old way would silently lose its lookup.
            if std::env::var_os("CITYBOARD_EDGE_MMDB").is_some_and(|s| !s.is_empty()) {
                println!(
                    "cargo:warning=CITYBOARD_EDGE_MMDB is set but the Worker embeds CITYBOARD_EDGE_RANGES (unset): no IP lookup; deploy/build-edge.sh makes both"
                );
            }
            std::fs::write(&out, b"").expect("write OUT_DIR/cities.ranges");
        }
    }
}
