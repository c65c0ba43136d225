-- no-transaction
-- The janitor's expiry and reminder sweeps page through live posts by the
-- keyset (expires_at, city, id), LIMIT batch. posts_live_expires held only
-- expires_at, so when many posts fell due at once (a million seeded posts
-- expiring within the reminder lead), every batch read all due rows and sorted
-- them to keep 500. With city and id in the index each batch is a range scan
-- that stops at the batch size, in the order the query asks for.
--
-- CONCURRENTLY, so a shard keeps taking writes while a deployed region builds
-- it; that cannot run inside a transaction, hence `no-transaction` above and
-- one statement per file (Postgres runs a multi-statement simple query as one
-- implicit transaction). If the build is interrupted, Postgres leaves an
-- INVALID index and sqlx records the migration as failed: drop the index by
-- hand and run the migrations again.
CREATE INDEX CONCURRENTLY posts_live_expires_keyset ON posts (expires_at, city, id)
    WHERE status = 'live';
