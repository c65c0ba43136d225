-- The newest version of each edge KV key the publisher has claimed: its
-- durable "never older" guard. Cloudflare KV's bulk API has no conditional
-- write (last write wins, reads may be stale for ~60 s), and the
-- publisher's per-key memory is lost at a restart or a rebalance, so before
-- a bulk write the publisher locks the marks of its keys, drops the writes
-- `kv::replaces` refuses against them, and raises the marks of the rest in
-- the same transaction; only then does it write. A duplicate or replayed
-- event after a restart then finds the tombstone's mark and writes nothing.
-- A mark equal to the write is let through, so a crash between this claim
-- and the KV write is repaired by the replay of the same event.
--
-- In the region's catalog (not a shard) because KV keys are the region's,
-- not a city's shard's; an event of a city another region serves is not
-- written here at all (it is dead-lettered), so two regions never share a
-- key's writes.
CREATE TABLE kv_marks (
    key         text        PRIMARY KEY,
    version     bigint      NOT NULL,
    gone        boolean     NOT NULL,
    -- The template of a page (absent on tombstones): a page of the same
    -- version and another template replaces one (a template change).
    template    bigint,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
