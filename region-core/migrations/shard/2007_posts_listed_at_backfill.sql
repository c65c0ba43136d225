-- no-transaction
-- Backfill listed_at = created_at on rows written before 2006 (rows written
-- since get it from the writer or the trigger), in batches of 5 000 rows
-- along the primary key, each committed on its own (COMMIT inside a DO block
-- works because this migration runs outside a transaction block: the
-- `no-transaction` line above).
--
-- Why batches rather than one UPDATE: one UPDATE of every post would hold
-- row locks on all of them until it ends (the writer's apply, which locks the
-- posts it changes FOR UPDATE, would wait the whole time), and would produce
-- one huge transaction the replicas must replay before any read-your-writes
-- token behind it is honoured. A batch holds its 5 000 row locks for
-- milliseconds, and autovacuum can reclaim the old row versions as it goes.
-- Walking the primary key (a range scan from the last key) keeps each batch
-- cheap; `WHERE listed_at IS NULL` without an index would rescan the updated
-- rows' dead versions at every batch.
--
-- Safe to interrupt: rerunning the migration starts over and skips the rows
-- already filled (the UPDATE only touches NULLs).
DO $$
DECLARE
    last_city text := '';
    last_id bigint := -9223372036854775808;
BEGIN
    LOOP
        WITH batch AS (
            SELECT city, id FROM posts
            WHERE (city, id) > (last_city, last_id)
            ORDER BY city, id
            LIMIT 5000
        ), filled AS (
            UPDATE posts p SET listed_at = p.created_at
            FROM batch b
            WHERE p.city = b.city AND p.id = b.id AND p.listed_at IS NULL
        )
        SELECT city, id INTO last_city, last_id
        FROM batch ORDER BY city DESC, id DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        COMMIT;
    END LOOP;
END
$$;
