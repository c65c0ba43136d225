-- Contract, first half: listed_at is never NULL again (every writer sets it,
-- the 2006 trigger covers those that do not, 2007 filled the rest).
--
-- A plain `SET NOT NULL` scans the whole table under ACCESS EXCLUSIVE: no
-- read or write of posts for the length of the scan. Instead, the constraint
-- is added NOT VALID (checked for new rows only; a catalog change), then
-- VALIDATEd in 2013, which scans under SHARE UPDATE EXCLUSIVE: reads and
-- writes go on. With a validated CHECK (listed_at IS NOT NULL) in place,
-- Postgres (12+) proves SET NOT NULL from it and skips the scan.
SET LOCAL lock_timeout = '5s';
ALTER TABLE posts ADD CONSTRAINT posts_listed_at_not_null
    CHECK (listed_at IS NOT NULL) NOT VALID;
