//! Production renderings of a topology: Kubernetes manifests
//! ([`k8s`]) for the regions and, from the same topology, the edge's
//! configuration for Cloudflare (`render wrangler`).
//!
//! Rendering is pure (topology + values in, files out) and every input is
//! checked before anything is written, so a mistake leaves the output
//! directory as it was.

pub mod k8s;
pub mod values;
pub mod wrangler;
pub mod yaml;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One output file: its path relative to the output directory and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative path, e.g. `us-east/postgres.yaml`.
    pub path: PathBuf,
    /// Full text.
    pub text: String,
}

/// Writes `files` under `out`, creating directories as needed.
pub fn write_files(out: &Path, files: &[RenderedFile]) -> Result<()> {
    for file in files {
        let path = out.join(&file.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
