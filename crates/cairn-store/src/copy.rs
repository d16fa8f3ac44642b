//! `cairn db copy`: moves a whole deployment from one database to another (SQLite ⇄
//! PostgreSQL, or between two databases of one kind), table by table, row by row, with
//! every column as stored — ids, token hashes, password hashes, audit events and their
//! sequence numbers included.
//!
//! Rules:
//! - both databases are first brought to the current schema (the usual migrations);
//! - the target must be empty (every copied table without rows), else nothing is written;
//! - every table of the source schema must be known here (or listed in [`NOT_COPIED`]
//!   with a reason), so a table added later cannot be left behind silently;
//! - the target is written in one transaction: a failed copy leaves it empty;
//! - at the end the row count of every table is compared between source and target.
//!
//! The copy is an offline operation: stop the instances that write to the source first.

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use cairn_core::error::{Error, Result};
use std::path::PathBuf;
use tokio_postgres::types::ToSql;

/// One end of a copy.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            // Never print a password that may be part of the URL.
            Endpoint::Postgres(url) => match crate::postgres::tls::config(url) {
                Ok(c) => write!(
                    f,
                    "postgres://{}/{}",
                    c.get_hosts()
                        .first()
                        .map(|h| match h {
                            tokio_postgres::config::Host::Tcp(h) => h.clone(),
                            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                        })
                        .unwrap_or_default(),
                    c.get_dbname().unwrap_or("")
                ),
                Err(_) => write!(f, "postgres://…"),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    /// INTEGER in PostgreSQL (4 bytes) where most counters are BIGINT; carried as i64.
    Int32,
    Bool,
    Bytes,
    /// JSON: TEXT in SQLite, JSONB in PostgreSQL; carried as text.
    Json,
}

struct Table {
    name: &'static str,
    /// Unique columns the rows are read in order of (keyset paging).
    key: &'static [&'static str],
    cols: &'static [(&'static str, Kind)],
    /// A PostgreSQL serial column whose sequence must continue after the copied rows.
    serial: Option<&'static str>,
}

use Kind::*;

impl Table {
    /// The values of the key columns of a row.
    fn key_of(&self, row: &[Cell]) -> Vec<Cell> {
        self.key
            .iter()
            .map(|k| {
                let i = self
                    .cols
                    .iter()
                    .position(|(c, _)| c == k)
                    .expect("key column");
                row[i].clone()
            })
            .collect()
    }

    /// One batch in key order, after the given key when `paged` (row-value comparison,
    /// which SQLite and PostgreSQL both support); `param(i)` spells placeholder `i`.
    fn select_sql(&self, cols: &str, paged: bool, param: impl Fn(usize) -> String) -> String {
        let key = self.key.join(", ");
        let filter = if paged {
            let params: Vec<String> = (1..=self.key.len()).map(param).collect();
            format!("WHERE ({key}) > ({})", params.join(", "))
        } else {
            String::new()
        };
        format!(
            "SELECT {cols} FROM {} {filter} ORDER BY {key} LIMIT {BATCH}",
            self.name
        )
    }
}

/// Every copied table, parents before children (foreign keys).
const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("name", Text),
            ("scim_enabled", Bool),
            ("account_size_gb", Int),
            ("created_at", Text),
            ("max_account_size_gb", Int),
            ("stale_days", Int),
        ],
        serial: None,
    },
    Table {
        name: "scim_tokens",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("tenant_id", Text),
            ("hash", Bytes),
            ("hint", Text),
            ("created_at", Text),
            ("last_used_at", Text),
            ("last_user_agent", Text),
            ("revoked_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "users",
        key: &["seq"],
        cols: &[
            ("seq", Int),
            ("id", Text),
            ("tenant_id", Text),
            ("user_name", Text),
            ("user_name_fold", Text),
            ("external_id", Text),
            ("display_name", Text),
            ("display_name_fold", Text),
            ("email", Text),
            ("email_fold", Text),
            ("active", Bool),
            ("doc", Json),
            ("quota_gb", Int),
            ("base_quota_gb", Int),
            ("used_bytes", Int),
            ("scim_managed", Bool),
            ("created_at", Text),
            ("updated_at", Text),
            ("version", Int),
            ("deleted_at", Text),
            ("purge_at", Text),
            ("purging_since", Text),
            ("last_snapshot_at", Text),
            ("last_upload_at", Text),
        ],
        serial: Some("seq"),
    },
    Table {
        name: "groups",
        key: &["seq"],
        cols: &[
            ("seq", Int),
            ("id", Text),
            ("tenant_id", Text),
            ("display_name", Text),
            ("display_name_fold", Text),
            ("external_id", Text),
            ("doc", Json),
            ("size_gb", Int),
            ("created_at", Text),
            ("updated_at", Text),
            ("version", Int),
        ],
        serial: Some("seq"),
    },
    Table {
        name: "group_members",
        key: &["tenant_id", "group_id", "user_id"],
        cols: &[
            ("tenant_id", Text),
            ("group_id", Text),
            ("user_id", Text),
            ("display", Text),
        ],
        serial: None,
    },
    Table {
        name: "backup_keys",
        key: &["tenant_id", "user_id", "key_user"],
        cols: &[
            ("tenant_id", Text),
            ("user_id", Text),
            ("key_user", Text),
            ("name", Text),
            ("name_fold", Text),
            ("secret_hash", Bytes),
            ("created_at", Text),
            ("last_used_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "vault_upload_hours",
        key: &["tenant_id", "user_id", "hour"],
        cols: &[
            ("tenant_id", Text),
            ("user_id", Text),
            ("hour", Int),
            ("bytes", Int),
        ],
        serial: None,
    },
    Table {
        name: "dashboard_users",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("tenant_id", Text),
            ("email", Text),
            ("email_fold", Text),
            ("role", Text),
            ("password_hash", Text),
            ("created_at", Text),
            ("disabled_at", Text),
            ("last_sign_in_at", Text),
            ("totp_secret", Bytes),
            ("totp_enabled_at", Text),
            ("totp_last_step", Int),
        ],
        serial: None,
    },
    Table {
        name: "dashboard_links",
        key: &["token_hash"],
        cols: &[
            ("token_hash", Bytes),
            ("tenant_id", Text),
            ("user_id", Text),
            ("purpose", Text),
            ("created_at", Text),
            ("expires_at", Text),
            ("used_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "dashboard_recovery_codes",
        key: &["user_id", "code_hash"],
        cols: &[
            ("tenant_id", Text),
            ("user_id", Text),
            ("code_hash", Bytes),
            ("used_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "dashboard_policies",
        key: &["tenant_id"],
        cols: &[
            ("tenant_id", Text),
            ("require_second_factor", Bool),
            ("updated_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "dashboard_sessions",
        key: &["id_hash"],
        cols: &[
            ("id_hash", Bytes),
            ("tenant_id", Text),
            ("user_id", Text),
            ("csrf_token", Text),
            ("created_at", Text),
            ("last_seen_at", Text),
            ("expires_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "sso_saml_configs",
        key: &["tenant_id"],
        cols: &[
            ("tenant_id", Text),
            ("enabled", Bool),
            ("idp_entity_id", Text),
            ("sso_url", Text),
            ("certificates", Text),
            ("metadata_xml", Text),
            ("metadata_url", Text),
            ("scope_admins", Bool),
            ("scope_all_accounts", Bool),
            ("scope_accounts", Text),
            ("updated_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "sso_oidc_configs",
        key: &["tenant_id"],
        cols: &[
            ("tenant_id", Text),
            ("enabled", Bool),
            ("issuer", Text),
            ("client_id", Text),
            ("client_secret", Text),
            ("scope_admins", Bool),
            ("scope_all_accounts", Bool),
            ("scope_accounts", Text),
            ("updated_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "sso_subjects",
        key: &["tenant_id", "principal_kind", "principal_id"],
        cols: &[
            ("tenant_id", Text),
            ("principal_kind", Text),
            ("principal_id", Text),
            ("issuer", Text),
            ("subject", Text),
            ("pinned_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "account_sessions",
        key: &["id_hash"],
        cols: &[
            ("id_hash", Bytes),
            ("tenant_id", Text),
            ("user_id", Text),
            ("created_at", Text),
            ("last_seen_at", Text),
            ("expires_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "sso_group_roles",
        key: &["tenant_id", "group_id"],
        cols: &[
            ("tenant_id", Text),
            ("group_id", Text),
            ("role", Text),
            ("updated_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "sso_dashboard_users",
        key: &["dashboard_user_id"],
        cols: &[
            ("dashboard_user_id", Text),
            ("tenant_id", Text),
            ("account_id", Text),
        ],
        serial: None,
    },
    Table {
        name: "sso_sign_in_policies",
        key: &["tenant_id"],
        cols: &[
            ("tenant_id", Text),
            ("password_sign_in", Bool),
            ("break_glass_user", Text),
            ("updated_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "audit_events",
        key: &["id"],
        cols: &[
            ("id", Int),
            ("tenant_id", Text),
            ("at", Text),
            ("actor_kind", Text),
            ("actor_id", Text),
            ("action", Text),
            ("target_type", Text),
            ("target_id", Text),
            ("target_name", Text),
            ("changes", Json),
            ("user_agent", Text),
            ("request_id", Text),
        ],
        serial: Some("id"),
    },
    Table {
        name: "scim_request_batches",
        key: &["last_id"],
        cols: &[
            ("last_id", Int),
            ("tenant_id", Text),
            ("first_id", Int),
            ("oldest_at", Text),
            ("newest_at", Text),
            ("entries_count", Int),
            // Encoded alike by both backends (`crate::reqlog`).
            ("entries", Bytes),
        ],
        serial: None,
    },
    Table {
        name: "scim_request_ids",
        key: &["id"],
        cols: &[("id", Int), ("next_id", Int)],
        serial: None,
    },
    Table {
        name: "scim_request_capture",
        key: &["tenant_id"],
        cols: &[("tenant_id", Text), ("until", Text)],
        serial: None,
    },
    Table {
        name: "vault_protection",
        key: &["tenant_id"],
        cols: &[("tenant_id", Text), ("days", Int), ("updated_at", Text)],
        serial: None,
    },
    Table {
        name: "vault_verifications",
        key: &["tenant_id", "user_id"],
        cols: &[
            ("tenant_id", Text),
            ("user_id", Text),
            ("verified_at", Text),
            ("objects", Int),
            ("bytes", Int),
            ("bad_count", Int),
            ("bad", Text),
        ],
        serial: None,
    },
    Table {
        name: "account_links",
        key: &["token_hash"],
        cols: &[
            ("token_hash", Bytes),
            ("tenant_id", Text),
            ("user_id", Text),
            ("created_at", Text),
            ("expires_at", Text),
            ("used_at", Text),
        ],
        serial: None,
    },
    Table {
        name: "mail_outbox",
        key: &["id"],
        cols: &[
            ("id", Text),
            ("tenant_id", Text),
            ("user_id", Text),
            ("kind", Text),
            ("state", Text),
            ("created_at", Text),
            ("next_attempt_at", Text),
            ("attempts", Int32),
            ("claimed_until", Text),
            ("sent_at", Text),
            ("last_error", Text),
        ],
        serial: None,
    },
    Table {
        name: "welcome_settings",
        key: &["tenant_id"],
        cols: &[
            ("tenant_id", Text),
            ("enabled", Bool),
            ("enabled_at", Text),
            ("remind_days", Int32),
            ("updated_at", Text),
        ],
        serial: None,
    },
];

/// Tables of the schema that are deliberately not copied, with the reason.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "login_failures",
        "recent failed sign-ins (throttling counters that expire within minutes)",
    ),
    (
        "user_list_state",
        "the per-tenant count and change generation of accounts, kept by triggers on both \
         backends: the target rebuilds it as the accounts are copied",
    ),
    (
        "sso_requests",
        "outstanding SAML AuthnRequest ids, usable for minutes: sign-ins in progress \
         during the copy start over",
    ),
    (
        "sso_assertions",
        "the SAML replay store: without the request ids (not copied) no copied assertion \
         could be accepted again anyway",
    ),
    (
        "sso_oidc_requests",
        "OpenID Connect authorization requests in progress, usable for minutes: sign-ins \
         in progress during the copy start over",
    ),
    (
        "schema_migrations",
        "PostgreSQL migration bookkeeping (the target is migrated itself)",
    ),
];

/// Rows read and written per batch.
const BATCH: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// What was copied: rows per table, in copy order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
}

fn invalid(reason: String) -> Error {
    Error::Invalid {
        field: "database",
        reason,
    }
}

/// Copies everything from `from` into the empty database `to`.
pub async fn copy(from: &Endpoint, to: &Endpoint) -> Result<CopyReport> {
    if same_database(from, to) {
        return Err(invalid("source and target are the same database".into()));
    }
    let src = Db::open(from).await?;
    let mut dst = Db::open(to).await?;

    let known: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    for db in [&src, &dst] {
        for table in db.table_names().await? {
            if !known.contains(&table.as_str()) && !NOT_COPIED.iter().any(|(n, _)| *n == table) {
                return Err(Error::Internal(format!(
                    "table {table} of {} is not known to `db copy`; refusing to leave it behind",
                    db.endpoint
                )));
            }
        }
    }
    for t in TABLES {
        let n = dst.count(t.name).await?;
        if n > 0 {
            return Err(invalid(format!(
                "the target {} is not empty ({} has {n} rows); copy only into a new database",
                dst.endpoint, t.name
            )));
        }
    }

    dst.begin().await?;
    let result = async {
        let mut report = Vec::new();
        for t in TABLES {
            let mut after: Option<Vec<Cell>> = None;
            let mut copied = 0u64;
            loop {
                let rows = src.read_batch(t, after.as_ref()).await?;
                if rows.is_empty() {
                    break;
                }
                after = rows.last().map(|r| t.key_of(r));
                copied += rows.len() as u64;
                dst.write_batch(t, &rows).await?;
                if rows.len() < BATCH {
                    break;
                }
            }
            dst.after_table(t).await?;
            report.push((t.name.to_owned(), copied));
        }
        Ok::<_, Error>(report)
    }
    .await;
    let report = match result {
        Ok(r) => {
            dst.commit().await?;
            r
        }
        Err(e) => {
            let _ = dst.rollback().await;
            return Err(e);
        }
    };

    for (name, copied) in &report {
        let (a, b) = (src.count(name).await?, dst.count(name).await?);
        if a != b || a != *copied {
            return Err(Error::Internal(format!(
                "verification failed for {name}: source has {a} rows, target {b}, copied {copied}"
            )));
        }
    }
    Ok(CopyReport { tables: report })
}

fn same_database(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Sqlite(x), Endpoint::Sqlite(y)) => {
            x == y || matches!((x.canonicalize(), y.canonicalize()), (Ok(p), Ok(q)) if p == q)
        }
        (Endpoint::Postgres(x), Endpoint::Postgres(y)) => x == y,
        _ => false,
    }
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

struct Db {
    endpoint: String,
    conn: Conn,
}

fn sqlite_err(e: rusqlite::Error) -> Error {
    Error::Unavailable(format!("sqlite: {e}"))
}

fn pg_err(e: tokio_postgres::Error) -> Error {
    Error::Unavailable(format!("postgresql: {}", crate::postgres::with_causes(&e)))
}

impl Db {
    async fn open(ep: &Endpoint) -> Result<Db> {
        let conn = match ep {
            Endpoint::Sqlite(path) => {
                // Creates the file if needed and brings the schema up to date.
                drop(SqliteStore::open(path)?);
                let c = rusqlite::Connection::open(path).map_err(sqlite_err)?;
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(sqlite_err)?;
                c.pragma_update(None, "foreign_keys", "ON")
                    .map_err(sqlite_err)?;
                Conn::Sqlite(c)
            }
            Endpoint::Postgres(url) => {
                drop(PostgresStore::connect(url).await?);
                let target = crate::postgres::tls::target(url)?;
                let (client, connection) =
                    target.config.connect(target.tls).await.map_err(pg_err)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "db copy: PostgreSQL connection ended");
                    }
                });
                Conn::Postgres(client)
            }
        };
        Ok(Db {
            endpoint: ep.to_string(),
            conn,
        })
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let mut st = c
                    .prepare(
                        "SELECT name FROM sqlite_master WHERE type = 'table' \
                         AND name NOT LIKE 'sqlite_%' ORDER BY name",
                    )
                    .map_err(sqlite_err)?;
                let names = st
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(sqlite_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_err)?;
                Ok(names)
            }
            Conn::Postgres(c) => Ok(c
                .query(
                    "SELECT tablename::text FROM pg_tables \
                     WHERE schemaname = current_schema() ORDER BY 1",
                    &[],
                )
                .await
                .map_err(pg_err)?
                .iter()
                .map(|r| r.get(0))
                .collect()),
        }
    }

    async fn count(&self, table: &str) -> Result<u64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = match &self.conn {
            Conn::Sqlite(c) => c.query_row(&sql, [], |r| r.get(0)).map_err(sqlite_err)?,
            Conn::Postgres(c) => c.query_one(&sql, &[]).await.map_err(pg_err)?.get(0),
        };
        Ok(n as u64)
    }

    async fn begin(&mut self) -> Result<()> {
        self.exec("BEGIN").await
    }
    async fn commit(&mut self) -> Result<()> {
        self.exec("COMMIT").await
    }
    async fn rollback(&mut self) -> Result<()> {
        self.exec("ROLLBACK").await
    }
    async fn exec(&mut self, sql: &str) -> Result<()> {
        match &self.conn {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_err),
            Conn::Postgres(c) => c.batch_execute(sql).await.map_err(pg_err),
        }
    }

    async fn read_batch(&self, t: &Table, after: Option<&Vec<Cell>>) -> Result<Vec<Vec<Cell>>> {
        match &self.conn {
            Conn::Sqlite(c) => {
                let cols = t
                    .cols
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = t.select_sql(&cols, after.is_some(), |i| format!("?{i}"));
                let mut st = c.prepare(&sql).map_err(sqlite_err)?;
                let params: Vec<Box<dyn rusqlite::ToSql>> = after
                    .map(|k| k.iter().map(sqlite_param).collect())
                    .unwrap_or_default();
                let mut rows = st
                    .query(rusqlite::params_from_iter(params.iter()))
                    .map_err(sqlite_err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(sqlite_err)? {
                    let mut row = Vec::with_capacity(t.cols.len());
                    for (i, (_, kind)) in t.cols.iter().enumerate() {
                        row.push(sqlite_cell(r, i, *kind).map_err(sqlite_err)?);
                    }
                    out.push(row);
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let cols = t
                    .cols
                    .iter()
                    .map(|(c, k)| match k {
                        Json => format!("{c}::text"),
                        _ => (*c).to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let params: Vec<Box<dyn ToSql + Sync + Send>> = after
                    .map(|k| k.iter().map(pg_param).collect())
                    .unwrap_or_default();
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let sql = t.select_sql(&cols, after.is_some(), |i| format!("${i}"));
                let rows = c.query(&sql, &refs).await.map_err(pg_err)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let mut row = Vec::with_capacity(t.cols.len());
                    for (i, (_, kind)) in t.cols.iter().enumerate() {
                        row.push(pg_cell(r, i, *kind).map_err(pg_err)?);
                    }
                    out.push(row);
                }
                Ok(out)
            }
        }
    }

    async fn write_batch(&mut self, t: &Table, rows: &[Vec<Cell>]) -> Result<()> {
        let names = t
            .cols
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ");
        match &self.conn {
            Conn::Sqlite(c) => {
                let placeholders = vec!["?"; t.cols.len()].join(", ");
                let mut st = c
                    .prepare_cached(&format!(
                        "INSERT INTO {} ({names}) VALUES ({placeholders})",
                        t.name
                    ))
                    .map_err(sqlite_err)?;
                for row in rows {
                    let params: Vec<Box<dyn rusqlite::ToSql>> =
                        row.iter().map(sqlite_param).collect();
                    st.execute(rusqlite::params_from_iter(params.iter()))
                        .map_err(sqlite_err)?;
                }
                Ok(())
            }
            Conn::Postgres(c) => {
                let width = t.cols.len();
                let mut sql = format!("INSERT INTO {} ({names}) VALUES ", t.name);
                let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
                    Vec::with_capacity(rows.len() * width);
                for (r, row) in rows.iter().enumerate() {
                    if r > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for (i, ((_, kind), cell)) in t.cols.iter().zip(row).enumerate() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        let n = r * width + i + 1;
                        match kind {
                            Json => sql.push_str(&format!("${n}::text::jsonb")),
                            // An i64 parameter, assigned to the INTEGER column.
                            Int32 => sql.push_str(&format!("${n}::bigint")),
                            _ => sql.push_str(&format!("${n}")),
                        }
                        params.push(pg_typed_param(cell, *kind));
                    }
                    sql.push(')');
                }
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                c.execute(&sql, &refs).await.map_err(pg_err)?;
                Ok(())
            }
        }
    }

    /// Continues a PostgreSQL serial column after the copied ids.
    async fn after_table(&mut self, t: &Table) -> Result<()> {
        if let (Conn::Postgres(c), Some(col)) = (&self.conn, t.serial) {
            c.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', '{1}'), \
                     COALESCE((SELECT MAX({1}) FROM {0}), 0) + 1, false)",
                    t.name, col
                ),
                &[],
            )
            .await
            .map_err(pg_err)?;
        }
        Ok(())
    }
}

fn sqlite_cell(r: &rusqlite::Row<'_>, i: usize, kind: Kind) -> rusqlite::Result<Cell> {
    Ok(match kind {
        Text | Json => r
            .get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text),
        Int | Int32 => r.get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
        Bool => r
            .get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, |v| Cell::Bool(v != 0)),
        Bytes => r
            .get::<_, Option<Vec<u8>>>(i)?
            .map_or(Cell::Null, Cell::Bytes),
    })
}

fn sqlite_param(c: &Cell) -> Box<dyn rusqlite::ToSql> {
    match c {
        Cell::Null => Box::new(rusqlite::types::Null),
        Cell::Text(s) => Box::new(s.clone()),
        Cell::Int(i) => Box::new(*i),
        Cell::Bool(b) => Box::new(i64::from(*b)),
        Cell::Bytes(b) => Box::new(b.clone()),
    }
}

fn pg_cell(r: &tokio_postgres::Row, i: usize, kind: Kind) -> Result<Cell, tokio_postgres::Error> {
    Ok(match kind {
        Text | Json => r
            .try_get::<_, Option<String>>(i)?
            .map_or(Cell::Null, Cell::Text),
        Int => r
            .try_get::<_, Option<i64>>(i)?
            .map_or(Cell::Null, Cell::Int),
        Int32 => r
            .try_get::<_, Option<i32>>(i)?
            .map_or(Cell::Null, |v| Cell::Int(i64::from(v))),
        Bool => r
            .try_get::<_, Option<bool>>(i)?
            .map_or(Cell::Null, Cell::Bool),
        Bytes => r
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(Cell::Null, Cell::Bytes),
    })
}

/// A parameter for comparing against a key column (its type known from the cell).
fn pg_param(c: &Cell) -> Box<dyn ToSql + Sync + Send> {
    match c {
        Cell::Null => Box::new(Option::<String>::None),
        Cell::Text(s) => Box::new(s.clone()),
        Cell::Int(i) => Box::new(*i),
        Cell::Bool(b) => Box::new(*b),
        Cell::Bytes(b) => Box::new(b.clone()),
    }
}

/// A parameter for an insert: NULLs get the column's type.
fn pg_typed_param(c: &Cell, kind: Kind) -> Box<dyn ToSql + Sync + Send> {
    match (c, kind) {
        (Cell::Null, Text | Json) => Box::new(Option::<String>::None),
        (Cell::Null, Int | Int32) => Box::new(Option::<i64>::None),
        (Cell::Null, Bool) => Box::new(Option::<bool>::None),
        (Cell::Null, Bytes) => Box::new(Option::<Vec<u8>>::None),
        (c, _) => pg_param(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each copied table's column list names exactly the columns of the SQLite schema, so
    /// a column added by a migration cannot be dropped by a copy.
    #[tokio::test]
    async fn tables_cover_the_whole_sqlite_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&Endpoint::Sqlite(dir.path().join("c.db")))
            .await
            .unwrap();
        let Conn::Sqlite(c) = &db.conn else {
            unreachable!()
        };
        for name in db.table_names().await.unwrap() {
            let Some(t) = TABLES.iter().find(|t| t.name == name) else {
                assert!(
                    NOT_COPIED.iter().any(|(n, _)| *n == name),
                    "table {name} is neither copied nor listed in NOT_COPIED"
                );
                continue;
            };
            let mut st = c
                .prepare(&format!("SELECT name FROM pragma_table_info('{name}')"))
                .unwrap();
            let mut cols: Vec<String> = st
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let mut want: Vec<String> = t.cols.iter().map(|(c, _)| (*c).to_owned()).collect();
            cols.sort();
            want.sort();
            assert_eq!(cols, want, "columns of {name}");
        }
    }

    #[test]
    fn endpoints_print_without_passwords() {
        let e = Endpoint::Postgres("postgres://cairn:s3cret@db.internal:5432/cairn".into());
        let shown = e.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(shown, "postgres://db.internal/cairn");
    }
}
