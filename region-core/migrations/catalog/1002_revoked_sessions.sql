-- Sessions revoked before they expire (log-out now; password change and
-- account deletion later). Access tokens are verified without a lookup of
-- the user, so this table is the only way to end one early: every
-- authenticated request checks its token id here.
--
-- A row matters only until the token it names would have expired anyway;
-- the janitor deletes older rows (index on expires_at), which keeps the
-- table as small as the number of recent log-outs.
CREATE TABLE revoked_sessions (
    -- The token's random id (`jti`), not the token: a leaked table reveals
    -- nothing that could be replayed.
    jti         text        PRIMARY KEY,
    user_id     bigint      NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
