-- The provisioning inspector (issue 20): the recent SCIM requests of each tenant, written
-- in batches off the request path and pruned by age and count per tenant. Bodies are set
-- only while body capture (scim_request_capture) is on, redacted before they get here.
CREATE TABLE scim_requests (
    id            INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    at            TEXT NOT NULL,
    token_id      TEXT,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    client        TEXT NOT NULL,
    dialect       TEXT,
    user_agent    TEXT,
    status        INTEGER NOT NULL,
    scim_type     TEXT,
    error         TEXT,
    latency_us    INTEGER NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    notes         TEXT NOT NULL,
    request_body  TEXT,
    response_body TEXT
);
CREATE INDEX scim_requests_tenant_id_idx ON scim_requests (tenant_id, id);
CREATE INDEX scim_requests_tenant_id_resource_id_idx ON scim_requests (tenant_id, resource_id, id);
CREATE INDEX scim_requests_tenant_id_token_id_idx ON scim_requests (tenant_id, token_id, id);
-- The age purge runs across tenants.
CREATE INDEX scim_requests_at_idx ON scim_requests (at);

CREATE TABLE scim_request_capture (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    until     TEXT NOT NULL
);
