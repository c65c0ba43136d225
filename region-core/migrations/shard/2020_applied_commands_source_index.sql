-- no-transaction
-- The janitor's pruning reads, per commands partition, the rows whose
-- command is below the partition's earliest readable offset (2019).
--
-- CONCURRENTLY, so the shard keeps taking writes while it builds (as 2004):
-- one statement per file, outside a transaction. An interrupted build leaves
-- an INVALID index and a failed migration: drop the index by hand and rerun.
CREATE INDEX CONCURRENTLY applied_commands_source
    ON applied_commands (source_topic, source_partition, source_offset);
