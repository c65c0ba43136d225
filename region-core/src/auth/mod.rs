//! Accounts: password hashing, signed session tokens, CSRF tokens.
//!
//! Sessions are short-lived access tokens signed with the key every region
//! shares (`session.key`), so any region verifies one on its own; the only
//! lookup per request is the revocation check in the region's catalog.

pub mod csrf;
pub mod device;
pub mod password;
pub mod session;
pub mod upload;

pub use password::Passwords;
pub use session::{Claims, SessionKey, TokenError};
