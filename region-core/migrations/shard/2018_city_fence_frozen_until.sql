-- The deadline of a cutover's freeze. A city is `frozen` only until this
-- moment: apply treats a frozen fence whose deadline has passed (by this
-- shard's clock, `clock_timestamp()`) as active, and the cutover's flip is
-- refused past it. So a shard-tool killed while a city is frozen, and never
-- resumed, costs that city's writers at most the pause the operator allowed.
-- NULL outside a freeze.
ALTER TABLE city_fence ADD COLUMN frozen_until timestamptz;
