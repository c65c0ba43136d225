-- A change to the region's shard list is a change of the map: every role
-- routes through both, and a city placed on a shard the process does not
-- know yet cannot be served. So adding a shard (a split's spare), removing
-- one, or changing its addresses (a failover) bumps `shard_map_version` and
-- notifies `shard_map` like a move does, and the roles reload the list
-- without a restart. Per row, so that `cityboard up` re-registering the same
-- shards (an upsert that changes nothing) does not make every role reload.
CREATE TRIGGER shards_changed
    AFTER INSERT OR UPDATE OR DELETE ON shards
    FOR EACH ROW EXECUTE FUNCTION shard_map_bump();
CREATE TRIGGER shards_truncated
    AFTER TRUNCATE ON shards
    FOR EACH STATEMENT EXECUTE FUNCTION shard_map_bump();
