//! The PostgreSQL backend, for deployments where several stateless Cairn instances share
//! one database: connection plumbing (the pool, migrations under an advisory lock so
//! instances that start at the same moment migrate once), row mapping shared by the
//! aggregates, and list planning. Each aggregate's `Store` trait is implemented in its own
//! file.

mod audit;
pub(crate) mod filter;
mod groups;
mod identities;
mod protection;
mod requests;
mod sso;
mod tenants;
pub mod tls;
mod tokens;
mod users;
mod vault;
mod welcome;

use crate::listing::{is_single_key_lookup, total_from_page, PageStarts, PlainPage};
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::clock::{format_ts, parse_ts};
use cairn_core::ids::{QuotaGb, TenantId, UserId, UserName};
use cairn_core::query::{ListQuery, Page};
use cairn_core::store::*;
use cairn_core::tenant::Tenant;
use cairn_core::user::UserRecord;
use cairn_core::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use filter::{Param, Sql};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_dashboard.sql"),
    include_str!("../../migrations/postgres/0003_groups.sql"),
    include_str!("../../migrations/postgres/0004_backup_keys.sql"),
    include_str!("../../migrations/postgres/0005_users_paging_index.sql"),
    include_str!("../../migrations/postgres/0006_drop_redundant_user_name_index.sql"),
    include_str!("../../migrations/postgres/0007_user_list_state.sql"),
    include_str!("../../migrations/postgres/0008_purge_marker_and_tenant_limits.sql"),
    include_str!("../../migrations/postgres/0009_sso.sql"),
    include_str!("../../migrations/postgres/0010_group_member_display.sql"),
    include_str!("../../migrations/postgres/0011_scim_requests.sql"),
    include_str!("../../migrations/postgres/0012_sso_group_roles.sql"),
    include_str!("../../migrations/postgres/0013_sso_oidc.sql"),
    include_str!("../../migrations/postgres/0014_device_keys.sql"),
    include_str!("../../migrations/postgres/0015_backup_freshness.sql"),
    include_str!("../../migrations/postgres/0016_vault_protection.sql"),
    include_str!("../../migrations/postgres/0017_sso_sign_in_policies.sql"),
    include_str!("../../migrations/postgres/0018_people.sql"),
    include_str!("../../migrations/postgres/0019_vault_verifications.sql"),
    include_str!("../../migrations/postgres/0020_scim_requests_lean_indexes.sql"),
    include_str!("../../migrations/postgres/0021_scim_request_batches.sql"),
    include_str!("../../migrations/postgres/0022_welcome.sql"),
];
/// The schema version `migrate` brings a database to.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
/// Arbitrary constant naming Cairn's migration lock.
const MIGRATION_LOCK: i64 = 0x0CA1_0001;

pub struct PostgresStore {
    pool: Pool,
    /// Accounts this process created, for [`PostgresStore::refresh_statistics`].
    created: Arc<std::sync::atomic::AtomicU64>,
    /// Where later pages of unfiltered account lists start (see [`list_plain_users`]).
    page_starts: Arc<Mutex<PageStarts>>,
}

fn map_err(e: tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            return match db.constraint() {
                Some("users_tenant_id_user_name_fold_key") => Error::Conflict {
                    attribute: "userName",
                },
                Some("dashboard_users_email_fold_key") => Error::Conflict { attribute: "email" },
                Some("groups_tenant_id_display_name_fold_key") => Error::Conflict {
                    attribute: "displayName",
                },
                Some("groups_tenant_id_id_key") => Error::Conflict { attribute: "id" },
                Some("backup_keys_tenant_id_user_id_name_fold_key") => {
                    Error::Conflict { attribute: "name" }
                }
                Some(c) if c.ends_with("_pkey") || c == "users_tenant_id_id_key" => {
                    Error::Conflict { attribute: "id" }
                }
                other => Error::Internal(format!("unique violation on {other:?}")),
            };
        }
        let code = db.code().code();
        // Class 08 connection exceptions, 53 insufficient resources, 57 operator
        // intervention (shutdown), 40 transaction rollback (serialization): retryable.
        if ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c)) {
            return Error::Unavailable(db.message().to_owned());
        }
        return Error::Internal(format!("{}: {}", code, db.message()));
    }
    // No server error: the connection itself failed or closed.
    Error::Unavailable(with_causes(&e))
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    Error::Unavailable(format!("database connection: {}", with_causes(&e)))
}

/// An error with its causes: tokio-postgres prints "error performing TLS handshake" and
/// leaves why (an unknown issuer, a name that does not match) to `source()`.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn conv(col: usize, msg: String) -> Error {
    Error::Internal(format!("column {col}: {msg}"))
}

fn ts(t: OffsetDateTime) -> String {
    format_ts(t)
}

fn time_of(s: String) -> Result<OffsetDateTime> {
    parse_ts(&s).ok_or_else(|| conv(0, format!("bad timestamp {s}")))
}

fn opt_time(s: Option<String>) -> Result<Option<OffsetDateTime>> {
    s.map(time_of).transpose()
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL, with libpq's `sslmode` and `sslrootcert`:
    /// [`tls`]) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let tls::Target {
            config: mut cfg,
            tls,
            ..
        } = tls::target(url)?;
        cfg.connect_timeout(Duration::from_secs(3));
        let mgr = Manager::from_config(
            cfg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(16)
            .runtime(Runtime::Tokio1)
            // An outage must fail requests fast (503), never hang them.
            .wait_timeout(Some(Duration::from_secs(3)))
            .create_timeout(Some(Duration::from_secs(3)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .build()
            .map_err(|e| Error::Internal(format!("pool: {e}")))?;
        let store = PostgresStore {
            pool,
            created: Arc::default(),
            page_starts: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs `ANALYZE` on the account tables in the background when this process has
    /// created 100, 1,000, 10,000, … accounts. Until a table has statistics PostgreSQL
    /// cannot tell its indexes apart: on a new deployment under an identity provider's
    /// first sync it can look up `GET /Users/{id}` through the `(tenant_id, user_name_fold)`
    /// index, reading the whole tenant per request, and autovacuum's first analyze can be a
    /// minute away — the minute of the heaviest load (figures: BENCHMARKS.md, 2026-12-04
    /// morning).
    fn refresh_statistics(&self) {
        let n = self
            .created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut threshold = 100u64;
        while threshold < n {
            threshold = threshold.saturating_mul(10);
        }
        if n != threshold {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let result = match pool.get().await {
                Ok(c) => c
                    .batch_execute("ANALYZE users; ANALYZE group_members; ANALYZE groups")
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => tracing::debug!(accounts_created = n, "refreshed table statistics"),
                Err(e) => tracing::warn!(error = %e, "ANALYZE after a burst of creates failed"),
            }
        });
    }

    /// The schema version of the database at `url` (0 where Cairn never ran), read
    /// without migrating anything: `cairn db status` before an upgrade.
    pub async fn schema_version_at(url: &str) -> Result<i64> {
        let tls::Target {
            mut config, tls, ..
        } = tls::target(url)?;
        config.connect_timeout(Duration::from_secs(3));
        let (client, connection) = config.connect(tls).await.map_err(map_err)?;
        let task = tokio::spawn(connection);
        let r = async {
            let exists: bool = client
                .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
                .await
                .map_err(map_err)?
                .get(0);
            if !exists {
                return Ok(0);
            }
            Ok(client
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )
                .await
                .map_err(map_err)?
                .get(0))
        }
        .await;
        drop(client);
        let _ = task.await;
        r
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_err)?;
        let r = async {
            c.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
                .await
                .map_err(map_err)?;
            let current: i64 = c
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
                .await
                .map_err(map_err)?
                .get(0);
            // Checked under the lock: an instance of an older release that starts while a
            // newer one migrates sees the finished migration and stops.
            if current > SCHEMA_VERSION {
                return Err(crate::newer_schema(current));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate() {
                let version = i as i64 + 1;
                if version > current {
                    let tx = c.transaction().await.map_err(map_err)?;
                    tx.batch_execute(sql).await.map_err(map_err)?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        &[&version, &ts(OffsetDateTime::now_utc())],
                    )
                    .await
                    .map_err(map_err)?;
                    tx.commit().await.map_err(map_err)?;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        let _ = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        r
    }
}

async fn insert_audit<C: GenericClient>(c: &C, a: &AuditDraft) -> Result<()> {
    c.execute(
        "INSERT INTO audit_events (tenant_id, at, actor_kind, actor_id, action, target_type,
             target_id, target_name, changes, user_agent, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &a.tenant_id.as_str(),
            &ts(a.at),
            &a.actor.kind(),
            &a.actor.id(),
            &a.action.as_str(),
            &a.target_type,
            &a.target_id,
            &a.target_name,
            &a.changes,
            &a.meta.user_agent,
            &a.meta.request_id,
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

const TENANT_COLS: &str =
    "id, name, scim_enabled, account_size_gb, created_at, max_account_size_gb, stale_days";

fn tenant_from_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_trusted(r.get(0)),
        name: r.get(1),
        scim_enabled: r.get(2),
        account_size_gb: QuotaGb::new(r.get(3)).unwrap_or_default(),
        created_at: time_of(r.get(4))?,
        max_account_size_gb: r
            .get::<_, Option<i64>>(5)
            .and_then(|gb| QuotaGb::new(gb).ok()),
        // The column's bounds are the rule's (written only through `StaleDays`).
        stale_days: cairn_core::freshness::StaleDays::new(r.get::<_, i64>(6)).unwrap_or_default(),
    })
}

async fn get_tenant<C: GenericClient>(c: &C, id: &str) -> Result<Option<Tenant>> {
    let row = c
        .query_opt(
            &format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(map_err)?;
    row.as_ref().map(tenant_from_row).transpose()
}

const USER_COLS: &str = "u.id, u.tenant_id, u.user_name, u.external_id, u.display_name, u.email, \
    u.active, u.doc, u.quota_gb, u.used_bytes, u.scim_managed, u.created_at, u.updated_at, \
    u.version, u.deleted_at, u.purge_at";

fn user_from_row(r: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: UserId::from_trusted(r.get(0)),
        tenant_id: TenantId::from_trusted(r.get(1)),
        user_name: UserName::from_trusted(r.get(2)),
        external_id: r.get(3),
        display_name: r.get(4),
        email: r.get(5),
        active: r.get(6),
        doc: r.get(7),
        quota_gb: QuotaGb::new(r.get(8)).unwrap_or_default(),
        used_bytes: r.get(9),
        scim_managed: r.get(10),
        created_at: time_of(r.get(11))?,
        updated_at: time_of(r.get(12))?,
        version: r.get(13),
        deleted_at: opt_time(r.get(14))?,
        purge_at: opt_time(r.get(15))?,
    })
}

/// A page of a tenant's live accounts in insertion order, without a filter: what Okta's
/// and Entra's imports read page after page. `totalResults` is the tenant's live count
/// kept by triggers (migration 0007), not a `COUNT(*)` over the tenant. The page is read
/// from where it starts through the `(tenant_id, seq)` index (`seq > after`); where that
/// is comes from an earlier page at the same generation, or else from walking the offset
/// over that index. One read-only snapshot (`REPEATABLE READ`), so count, generation and
/// rows agree.
async fn list_plain_users(
    c: &mut deadpool_postgres::Client,
    tenant: &TenantId,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> Result<Page<UserRecord>> {
    let t = tenant.as_str();
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(map_err)?;
    let st = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(live), 0)::BIGINT, COALESCE(SUM(generation), 0)::BIGINT
             FROM user_list_state WHERE tenant_id = $1",
        )
        .await
        .map_err(map_err)?;
    let state = tx.query_one(&st, &[&t]).await.map_err(map_err)?;
    let (live, generation): (i64, i64) = (state.get(0), state.get(1));
    let total = live.max(0) as u64;
    let offset = query.start_index.saturating_sub(1);
    let plan = starts
        .lock()
        .expect("page starts")
        .plan(t, offset, query.count, total, generation);
    let (after, sought) = match plan {
        PlainPage::Empty => {
            tx.commit().await.map_err(map_err)?;
            return Ok(Page {
                total,
                items: Vec::new(),
            });
        }
        PlainPage::After(after) => (after, None),
        PlainPage::Seek(before) => {
            let st = tx
                .prepare_cached(
                    "SELECT u.seq FROM users u WHERE u.tenant_id = $1 AND u.deleted_at IS NULL
                     ORDER BY u.seq LIMIT 1 OFFSET $2",
                )
                .await
                .map_err(map_err)?;
            let after: i64 = tx
                .query_one(&st, &[&t, &before])
                .await
                .map_err(map_err)?
                .get(0);
            (after, Some(after))
        }
    };
    let st = tx
        .prepare_cached(&format!(
            "SELECT {USER_COLS}, u.seq FROM users u
             WHERE u.tenant_id = $1 AND u.deleted_at IS NULL AND u.seq > $2
             ORDER BY u.seq LIMIT $3"
        ))
        .await
        .map_err(map_err)?;
    let count = query.count.min(i64::MAX as u64) as i64;
    let rows = tx
        .query(&st, &[&t, &after, &count])
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    let items = rows.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
    starts.lock().expect("page starts").learn(
        t,
        generation,
        offset,
        sought,
        rows.len(),
        rows.last().map(|r| r.get::<_, i64>(16)),
    );
    Ok(Page { total, items })
}

/// One page of a table aliased `u` (users, or groups, whose columns are named alike so the
/// same filter and sort translation applies) and the total: the tenant's rows and-ed with
/// `base` and the query's filter, in the query's order then insertion order. A page that
/// is not full ends the result and gives the total without a `COUNT(*)` round trip (a
/// `userName eq` lookup never needs one); an empty page past the start does not.
pub(super) async fn list_page<T>(
    c: &deadpool_postgres::Client,
    table: &str,
    cols: &str,
    base: &str,
    tenant: &TenantId,
    query: &ListQuery,
    from_row: fn(&Row) -> Result<T>,
) -> Result<Page<T>> {
    let mut sql = Sql::default();
    let t = sql.bind(Box::new(tenant.to_string()));
    sql.text = format!("u.tenant_id = {t} AND {base}");
    if let Some(f) = &query.filter {
        sql.text.push_str(" AND ");
        filter::push_where(f, &mut sql);
    }
    let count_text = format!("SELECT COUNT(*) FROM {table} u WHERE {}", sql.text);
    let filter_params = sql.params.len();
    if let (Some(seek), true) = (&query.seek, query.count > 0) {
        return keyset_page(c, table, cols, base, tenant, query, seek, from_row, None).await;
    }
    if query.count == 0 {
        return Ok(Page {
            total: count_rows(c, &count_text, &sql.params).await?,
            items: Vec::new(),
        });
    }
    let offset = query.start_index.saturating_sub(1);
    let where_text = std::mem::take(&mut sql.text);
    filter::push_order_by(query.sort.as_ref(), &mut sql);
    let order = std::mem::take(&mut sql.text);
    let limit = sql.bind(Box::new(query.count.min(i64::MAX as u64) as i64));
    let off = sql.bind(Box::new(offset.min(i64::MAX as u64) as i64));
    let text = format!(
        "SELECT {cols} FROM {table} u WHERE {where_text}{order} LIMIT {limit} OFFSET {off}"
    );
    let rows = if query.sort.is_none() && query.filter.as_ref().is_none_or(is_single_key_lookup) {
        // A statement of a fixed shape (a plain page, or a lookup by one key): prepared
        // once per pooled connection, it costs one round trip instead of two. Other
        // shapes, as many as clients can write filters, are not kept.
        let st = c.prepare_cached(&text).await.map_err(map_err)?;
        c.query(&st, &refs(&sql.params)).await
    } else {
        c.query(&text, &refs(&sql.params)).await
    }
    .map_err(map_err)?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let total = match total_from_page(offset, query.count, items.len()) {
        Some(total) => total,
        None => count_rows(c, &count_text, &sql.params[..filter_params]).await?,
    };
    Ok(Page { total, items })
}

/// A keyset page (RFC 9865 cursors) of [`list_page`]'s list: one seek through the index of
/// the sort key (or of ids) wherever the position is; a page read backwards is turned
/// back. The total is `known_total` when the caller has it (an unfiltered account list:
/// the tenant's live count), else `COUNT(*)` unless the first page is not full.
#[allow(clippy::too_many_arguments)]
pub(super) async fn keyset_page<T>(
    c: &deadpool_postgres::Client,
    table: &str,
    cols: &str,
    base: &str,
    tenant: &TenantId,
    query: &ListQuery,
    seek: &cairn_core::query::Seek,
    from_row: fn(&Row) -> Result<T>,
    known_total: Option<u64>,
) -> Result<Page<T>> {
    let mut sql = Sql::default();
    let t = sql.bind(Box::new(tenant.to_string()));
    sql.text = format!("u.tenant_id = {t} AND {base}");
    if let Some(f) = &query.filter {
        sql.text.push_str(" AND ");
        filter::push_where(f, &mut sql);
    }
    let count_text = format!("SELECT COUNT(*) FROM {table} u WHERE {}", sql.text);
    let filter_params = sql.params.len();
    let (order, backward) = filter::push_keyset(query.sort.as_ref(), seek, &mut sql);
    let limit = sql.bind(Box::new(query.count.min(i64::MAX as u64) as i64));
    let text = format!(
        "SELECT {cols} FROM {table} u WHERE {}{order} LIMIT {limit}",
        sql.text
    );
    let rows = c.query(&text, &refs(&sql.params)).await.map_err(map_err)?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    if backward {
        items.reverse();
    }
    let first_and_short =
        matches!(seek, cairn_core::query::Seek::First) && (items.len() as u64) < query.count;
    let total = match known_total {
        Some(n) => n,
        None if first_and_short => items.len() as u64,
        None => count_rows(c, &count_text, &sql.params[..filter_params]).await?,
    };
    Ok(Page { total, items })
}

async fn count_rows(c: &deadpool_postgres::Client, text: &str, params: &[Param]) -> Result<u64> {
    let n: i64 = c
        .query_one(text, &refs(params))
        .await
        .map_err(map_err)?
        .get(0);
    Ok(n.max(0) as u64)
}
#[async_trait]
impl HealthStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.query_one("SELECT 1", &[]).await.map_err(map_err)?;
        Ok(())
    }

    fn load_gauges(&self) -> Vec<LoadGauge> {
        let s = self.pool.status();
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        vec![
            LoadGauge {
                name: "postgres_pool_max",
                help: "Connections the PostgreSQL pool may open",
                value: n(s.max_size),
            },
            LoadGauge {
                name: "postgres_pool_connections",
                help: "Connections the PostgreSQL pool holds open",
                value: n(s.size),
            },
            LoadGauge {
                name: "postgres_pool_in_use",
                help: "PostgreSQL connections lent out to requests",
                value: n(s.size.saturating_sub(s.available)),
            },
            LoadGauge {
                name: "postgres_pool_waiting",
                help: "Requests waiting for a PostgreSQL connection",
                value: n(s.waiting),
            },
        ]
    }

    async fn used_bytes_per_tenant(&self) -> Result<Vec<(TenantId, u64)>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT t.id, (SELECT COALESCE(SUM(u.used_bytes), 0)::BIGINT FROM users u
                     WHERE u.tenant_id = t.id)
                 FROM tenants t ORDER BY t.id",
                &[],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    TenantId::from_trusted(r.get(0)),
                    r.get::<_, i64>(1).max(0) as u64,
                )
            })
            .collect())
    }
}
