-- Renewal moves a post back to the top of its listing: `listed_at` is the
-- listing's sort key, set at creation and by each renewal, never by an edit
-- (created_at stays the day it was first posted).
--
-- Added the safe way on a live shard, one step per migration:
--   2006 expand: a nullable column with no default (a catalog change: no
--        rewrite, the ACCESS EXCLUSIVE lock lasts milliseconds) and a trigger
--        that fills it from created_at on insert;
--   2007 backfill existing rows in committed batches;
--   2008-2011 the listing indexes on listed_at, built CONCURRENTLY;
--   2012-2016 contract: NOT NULL proven by a CHECK validated without blocking
--        writes, then the created_at-ordered indexes it replaces dropped.
--
-- lock_timeout: the ALTER waits behind any long reader of posts, and every
-- query after it would queue behind the ALTER; failing after 5 s (rerun the
-- migrations) is better than stalling the shard's traffic meanwhile.
SET LOCAL lock_timeout = '5s';

ALTER TABLE posts ADD COLUMN listed_at timestamptz;

-- Writers that do not know the column (a region still on the previous
-- release during a rolling deploy, and the benches' COPY seeds) insert rows
-- without it; the trigger gives them the value a new writer would have given
-- (a new post is listed when it is created), so the backfill ends and the
-- NOT NULL of 2012-2014 holds. A new writer always sets listed_at, which the
-- trigger leaves alone. An update never needs it: no writer sets it to NULL.
CREATE FUNCTION posts_listed_at_default() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.listed_at := coalesce(NEW.listed_at, NEW.created_at);
    RETURN NEW;
END
$$;

CREATE TRIGGER posts_listed_at_default BEFORE INSERT ON posts
    FOR EACH ROW EXECUTE FUNCTION posts_listed_at_default();
