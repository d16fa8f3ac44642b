-- The retention purge in steps (issue 16, finding 8): an account due for purging is
-- marked (purging_since) before its backup repository is removed, and its row is
-- deleted only after the removal succeeded. A marked account cannot be restored; a
-- failed removal leaves the mark, and the next run retries.
ALTER TABLE users ADD COLUMN purging_since TEXT;
