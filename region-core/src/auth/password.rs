//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB,
//! 2 passes, 1 lane, OWASP's recommendation).
//!
//! Hashing is deliberately slow and memory-hungry, so it runs on the
//! blocking pool behind a semaphore: a burst of log-ins waits its turn
//! instead of starving the async workers or allocating unbounded memory.
//! The wait is bounded: past it the request is refused (`Busy`, a 429), so
//! a flood of log-ins cannot push every other log-in past the edge's
//! timeout in a queue that only grows.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The hasher of a process.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    /// Longest a request waits for a permit.
    wait: Duration,
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
            wait: Duration::from_secs(2),
            dummy: Arc::new(dummy),
        })
    }

    /// The same hasher, waiting at most `wait` for a slot.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HashError> {
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(HashError::Failed(e.into())),
            Err(_) => Err(HashError::Busy),
        }
    }

    /// The production parameters (argon2's defaults).
    pub fn standard(parallel: usize) -> anyhow::Result<Self> {
        Self::new(Params::default(), parallel)
    }

    /// The PHC string (salt and parameters included) for `password`.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        let _permit = self.permit().await?;
        tokio::task::spawn_blocking(move || hash_with(&params, &password))
            .await
            .map_err(anyhow::Error::from)?
            .map_err(HashError::Failed)
    }

    /// Whether `password` matches `stored`; with `None` (no such user) it
    /// verifies against the dummy hash and answers false, taking as long.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.as_ref().clone());
        let _permit = self.permit().await?;
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(anyhow::Error::from)?;
        Ok(ok && known)
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot stayed busy for the whole wait.
    #[error("every password-hash slot is busy")]
    Busy,
    /// The hasher itself failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
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

    #[tokio::test]
    async fn a_wait_for_a_slot_past_its_bound_is_refused_not_queued() {
        let p = light().with_wait(Duration::from_millis(20));
        let _both = p.permits.acquire_many(2).await.unwrap();
        assert!(matches!(
            p.verify("correct horse".into(), None).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(p.hash("x".into()).await, Err(HashError::Busy)));
    }
}
