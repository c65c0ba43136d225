-- Where each dedup row's command was read: topic, partition and offset.
--
-- A row guards against a second apply of its command, which can only come
-- from a copy of the command still readable on the broker (a replay after a
-- crash, or a retry that produced the same command again). So the janitor
-- deletes a row only once its command is below the earliest offset the
-- broker still serves for that partition (its low watermark, which moves as
-- the topic's retention drops old records): no replay can then meet it. An
-- age alone would rest on an assumed retention; the offset is what the
-- broker actually holds.
--
-- When a command is read again at a later offset (a retry that produced it
-- anew), the writer moves the row to that later offset, so the row lives as
-- long as the newest copy.
--
-- NULL for rows written before this column existed, and for commands that
-- reached a shard some other way: the janitor leaves those alone. Nullable
-- with no default, so adding the columns rewrites nothing.
ALTER TABLE applied_commands
    ADD COLUMN source_topic     text,
    ADD COLUMN source_partition integer,
    ADD COLUMN source_offset    bigint;
