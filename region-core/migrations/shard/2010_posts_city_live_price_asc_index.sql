-- no-transaction
-- GET /post?sort=price_asc: cheapest first, posts without a price last, keyset
-- (coalesce(price, 1000000001), id). The expression maps "no price" past the
-- highest allowed price (the CHECK caps it at 1 000 000 000), so the order and
-- the cursor comparison are one plain row comparison, and the index hands the
-- rows out in order: a page reads its 20 rows instead of sorting the city.
-- The query must use this exact expression (db/queries.rs, Sort::key).
-- CONCURRENTLY for the reasons given in 2008.
CREATE INDEX CONCURRENTLY posts_city_live_price_asc
    ON posts (city, (coalesce(price, 1000000001)), id)
    WHERE status = 'live';
