//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/*`) through the
//! same entry points the fuzz targets call, as ordinary tests, so that every
//! input that once found a bug (and every seed) is checked on stable Rust.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "{}: empty corpus", dir.display());
    for path in &entries {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        run(&data);
    }
    println!("{target}: {} inputs replayed", entries.len());
}

#[test]
fn host_name_corpus() {
    replay("host_name", geo_router::fuzzing::host_name);
}

#[test]
fn dns_request_corpus() {
    replay("dns_request", geo_router::fuzzing::dns_request);
}

#[test]
fn range_table_corpus() {
    replay("range_table", geo_router::fuzzing::range_table);
}
