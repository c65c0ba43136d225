//! The stack's secrets: generated once by `up` into `secrets/`, mode 0600,
//! never committed. Each purpose has its own key, so that a leaked session
//! key cannot sign forwarded requests and the other way round.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use rand::RngCore;

use crate::home::Home;

/// File names of the generated secrets and what each is for.
pub const SECRETS: &[(&str, &str)] = &[
    (
        "edge-forward.key",
        "HMAC key the edge signs forwarded requests with",
    ),
    (
        "edge-forward.previous.key",
        "the previous forward key, accepted during rotation",
    ),
    (
        "kv-route.key",
        "HMAC key of the edge's internal bulk KV route",
    ),
    ("session.key", "key that signs session access tokens"),
    (
        "operator.token",
        "bearer token of operator endpoints (DELETE /old_posts)",
    ),
    (
        "edge-kv.key",
        "bearer key of the edge's KV service (workerd presents it)",
    ),
    (
        "redis.password",
        "password every Redis of the stack requires (requirepass)",
    ),
    (
        "pg-postgres.password",
        "Postgres superuser: cityboard, region-core setup, shard-tool",
    ),
    ("pg-cb_api.password", "Postgres login of the api"),
    ("pg-cb_writer.password", "Postgres login of the writer"),
    ("pg-cb_relay.password", "Postgres login of the relay"),
    (
        "pg-cb_publisher.password",
        "Postgres login of the publisher",
    ),
    ("pg-cb_janitor.password", "Postgres login of the janitor"),
    (
        "pg-cb_replication.password",
        "Postgres login of replicas and city moves (REPLICATION)",
    ),
];

/// A secret file's text, trimmed (the bytes a key is made of).
pub fn read_secret(secrets_dir: &Path, file: &str) -> Result<String> {
    let path = secrets_dir.join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Writes a file that only its owner may read, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Creates every missing secret; existing ones are kept, so that sessions
/// and signatures stay valid across `down` and `up`.
pub fn ensure(home: &Home) -> Result<()> {
    let dir = home.secrets_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    for (name, _) in SECRETS {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{}", hex::encode(bytes))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        ensure(&home).unwrap();
        let key = home.secrets_dir().join("session.key");
        let first = std::fs::read_to_string(&key).unwrap();
        assert_eq!(first.trim().len(), 64);
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        ensure(&home).unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), first);
    }
}
