-- The inspector's log is written on every SCIM request, so each index on it is paid per
-- request (BENCHMARKS.md, "Provisioning inspector"). A tenant keeps at most a bounded
-- window of rows (10,000 by default), so the filters by token, resource and status scan
-- that tenant's rows through (tenant_id, id) instead, and the periodic age purge scans
-- the table once per run rather than maintaining an index on `at` for every insert.
DROP INDEX scim_requests_tenant_id_resource_id_idx;
DROP INDEX scim_requests_tenant_id_token_id_idx;
DROP INDEX scim_requests_at_idx;
