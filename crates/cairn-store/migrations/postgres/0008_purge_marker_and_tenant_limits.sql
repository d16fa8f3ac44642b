-- The retention purge in steps (issue 16, finding 8): an account due for purging is
-- marked (purging_since) before its backup repository is removed, and its row is
-- deleted only after the removal succeeded. A marked account cannot be restored; a
-- failed removal leaves the mark, and the next run retries.
ALTER TABLE users ADD COLUMN purging_since TEXT;

-- The operator's cap on a tenant's Account Size and group sizes (issue 16, finding 12):
-- NULL is no cap. Sizes above it are refused; a larger quota set before the cap counts
-- as the cap.
ALTER TABLE tenants ADD COLUMN max_account_size_gb BIGINT;
