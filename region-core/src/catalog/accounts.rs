//! What an account command changes in a region's catalog. The home
//! region's api calls this as soon as the command is produced (so the
//! change holds there at once), and every region's writer calls it again
//! when the command arrives on its topic: it is idempotent, so both, and
//! any replay after a crash, end in the same rows.

use sqlx::PgPool;

use crate::model::{AccountCommand, AccountKind};

/// Records `command` in `catalog`: a revoked session, or a deleted account
/// (every session of it refused; the `users` row, in the home region's
/// catalog only, marked deleted so it can no longer log in).
pub async fn apply(catalog: &PgPool, command: &AccountCommand) -> Result<(), sqlx::Error> {
    match &command.kind {
        AccountKind::RevokeSession {
            user_id,
            jti,
            expires_at,
        } => {
            sqlx::query(
                "INSERT INTO revoked_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(user_id)
            .bind(expires_at)
            .execute(catalog)
            .await?;
        }
        AccountKind::DeleteAccount {
            user_id,
            sessions_expire_by,
        } => {
            let mut tx = catalog.begin().await?;
            sqlx::query(
                "INSERT INTO revoked_users (user_id, revoked_at, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id) DO UPDATE
                 SET expires_at = greatest(revoked_users.expires_at, EXCLUDED.expires_at)",
            )
            .bind(user_id)
            .bind(command.created_at)
            .bind(sessions_expire_by)
            .execute(&mut *tx)
            .await?;
            // No row outside the home region: nothing to do there.
            sqlx::query("UPDATE users SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                .bind(user_id)
                .bind(command.created_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
    }
    Ok(())
}
