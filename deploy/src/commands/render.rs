//! `cityboard render k8s|wrangler`: the topology as production
//! configuration. Both files are read and checked before anything is
//! written, and a mistake in either exits 2 with `file:line: what`.

use std::path::Path;

use anyhow::Result;

use crate::render::values::Values;
use crate::render::{k8s, write_files};
use crate::topology::Topology;

/// Renders the Kubernetes manifests of `topology_path` with `values_path`
/// into `out`, and prints what it wrote.
pub fn k8s(topology_path: &Path, values_path: &Path, out: &Path) -> Result<()> {
    let topology = Topology::load(topology_path)?;
    let values = Values::load(values_path)?;
    values.check(&topology, topology_path)?;
    let files = k8s::render(&topology, &values);
    write_files(out, &files)?;
    for file in &files {
        println!("{}", out.join(&file.path).display());
    }
    Ok(())
}
