-- no-transaction
-- posts_live_expires_keyset (2004) serves every query posts_live_expires did
-- (its leading column is the same, with the same predicate), so the older
-- index is only write cost now. CONCURRENTLY, like 2004: a plain DROP INDEX
-- would take an exclusive lock on posts for as long as any reader holds one.
DROP INDEX CONCURRENTLY IF EXISTS posts_live_expires;
