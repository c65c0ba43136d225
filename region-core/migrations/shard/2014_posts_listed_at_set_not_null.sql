-- Contract: the column becomes NOT NULL without a scan (Postgres uses the
-- CHECK validated in 2013 as proof), then the CHECK, now redundant, goes.
-- Both hold ACCESS EXCLUSIVE only for a catalog change.
SET LOCAL lock_timeout = '5s';
ALTER TABLE posts ALTER COLUMN listed_at SET NOT NULL;
ALTER TABLE posts DROP CONSTRAINT posts_listed_at_not_null;
