//! Where object storage is, from a location an operator writes: a local
//! directory by default, any `object_store` URL (`s3://bucket/prefix` in a
//! build with the `s3` feature) by configuration. The archive and the
//! photos both open theirs here.

use std::sync::Arc;

use anyhow::Context;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

/// The store at `location` and the prefix within it: a directory
/// (`/var/lib/cityboard/photos` or `file:///...`, created if missing), or a
/// URL `object_store` knows (credentials from the usual environment, such
/// as `AWS_*`). `what` names it in errors.
pub fn open(location: &str, what: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let url = match url::Url::parse(location) {
        Ok(u) if u.scheme().len() > 1 => u,
        // No scheme (or a drive-letter-like one): a local directory.
        _ => {
            let dir = std::path::absolute(location)
                .with_context(|| format!("{what} directory {location}"))?;
            url::Url::from_directory_path(&dir)
                .map_err(|()| anyhow::anyhow!("{what} directory {location} is not absolute"))?
        }
    };
    if url.scheme() == "file" {
        let dir = url
            .to_file_path()
            .map_err(|()| anyhow::anyhow!("{what} URL {location} is not a local path"))?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the {what} directory {}", dir.display()))?;
    }
    let (store, prefix) = object_store::parse_url_opts(&url, std::env::vars())
        .with_context(|| format!("opening the {what} {}", crate::redact::url(location)))?;
    Ok((Arc::from(store), prefix))
}
