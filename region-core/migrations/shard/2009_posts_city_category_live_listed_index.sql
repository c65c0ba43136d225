-- no-transaction
-- GET /post?category=: the listing order within one category. Replaces
-- posts_city_category_live_recent (created_at), dropped in 2016.
-- CONCURRENTLY for the reasons given in 2008.
CREATE INDEX CONCURRENTLY posts_city_category_live_listed
    ON posts (city, category, listed_at DESC, id DESC)
    WHERE status = 'live';
