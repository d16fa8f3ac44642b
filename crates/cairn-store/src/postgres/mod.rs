//! The PostgreSQL backend, for deployments where several stateless Cairn instances share
//! one database. Pooled connections; migrations run under an advisory lock so instances
//! that start at the same moment migrate once.

mod dashboard;
pub(crate) mod filter;
mod groups;
mod vault;

use crate::listing::{is_single_key_lookup, total_from_page, PageStarts, PlainPage};
use async_trait::async_trait;
use cairn_core::audit::{AuditDraft, AuditEvent, AuditQuery};
use cairn_core::auth::{PasswordHash, TokenHash};
use cairn_core::clock::{format_ts, parse_ts};
use cairn_core::dashboard::{AccountQuery, ActivityFilter, DayCount};
use cairn_core::group::{GroupData, GroupRecord, GroupRef, GroupSummary, MemberChange};
use cairn_core::ids::{
    fold_case, DashboardUserId, GroupId, QuotaGb, TenantId, TokenId, UserId, UserName,
};
use cairn_core::query::{ListQuery, Page};
use cairn_core::session::{SessionHash, SessionRecord, ThrottleRule};
use cairn_core::store::{DashboardUser, Role, ScimAuthState, SettingsChange, Store};
use cairn_core::tenant::{Tenant, TokenInfo};
use cairn_core::user::{DocJson, UserData, UserRecord};
use cairn_core::vault::{BackupKeyRecord, ByteCount};
use cairn_core::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use filter::{Param, Sql};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls, Row};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_dashboard.sql"),
    include_str!("../../migrations/postgres/0003_groups.sql"),
    include_str!("../../migrations/postgres/0004_backup_keys.sql"),
    include_str!("../../migrations/postgres/0005_users_paging_index.sql"),
    include_str!("../../migrations/postgres/0006_drop_redundant_user_name_index.sql"),
    include_str!("../../migrations/postgres/0007_user_list_state.sql"),
    include_str!("../../migrations/postgres/0008_purge_marker_and_tenant_limits.sql"),
];
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
    Error::Unavailable(e.to_string())
}

fn pool_err(e: deadpool_postgres::PoolError) -> Error {
    Error::Unavailable(format!("database connection: {e}"))
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
    /// Connects to `url` (a `postgres://` URL) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let cfg: tokio_postgres::Config = url.parse().map_err(|e| Error::Invalid {
            field: "database-url",
            reason: format!("{e}"),
        })?;
        let mut cfg = cfg;
        cfg.connect_timeout(Duration::from_secs(3));
        let mgr = Manager::from_config(
            cfg,
            NoTls,
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
    "id, name, scim_enabled, account_size_gb, created_at, max_account_size_gb";

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

/// A record as the render-only reads return it. The driver has already parsed the
/// `jsonb` column, so the text is written back out (the renderer copies it into the
/// response, which still costs less than rendering the parsed tree).
fn as_text(u: UserRecord) -> UserRecord<DocJson> {
    u.map_doc(|d| DocJson(d.to_string()))
}

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

/// One page of a tenant's live accounts and the total.
async fn list_live_users(
    c: &mut deadpool_postgres::Client,
    tenant: &TenantId,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> Result<Page<UserRecord>> {
    if query.filter.is_none() && query.sort.is_none() {
        return list_plain_users(c, tenant, query, starts).await;
    }
    list_page(
        c,
        "users",
        USER_COLS,
        "u.deleted_at IS NULL",
        tenant,
        query,
        user_from_row,
    )
    .await
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

async fn count_rows(c: &deadpool_postgres::Client, text: &str, params: &[Param]) -> Result<u64> {
    let n: i64 = c
        .query_one(text, &refs(params))
        .await
        .map_err(map_err)?
        .get(0);
    Ok(n.max(0) as u64)
}

async fn get_user_where<C: GenericClient>(
    c: &C,
    tenant: &str,
    id: &str,
    live_only: bool,
) -> Result<Option<UserRecord>> {
    let live = if live_only {
        " AND u.deleted_at IS NULL"
    } else {
        ""
    };
    let row = c
        .query_opt(
            &format!("SELECT {USER_COLS} FROM users u WHERE u.tenant_id = $1 AND u.id = $2{live}"),
            &[&tenant, &id],
        )
        .await
        .map_err(map_err)?;
    row.as_ref().map(user_from_row).transpose()
}

/// A live account by id through a statement prepared once per pooled connection
/// (deadpool's statement cache): the lookup behind every GET, PUT and PATCH of a user
/// skips the Parse round trip an unprepared query costs.
async fn live_user(
    c: &deadpool_postgres::Client,
    tenant: &TenantId,
    id: &UserId,
) -> Result<Option<UserRecord>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {USER_COLS} FROM users u WHERE u.tenant_id = $1 AND u.id = $2 AND u.deleted_at IS NULL"
        ))
        .await
        .map_err(map_err)?;
    let row = c
        .query_opt(&st, &[&tenant.as_str(), &id.as_str()])
        .await
        .map_err(map_err)?;
    row.as_ref().map(user_from_row).transpose()
}

fn fold_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(fold_case)
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_tenant(&self, t: &Tenant, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO tenants (id, name, scim_enabled, account_size_gb, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&t.id.as_str(), &t.name, &t.scim_enabled, &i64::from(t.account_size_gb.get()), &ts(t.created_at)],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        get_tenant(&**c, tenant.as_str()).await
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!("SELECT {TENANT_COLS} FROM tenants ORDER BY created_at, id"),
                &[],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_settings(
        &self,
        tenant: &TenantId,
        change: &SettingsChange,
        audits: Vec<AuditDraft>,
    ) -> Result<Tenant> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let id = tenant.as_str();
        if let Some(e) = change.scim_enabled {
            tx.execute(
                "UPDATE tenants SET scim_enabled = $1 WHERE id = $2",
                &[&e, &id],
            )
            .await
            .map_err(map_err)?;
        }
        if let Some(s) = change.account_size_gb {
            tx.execute(
                "UPDATE tenants SET account_size_gb = $1 WHERE id = $2",
                &[&i64::from(s.get()), &id],
            )
            .await
            .map_err(map_err)?;
        }
        if let Some(cap) = change.max_account_size_gb {
            tx.execute(
                "UPDATE tenants SET max_account_size_gb = $1 WHERE id = $2",
                &[&cap.map(|c| i64::from(c.get())), &id],
            )
            .await
            .map_err(map_err)?;
        }
        for a in &audits {
            insert_audit(&*tx, a).await?;
        }
        let t = get_tenant(&*tx, id)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        tx.commit().await.map_err(map_err)?;
        Ok(t)
    }

    async fn replace_token(
        &self,
        tenant: &TenantId,
        token: &TokenInfo,
        hash: &TokenHash,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let at = ts(token.created_at);
        // Serialise generations per tenant. Without the lock, two concurrent ones each
        // revoke only the tokens committed before their UPDATE began (READ COMMITTED), so
        // both new tokens stayed live.
        tx.execute(
            "SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "UPDATE scim_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND revoked_at IS NULL",
            &[&at, &tenant.as_str()],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "INSERT INTO scim_tokens (id, tenant_id, hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&token.id.as_str(), &tenant.as_str(), &hash.as_bytes().as_slice(), &token.hint, &at],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn scim_auth_state(&self, tenant: &TenantId) -> Result<Option<ScimAuthState>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let Some(t) = get_tenant(&**c, tenant.as_str()).await? else {
            return Ok(None);
        };
        let rows = c
            .query(
                "SELECT id, hash FROM scim_tokens WHERE tenant_id = $1 AND revoked_at IS NULL",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        let tokens = rows
            .iter()
            .filter_map(|r| {
                let h: Vec<u8> = r.get(1);
                TokenHash::from_bytes(&h).map(|h| (TokenId::from_trusted(r.get(0)), h))
            })
            .collect();
        Ok(Some(ScimAuthState { tenant: t, tokens }))
    }

    async fn token_info(&self, tenant: &TenantId) -> Result<Option<TokenInfo>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT id, tenant_id, hint, created_at, last_used_at, last_user_agent FROM scim_tokens
                 WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(TokenInfo {
                id: TokenId::from_trusted(r.get(0)),
                tenant_id: TenantId::from_trusted(r.get(1)),
                hint: r.get(2),
                created_at: time_of(r.get(3))?,
                last_used_at: opt_time(r.get(4))?,
                last_user_agent: r.get(5),
            })
        })
        .transpose()
    }

    async fn touch_token(
        &self,
        tenant: &TenantId,
        token: &TokenId,
        at: OffsetDateTime,
        user_agent: Option<&str>,
    ) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let ua = user_agent.map(|s| s.chars().take(200).collect::<String>());
        c.execute(
            "UPDATE scim_tokens SET last_used_at = $1, last_user_agent = COALESCE($2, last_user_agent)
             WHERE tenant_id = $3 AND id = $4",
            &[&ts(at), &ua, &tenant.as_str(), &token.as_str()],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn set_backup_key(&self, key: &BackupKeyRecord, audit: AuditDraft) -> Result<()> {
        vault::set_backup_key(self, key, audit).await
    }

    async fn backup_key(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<BackupKeyRecord>> {
        vault::backup_key(self, tenant, user).await
    }

    async fn charge_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
        limit: Option<ByteCount>,
    ) -> Result<bool> {
        vault::charge_used_bytes(self, tenant, user, bytes, limit).await
    }

    async fn refund_used_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: ByteCount,
    ) -> Result<bool> {
        vault::refund_used_bytes(self, tenant, user, bytes).await
    }

    async fn record_audit(&self, audit: AuditDraft) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        insert_audit(&**c, &audit).await
    }

    async fn create_user(&self, u: &UserRecord, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO users (id, tenant_id, user_name, user_name_fold, external_id, display_name,
                display_name_fold, email, email_fold, active, doc, quota_gb, used_bytes, scim_managed,
                created_at, updated_at, version, base_quota_gb)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $12)",
            &[
                &u.id.as_str(),
                &u.tenant_id.as_str(),
                &u.user_name.as_str(),
                &u.user_name.folded(),
                &u.external_id,
                &u.display_name,
                &fold_opt(&u.display_name),
                &u.email,
                &fold_opt(&u.email),
                &u.active,
                &u.doc,
                &i64::from(u.quota_gb.get()),
                &u.used_bytes,
                &u.scim_managed,
                &ts(u.created_at),
                &ts(u.updated_at),
                &u.version,
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)?;
        self.refresh_statistics();
        Ok(())
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        live_user(&c, tenant, id).await
    }

    async fn get_user_with_groups(
        &self,
        tenant: &TenantId,
        id: &UserId,
        with_groups: bool,
    ) -> Result<Option<(UserRecord<DocJson>, Vec<GroupRef>)>> {
        // One pooled connection for both reads.
        let c = self.pool.get().await.map_err(pool_err)?;
        let Some(u) = live_user(&c, tenant, id).await? else {
            return Ok(None);
        };
        let groups = if with_groups {
            groups::groups_of_users_on(&c, tenant, std::slice::from_ref(id))
                .await?
                .into_iter()
                .map(|(_, g)| g)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Some((as_text(u), groups)))
    }

    async fn list_users_with_groups(
        &self,
        tenant: &TenantId,
        query: &ListQuery,
        with_groups: bool,
    ) -> Result<(Page<UserRecord<DocJson>>, Vec<(UserId, GroupRef)>)> {
        // One pooled connection for the page and its members' groups.
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let page = list_live_users(&mut c, tenant, query, &self.page_starts).await?;
        let groups = if with_groups && !page.items.is_empty() {
            let ids: Vec<UserId> = page.items.iter().map(|u| u.id.clone()).collect();
            groups::groups_of_users_on(&c, tenant, &ids).await?
        } else {
            Vec::new()
        };
        let page = Page {
            total: page.total,
            items: page.items.into_iter().map(as_text).collect(),
        };
        Ok((page, groups))
    }

    async fn get_user_any(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        get_user_where(&**c, tenant.as_str(), id.as_str(), false).await
    }

    async fn list_users(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<UserRecord>> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        list_live_users(&mut c, tenant, query, &self.page_starts).await
    }

    async fn update_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: i64,
        d: &UserData,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<UserRecord> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE users u SET user_name = $1, user_name_fold = $2, external_id = $3, display_name = $4,
                        display_name_fold = $5, email = $6, email_fold = $7, active = $8, doc = $9,
                        updated_at = $10, version = version + 1
                     WHERE tenant_id = $11 AND id = $12 AND deleted_at IS NULL AND version = $13
                     RETURNING {USER_COLS}"
                ),
                &[
                    &d.user_name.as_str(),
                    &d.user_name.folded(),
                    &d.external_id,
                    &d.display_name,
                    &fold_opt(&d.display_name),
                    &d.email,
                    &fold_opt(&d.email),
                    &d.active,
                    &d.doc,
                    &ts(at),
                    &tenant.as_str(),
                    &id.as_str(),
                    &expected_version,
                ],
            )
            .await
            .map_err(map_err)?;
        let Some(row) = row else {
            return match get_user_where(&*tx, tenant.as_str(), id.as_str(), true).await? {
                Some(_) => Err(Error::VersionMismatch),
                None => Err(Error::NotFound("user")),
            };
        };
        let u = user_from_row(&row)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(u)
    }

    async fn soft_delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: Option<i64>,
        at: OffsetDateTime,
        purge_at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "UPDATE users SET deleted_at = $1, purge_at = $2, updated_at = $1, version = version + 1
                 WHERE tenant_id = $3 AND id = $4 AND deleted_at IS NULL AND ($5::bigint IS NULL OR version = $5)",
                &[&ts(at), &ts(purge_at), &tenant.as_str(), &id.as_str(), &expected_version],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return match get_user_where(&*tx, tenant.as_str(), id.as_str(), true).await? {
                Some(_) => Err(Error::VersionMismatch),
                None => Err(Error::NotFound("user")),
            };
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn restore_user(
        &self,
        tenant: &TenantId,
        user_name: &UserName,
        at: OffsetDateTime,
        mut audit: AuditDraft,
    ) -> Result<UserRecord> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let row = tx
            .query_opt(
                "SELECT id FROM users WHERE tenant_id = $1 AND user_name_fold = $2 AND deleted_at IS NOT NULL
                 AND purging_since IS NULL ORDER BY deleted_at DESC, seq DESC LIMIT 1 FOR UPDATE",
                &[&tenant.as_str(), &user_name.folded()],
            )
            .await
            .map_err(map_err)?;
        let id: String = row.ok_or(Error::NotFound("deleted account"))?.get(0);
        tx.execute(
            "UPDATE users SET deleted_at = NULL, purge_at = NULL, updated_at = $1, version = version + 1
             WHERE tenant_id = $2 AND id = $3",
            &[&ts(at), &tenant.as_str(), &id],
        )
        .await
        .map_err(map_err)?;
        audit.target_id = Some(id.clone());
        insert_audit(&*tx, &audit).await?;
        let u = get_user_where(&*tx, tenant.as_str(), &id, true)
            .await?
            .ok_or(Error::NotFound("user"))?;
        tx.commit().await.map_err(map_err)?;
        Ok(u)
    }

    async fn begin_purge(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<UserRecord>> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        // FOR UPDATE: a restore of the same account waits for the mark, then sees it.
        let rows = tx
            .query(
                &format!(
                    "SELECT {USER_COLS} FROM users u WHERE u.deleted_at IS NOT NULL AND u.purge_at <= $1
                     ORDER BY u.purge_at LIMIT $2 FOR UPDATE"
                ),
                &[&ts(now), &i64::from(limit)],
            )
            .await
            .map_err(map_err)?;
        let due = rows.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
        for u in &due {
            tx.execute(
                "UPDATE users SET purging_since = $1
                 WHERE tenant_id = $2 AND id = $3 AND purging_since IS NULL",
                &[&ts(now), &u.tenant_id.as_str(), &u.id.as_str()],
            )
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(due)
    }

    async fn finish_purge(
        &self,
        tenant: &TenantId,
        id: &UserId,
        audits: Vec<AuditDraft>,
    ) -> Result<bool> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let n = tx
            .execute(
                "DELETE FROM users WHERE tenant_id = $1 AND id = $2 AND purging_since IS NOT NULL",
                &[&tenant.as_str(), &id.as_str()],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Ok(false);
        }
        for a in &audits {
            insert_audit(&*tx, a).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn create_dashboard_user(&self, u: &DashboardUser, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO dashboard_users (id, tenant_id, email, email_fold, role, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &u.id.as_str(),
                &u.tenant_id.as_str(),
                &u.email,
                &fold_case(&u.email),
                &u.role.as_str(),
                &u.password_hash.as_phc(),
                &ts(u.created_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn find_dashboard_user(&self, email: &str) -> Result<Option<DashboardUser>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT id, tenant_id, email, role, password_hash, created_at FROM dashboard_users WHERE email_fold = $1",
                &[&fold_case(email.trim())],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            let role: String = r.get(3);
            Ok(DashboardUser {
                id: DashboardUserId::from_trusted(r.get(0)),
                tenant_id: TenantId::from_trusted(r.get(1)),
                email: r.get(2),
                role: Role::parse(&role).unwrap_or(Role::Viewer),
                password_hash: PasswordHash::from_phc(r.get(4)),
                created_at: time_of(r.get(5))?,
            })
        })
        .transpose()
    }

    async fn list_audit(&self, tenant: &TenantId, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        let t = sql.bind(Box::new(tenant.to_string()));
        sql.text = format!(
            "SELECT id, tenant_id, at, actor_kind, actor_id, action, target_type, target_id, target_name,
                    changes, user_agent, request_id
             FROM audit_events WHERE tenant_id = {t}"
        );
        if let Some(target) = &q.target_id {
            let p = sql.bind(Box::new(target.clone()));
            sql.text.push_str(&format!(" AND target_id = {p}"));
        }
        if let Some(action) = q.action {
            let p = sql.bind(Box::new(action.as_str().to_owned()));
            sql.text.push_str(&format!(" AND action = {p}"));
        }
        let limit = if q.limit == 0 { 1000 } else { q.limit };
        let p = sql.bind(Box::new(i64::from(limit)));
        sql.text.push_str(&format!(" ORDER BY id DESC LIMIT {p}"));
        let rows = c
            .query(&sql.text, &refs(&sql.params))
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: r.get(0),
                    tenant_id: TenantId::from_trusted(r.get(1)),
                    at: time_of(r.get(2))?,
                    actor_kind: r.get(3),
                    actor_id: r.get(4),
                    action: r.get(5),
                    target_type: r.get(6),
                    target_id: r.get(7),
                    target_name: r.get(8),
                    changes: r.get(9),
                    user_agent: r.get(10),
                    request_id: r.get(11),
                })
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.query_one("SELECT 1", &[]).await.map_err(map_err)?;
        Ok(())
    }

    // --- groups (postgres/groups.rs) ----------------------------------------------------
    async fn create_group(
        &self,
        group: &GroupRecord,
        members: &[UserId],
        audit: AuditDraft,
    ) -> Result<()> {
        self.grp_create(group, members, audit).await
    }
    async fn get_group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<GroupRecord>> {
        self.grp_get(tenant, id).await
    }
    async fn find_group_by_name(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<GroupRecord>> {
        self.grp_find_by_name(tenant, name).await
    }
    async fn list_groups(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<GroupRecord>> {
        self.grp_list(tenant, query).await
    }
    async fn group_members(&self, tenant: &TenantId, id: &GroupId) -> Result<Vec<UserId>> {
        self.grp_members(tenant, id, None).await
    }
    async fn group_members_up_to(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        self.grp_members(tenant, id, Some(limit)).await
    }
    async fn groups_of_users(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, GroupRef)>> {
        self.grp_of_users(tenant, users).await
    }
    async fn update_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        data: Option<&GroupData>,
        members: &MemberChange,
        audit: AuditDraft,
    ) -> Result<GroupRecord> {
        self.grp_update(tenant, id, expected_version, data, members, audit)
            .await
    }
    async fn delete_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        audit: AuditDraft,
    ) -> Result<()> {
        self.grp_delete(tenant, id, expected_version, audit).await
    }
    async fn set_group_size(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        size: Option<QuotaGb>,
        audit: AuditDraft,
    ) -> Result<GroupRecord> {
        self.grp_set_size(tenant, id, size, audit).await
    }
    async fn group_summaries(&self, tenant: &TenantId) -> Result<Vec<GroupSummary>> {
        self.grp_summaries(tenant).await
    }

    // --- dashboard (postgres/dashboard.rs) ----------------------------------------------
    async fn create_session(&self, s: &SessionRecord) -> Result<()> {
        self.dash_create_session(s).await
    }
    async fn get_session(
        &self,
        id: &SessionHash,
    ) -> Result<Option<(SessionRecord, DashboardUser)>> {
        self.dash_get_session(id).await
    }
    async fn touch_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()> {
        self.dash_touch_session(id, at).await
    }
    async fn delete_session(&self, id: &SessionHash) -> Result<()> {
        self.dash_delete_session(id).await
    }
    async fn delete_expired_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        failures_before: OffsetDateTime,
    ) -> Result<()> {
        self.dash_delete_expired(now, idle_before, failures_before)
            .await
    }
    async fn record_login_failure(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
        self.dash_record_failure(keys, at).await
    }
    async fn login_failures_since(
        &self,
        key: &[u8; 32],
        since: OffsetDateTime,
    ) -> Result<(u32, Option<OffsetDateTime>)> {
        self.dash_failures_since(key, since).await
    }
    async fn clear_login_failures(&self, key: &[u8; 32]) -> Result<()> {
        self.dash_clear_failures(key).await
    }
    async fn charge_login_attempt(
        &self,
        rules: &[ThrottleRule],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<Option<time::Duration>> {
        self.dash_charge_attempt(rules, now, since).await
    }
    async fn credit_login_attempt(&self, keys: &[[u8; 32]], at: OffsetDateTime) -> Result<()> {
        self.dash_credit_attempt(keys, at).await
    }
    async fn list_accounts(&self, tenant: &TenantId, q: &AccountQuery) -> Result<Page<UserRecord>> {
        self.dash_list_accounts(tenant, q).await
    }
    async fn list_activity(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEvent>> {
        self.dash_list_activity(tenant, f, before_id, limit).await
    }
    async fn activity_per_day(
        &self,
        tenant: &TenantId,
        f: &ActivityFilter,
        since: OffsetDateTime,
    ) -> Result<Vec<DayCount>> {
        self.dash_activity_per_day(tenant, f, since).await
    }
    async fn activity_clients(&self, tenant: &TenantId) -> Result<Vec<String>> {
        self.dash_activity_clients(tenant).await
    }
}
