-- Schema of a shard database. Every table keyed by city moves with the city
-- (shard-tool copies it with a logical-replication publication filtered
-- `WHERE (city = '...')`), so `city` leads each primary key: UPDATE and DELETE
-- of a filtered publication fail unless the replica identity (the primary key)
-- covers the filter column.
--
-- Shard versions start at 2001 and catalog versions at 1001: see the catalog's
-- first migration.

-- The shard's own claim on each city. Every apply transaction reads its
-- city's row FOR SHARE and refuses unless state is 'active' and the epoch is
-- the one it was routed with; the cutover updates these rows (and the
-- catalog's shard_map) so a writer with a stale map cannot write here once the
-- city has left. Not moved with the city: each shard has its own row.
-- 'gone' marks a city that moved away (a missing row is refused the same way).
CREATE TABLE city_fence (
    city        text        PRIMARY KEY,
    epoch       bigint      NOT NULL CHECK (epoch > 0),
    state       text        NOT NULL CHECK (state IN ('active', 'frozen', 'moving', 'gone')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- (city, id) is the primary key because logical replication's row filter on
-- city needs city in the replica identity.
CREATE TABLE posts (
    city         text        NOT NULL,
    id           bigint      NOT NULL,
    user_id      bigint      NOT NULL,
    category     text        NOT NULL,
    title        text        NOT NULL,
    description  text        NOT NULL,
    -- Whole currency units; NULL when the poster gave no price.
    price        bigint      CHECK (price BETWEEN 0 AND 1000000000),
    location     text,
    -- A deleted, hidden or expired post keeps its row and version as a
    -- tombstone, so a late or replayed older write cannot bring it back.
    status       text        NOT NULL CHECK (status IN ('live', 'hidden', 'deleted', 'expired')),
    -- Bumped by one at each change; apply's upserts never lower it, and
    -- readers, the publisher and the edge compare it to drop stale copies.
    version      bigint      NOT NULL CHECK (version > 0),
    image_count  smallint    NOT NULL DEFAULT 0 CHECK (image_count BETWEEN 0 AND 10),
    -- Set once by the api and carried in the command, so a replay writes the
    -- same row.
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    -- Full-text search (websearch_to_tsquery). Generated, so it can never
    -- disagree with the text; generated columns are not replicated logically,
    -- the target of a move computes its own.
    search       tsvector    GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', title), 'A')
                  || setweight(to_tsvector('english', description), 'B')) STORED,
    PRIMARY KEY (city, id)
);

-- GET /post (listing, infinite scroll): live posts of one city, newest first,
-- keyset cursor (created_at, id). Partial on 'live' because tombstones are
-- never listed.
CREATE INDEX posts_city_live_recent ON posts (city, created_at DESC, id DESC)
    WHERE status = 'live';
-- GET /post?category=: the same order within one category.
CREATE INDEX posts_city_category_live_recent ON posts (city, category, created_at DESC, id DESC)
    WHERE status = 'live';
-- GET /post?min_price=&max_price= with a narrow range: a bitmap on price
-- beats walking the listing index when few posts match.
CREATE INDEX posts_city_price_live ON posts (city, price)
    WHERE status = 'live';
-- GET /post?search=: city and text in one GIN index (btree_gin), so a common
-- word is looked up within the city rather than across every city of the
-- shard.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX posts_city_search ON posts USING gin (city, search)
    WHERE status = 'live';
-- The delete-user command and a poster's own list: posts of one user in a
-- city.
CREATE INDEX posts_city_user ON posts (city, user_id);
-- The janitor's expiry sweep: live posts past expires_at.
CREATE INDEX posts_live_expires ON posts (expires_at) WHERE status = 'live';

CREATE TABLE post_images (
    city          text        NOT NULL,
    post_id       bigint      NOT NULL,
    slot          smallint    NOT NULL CHECK (slot BETWEEN 0 AND 9),
    object_key    text        NOT NULL,
    content_type  text        NOT NULL,
    width         integer,
    height        integer,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (city, post_id, slot),
    FOREIGN KEY (city, post_id) REFERENCES posts (city, id) ON DELETE CASCADE
);

-- One row per (post, reporter): the primary key makes reports from the same
-- person count once toward the hide threshold.
CREATE TABLE reports (
    city         text        NOT NULL,
    post_id      bigint      NOT NULL,
    reporter_id  bigint      NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (city, post_id, reporter_id)
);

-- Dedup history: a command whose (city, command_id) is here was applied (or
-- rejected) already and a replay skips it. Keyed by city so the history moves
-- with the city and a replay on the new shard is still harmless.
CREATE TABLE applied_commands (
    city        text        NOT NULL,
    command_id  bigint      NOT NULL,
    -- 'applied' or 'rejected: <reason>'; the status URL reads it.
    outcome     text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city, command_id)
);
-- The janitor prunes history older than the commands topic's retention.
CREATE INDEX applied_commands_applied_at ON applied_commands (applied_at);

-- Events written in the same transaction as the change they describe; the
-- relay sends them to <region>.events and deletes them once acknowledged.
-- `seq` is a Snowflake id from the writer's generator, not a local sequence:
-- rows that move with their city must never collide with the target shard's
-- own rows, and time order keeps a city's events in order.
CREATE TABLE outbox (
    city        text        NOT NULL,
    seq         bigint      NOT NULL,
    event       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city, seq)
);
-- The relay reads the oldest unsent rows of the whole shard.
CREATE INDEX outbox_seq ON outbox (seq);
