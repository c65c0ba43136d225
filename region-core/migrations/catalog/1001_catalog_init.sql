-- Catalog of one region: who lives here (users), where each city's data is
-- (shards, shard_map), resharding jobs, and the node numbers of id generators.
--
-- Catalog versions start at 1001 and shard versions at 2001, so that a shard
-- migrated by mistake as a catalog (or the reverse) carries versions the
-- other check does not know, and every process refuses it.

-- Users live in the catalog of their home region; the id is a Snowflake id
-- whose region bits name that region, so any region knows where to renew a
-- session without a lookup.
CREATE TABLE users (
    id             bigint      PRIMARY KEY,
    email          text        NOT NULL,
    -- argon2id PHC string (salt and parameters included).
    password_hash  text        NOT NULL,
    created_at     timestamptz NOT NULL,
    -- Deletion is a command sent to every region; the row stays until that
    -- has been applied everywhere, but the account can no longer log in.
    deleted_at     timestamptz
);
-- Login looks users up by e-mail regardless of case, and signup must refuse a
-- second account for the same address: one unique index serves both.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Connection info of every shard of this region. The catalog, not a config
-- file, is the truth about topology, so that shard-tool can add a shard that
-- every process then finds.
CREATE TABLE shards (
    region        text        NOT NULL,
    name          text        NOT NULL,
    primary_url   text        NOT NULL,
    replica_urls  text[]      NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (region, name)
);

-- Where each city lives. No foreign key to shards: after a cross-region move
-- a city points at a shard of another region, whose row this catalog lacks.
-- `epoch` grows by one at each cutover; writes routed with an older epoch are
-- refused by the shard's city_fence, which the cutover flips together with
-- this row.
CREATE TABLE shard_map (
    city        text        PRIMARY KEY,
    region      text        NOT NULL,
    shard       text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('active', 'frozen', 'moving')),
    epoch       bigint      NOT NULL CHECK (epoch > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One number for the whole map: every change to shard_map bumps it and
-- notifies `shard_map`, so a process reloads on NOTIFY and, in case it missed
-- one (connection lost), on a periodic comparison of this single row.
CREATE TABLE shard_map_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint  NOT NULL
);
INSERT INTO shard_map_version (version) VALUES (1);

CREATE FUNCTION shard_map_bump() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE shard_map_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('shard_map', v::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER shard_map_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON shard_map
    FOR EACH STATEMENT EXECUTE FUNCTION shard_map_bump();

-- The region's number in ids (the region bits of every Snowflake id). Set
-- once when the region is first brought up; changing it would let two
-- regions mint the same ids.
CREATE TABLE region_info (
    singleton  boolean  PRIMARY KEY DEFAULT true CHECK (singleton),
    name       text     NOT NULL,
    number     smallint NOT NULL CHECK (number BETWEEN 0 AND 15)
);

-- Resharding jobs of shard-tool: every step is resumable from this row.
CREATE TABLE reshard_jobs (
    id           bigint      PRIMARY KEY,
    city         text        NOT NULL,
    from_region  text        NOT NULL,
    from_shard   text        NOT NULL,
    to_region    text        NOT NULL,
    to_shard     text        NOT NULL,
    phase        text        NOT NULL,
    -- Step-specific progress (slot names, verified chunks, ...).
    progress     jsonb       NOT NULL DEFAULT '{}',
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
-- At most one unfinished move per city: shard-tool inserts and relies on this
-- index to refuse a second concurrent move of the same city.
CREATE UNIQUE INDEX reshard_jobs_one_open_per_city ON reshard_jobs (city)
    WHERE finished_at IS NULL;

-- Node numbers of id generators, leased rather than configured, so that two
-- processes never share one. Expiry uses the database clock (now()), the one
-- clock every holder agrees on.
CREATE TABLE node_leases (
    node         smallint    PRIMARY KEY CHECK (node BETWEEN 0 AND 255),
    holder       text        NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
