-- no-transaction
-- GET /post?sort=price_desc: dearest first, posts without a price still last:
-- keyset (coalesce(price, -1), id) descending. A second index because "no
-- price last" in both orders needs a different stand-in value (see 2010).
-- CONCURRENTLY for the reasons given in 2008.
CREATE INDEX CONCURRENTLY posts_city_live_price_desc
    ON posts (city, (coalesce(price, -1)) DESC, id DESC)
    WHERE status = 'live';
