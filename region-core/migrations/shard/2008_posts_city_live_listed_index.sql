-- no-transaction
-- GET /post (listing, search without sort, infinite scroll): live posts of one
-- city by listed_at, newest first, keyset (listed_at, id). Replaces
-- posts_city_live_recent (created_at), dropped in 2015.
--
-- CONCURRENTLY, so the shard keeps taking writes while it builds (as 2004):
-- one statement per file, outside a transaction. An interrupted build leaves
-- an INVALID index and a failed migration: drop the index by hand and rerun.
CREATE INDEX CONCURRENTLY posts_city_live_listed ON posts (city, listed_at DESC, id DESC)
    WHERE status = 'live';
