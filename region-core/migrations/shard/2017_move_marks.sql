-- Barriers of shard-tool's moves. A row is written on the shard that owns a
-- city (in the transaction that freezes the city for a cutover, and before a
-- verify recheck) and travels to the other shard through the move's
-- logical-replication publication like any other row of the city; once it is
-- there, everything the owner committed before it is there too. This is how
-- a move knows the target has caught up, even for an idle city whose slot
-- position says nothing about it.
--
-- Keyed by city first like every table that moves with its city (the
-- publication's row filter needs `city` in the replica identity), which also
-- puts it in the move's table list without anyone naming it there.
CREATE TABLE move_marks (
    city        text        NOT NULL,
    -- The reshard job (catalog `reshard_jobs.id`) that wrote it.
    job         bigint      NOT NULL,
    -- Distinct per mark of a job: the writer's clock in microseconds, so a
    -- resumed job never reuses one.
    seq         bigint      NOT NULL,
    -- `freeze`, `verify`, ...: why the mark was written, for an operator
    -- reading the table.
    purpose     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (city, job, seq)
);
