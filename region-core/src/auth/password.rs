//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB,
//! 2 passes, 1 lane, OWASP's recommendation).
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the
//! blocking pool behind a semaphore: a burst of log-ins queues instead of
//! starving the async workers or allocating unbounded memory.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The hasher of a process.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password with the same parameters: an unknown
    /// user's log-in is verified against it, so it takes as long as a wrong
    /// password does and cannot be told apart by timing.
    dummy: Arc<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", &self.params)
            .finish()
    }
}

impl Passwords {
    /// `params` are argon2id's; `parallel` bounds hashes running at once.
    pub fn new(params: Params, parallel: usize) -> anyhow::Result<Self> {
        let dummy = hash_with(&params, &hex::encode(rand::random::<[u8; 16]>()))?;
        Ok(Passwords {
            params,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    /// The production parameters (argon2's defaults).
    pub fn standard(parallel: usize) -> anyhow::Result<Self> {
        Self::new(Params::default(), parallel)
    }

    /// The PHC string (salt and parameters included) for `password`.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let params = self.params.clone();
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || hash_with(&params, &password)).await?
    }

    /// Whether `password` matches `stored`; with `None` (no such user) it
    /// verifies against the dummy hash and answers false, taking as long.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.as_ref().clone());
        let _permit = self.permits.acquire().await?;
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await?;
        Ok(ok && known)
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn light() -> Passwords {
        Passwords::new(Params::new(1024, 1, 1, None).unwrap(), 2).unwrap()
    }

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let p = light();
        let h = p.hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            p.verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong horse".into(), Some(h)).await.unwrap());
        assert!(!p.verify("correct horse".into(), None).await.unwrap());
    }
}
