-- no-transaction
-- Contract: listings order by listed_at now (posts_city_live_listed, 2008);
-- the created_at-ordered index is only write cost. CONCURRENTLY, as 2005: a
-- plain DROP INDEX takes an exclusive lock on posts while readers hold one.
DROP INDEX CONCURRENTLY IF EXISTS posts_city_live_recent;
