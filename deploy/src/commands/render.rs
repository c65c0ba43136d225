//! `cityboard render k8s|wrangler`: the topology as production
//! configuration. Both files are read and checked before anything is
//! written, and a mistake in either exits 2 with `file:line: what`.

use std::path::Path;

use anyhow::{Context, Result};

use crate::render::values::Values;
use crate::render::{k8s, wrangler, write_files};
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

/// Renders the Worker's wrangler configuration into `out` (normally
/// `edge/wrangler.toml`), each city in the region the `catalogs` place it
/// in (the topology's when none is given), and prints the secrets each
/// environment needs.
pub async fn wrangler(
    topology_path: &Path,
    values_path: &Path,
    catalogs: &[String],
    out: &Path,
) -> Result<()> {
    let topology = Topology::load(topology_path)?;
    let values = Values::load(values_path)?;
    let placements = wrangler::Placements::read(catalogs).await?;
    placements.check(&topology, topology_path)?;
    let text = wrangler::render(&topology, &values, &placements)?;
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    for env in wrangler::DEPLOYED {
        for (secret, what) in wrangler::SECRETS {
            println!("  wrangler secret put {secret} --env {env}   # {what}");
        }
    }
    Ok(())
}
