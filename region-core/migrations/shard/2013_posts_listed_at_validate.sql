-- Contract: the scan of every row, under SHARE UPDATE EXCLUSIVE (writes and
-- reads continue), in its own transaction so that no stronger lock is held
-- while it runs. See 2012.
ALTER TABLE posts VALIDATE CONSTRAINT posts_listed_at_not_null;
