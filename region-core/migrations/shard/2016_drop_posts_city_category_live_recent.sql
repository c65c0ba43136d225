-- no-transaction
-- Contract: replaced by posts_city_category_live_listed (2009); as 2015.
DROP INDEX CONCURRENTLY IF EXISTS posts_city_category_live_recent;
