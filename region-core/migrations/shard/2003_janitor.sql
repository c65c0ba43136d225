-- What the janitor keeps on each shard: the ledger of renewal reminders, and
-- the index its archive pass reads.

-- One row per reminder the janitor sent (or decided not to send), per post and
-- lifetime period. `expires_at` is part of the key because a renewal starts a
-- new period (a new expires_at) that deserves its own reminder, while a second
-- sweep of the same period finds the row and sends nothing. Keyed by city
-- first, like every table that moves with its city (shard-tool's publication
-- filters on city, and UPDATE/DELETE of a filtered publication need the filter
-- column in the replica identity), so a moved city's reminders are not sent
-- again from the new shard.
--
-- The janitor inserts the row and sends the mail in one transaction, one post
-- at a time: a crash after the send and before the commit sends that one mail
-- again on the next sweep, and nothing else is ever sent twice.
CREATE TABLE reminders_sent (
    city        text        NOT NULL,
    post_id     bigint      NOT NULL,
    expires_at  timestamptz NOT NULL,
    -- 'sent', or 'no address' when the user has no (undeleted) account in
    -- their home region's catalog: recorded too, so it is not looked up again
    -- at every sweep.
    outcome     text        NOT NULL CHECK (outcome IN ('sent', 'no address')),
    -- The janitor's clock (tests move it), not the database's.
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (city, post_id, expires_at)
);

-- DELETE /old_posts: expired posts past the retention period, per city. The
-- rows stay as tombstones until then (design §3), so this partial index stays
-- small next to posts_live_expires.
CREATE INDEX posts_expired_city_expires ON posts (city, expires_at) WHERE status = 'expired';
