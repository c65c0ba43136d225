-- Accounts deleted anywhere, as every region's writer learns of them from
-- its commands topic. A token names its user, not its account's state, and
-- a region other than the user's home has no `users` row to look at: this
-- table is how every region refuses every token of a deleted account at
-- once, without knowing the ids of the tokens.
--
-- A row matters only until the last token the user could hold has expired
-- (`expires_at`); the janitor may delete older rows, as it does for
-- revoked_sessions.
CREATE TABLE revoked_users (
    user_id     bigint      PRIMARY KEY,
    revoked_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX revoked_users_expires_at ON revoked_users (expires_at);
