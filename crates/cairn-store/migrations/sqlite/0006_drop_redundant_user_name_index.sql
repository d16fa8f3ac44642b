-- (tenant_id, user_name_fold, deleted_at) served the lookup of a deleted account by
-- userName (restore); (tenant_id, user_name_fold, id) from 0002 serves it as well. Each
-- index on a random key costs every create one more page written: cairn-bench's POST is
-- bound by the bytes the writer puts in the WAL.
DROP INDEX IF EXISTS users_tenant_id_deleted_user_name_idx;
