//! The stack's secrets: generated once by `up` into `secrets/`, mode 0600,
//! never committed. Each purpose has its own key, so that a leaked session
//! key cannot sign forwarded requests and the other way round.
//!
//! The previous forwarding key is not generated: it exists only during a
//! rotation, which the operator starts by moving `edge-forward.key` to
//! `edge-forward.previous.key` and writing `edge-forward.previous.expires`
//! (README, Security).

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

/// The previous forwarding key and its expiry: region-core reads them
/// (`Secrets::read`), so its names are the ones.
pub use region_core::stack::{PREVIOUS_EXPIRES_FILE, PREVIOUS_KEY_FILE};

/// Creates `dir` if need be, readable by its owner only.
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Creates `path` (never over an existing file) with `line`, readable by
/// its owner only.
fn create_private(path: &Path, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}

/// Creates every missing secret; existing ones are kept, so that sessions
/// and signatures stay valid across `down` and `up`.
pub fn ensure(home: &Home) -> Result<()> {
    let dir = home.secrets_dir();
    private_dir(&dir)?;
    expire_unexpiring_previous_key(&dir)?;
    for (name, _) in SECRETS {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        create_private(&path, &hex::encode(bytes))?;
    }
    Ok(())
}

/// A home made before the previous forwarding key became optional has one
/// that `up` generated at random (nothing ever signed with it) and no
/// expiry, which the api would refuse to start with. It is given an expiry
/// of now, so that it is refused like an absent one, rather than deleted:
/// the file is the operator's to remove.
fn expire_unexpiring_previous_key(dir: &Path) -> Result<()> {
    let expires = dir.join(PREVIOUS_EXPIRES_FILE);
    if !dir.join(PREVIOUS_KEY_FILE).exists() || expires.exists() {
        return Ok(());
    }
    create_private(
        &expires,
        &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
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
        // No previous key is made: no rotation is under way.
        assert!(!home.secrets_dir().join(PREVIOUS_KEY_FILE).exists());
        assert!(!home.secrets_dir().join(PREVIOUS_EXPIRES_FILE).exists());
    }

    #[test]
    fn an_old_homes_previous_key_gets_an_expiry_of_now() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        let secrets = home.secrets_dir();
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join(PREVIOUS_KEY_FILE), "ab".repeat(32)).unwrap();
        let before = chrono::Utc::now() - chrono::Duration::seconds(1);
        ensure(&home).unwrap();
        let text = std::fs::read_to_string(secrets.join(PREVIOUS_EXPIRES_FILE)).unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(text.trim()).unwrap();
        assert!(at >= before && at <= chrono::Utc::now(), "{text}");
        // One given by the operator is kept.
        std::fs::write(
            secrets.join(PREVIOUS_EXPIRES_FILE),
            "2099-01-01T00:00:00Z\n",
        )
        .unwrap();
        ensure(&home).unwrap();
        assert_eq!(
            std::fs::read_to_string(secrets.join(PREVIOUS_EXPIRES_FILE)).unwrap(),
            "2099-01-01T00:00:00Z\n"
        );
    }
}
