//! SQLite side of backup accounts: create, read, list (SCIM and the
//! dashboard's accounts list), update, soft delete, restore and the retention purge.

use super::*;
use crate::listing::{is_key_lookup, PageStarts, PlainPage};
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::dashboard::{AccountCursor, AccountOrder, AccountQuery};
use cairn_core::group::GroupRef;
use cairn_core::ids::{fold_case, TenantId, UserId, UserName};
use cairn_core::query::{ListQuery, Page};
use cairn_core::store::*;
use cairn_core::user::{AccountStatus, DocJson, UserData, UserRecord};
use cairn_core::{Error, Result};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;
use std::sync::Mutex;
use time::OffsetDateTime;

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &UserRecord, audit: AuditDraft) -> Result<()> {
        // Serialised here, not on the writer thread; the document is not copied.
        let u = user.with_doc(user.doc.to_string());
        let changes = audit.changes.to_string();
        self.writer
            .write(move |c| {
                let mut st = db(c.prepare_cached(
                    "INSERT INTO users (id, tenant_id, user_name, user_name_fold, external_id, display_name,
                        display_name_fold, email, email_fold, active, doc, quota_gb, used_bytes, scim_managed,
                        created_at, updated_at, version, base_quota_gb)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?12)",
                ))?;
                db(st.execute(params![
                    u.id.as_str(),
                    u.tenant_id.as_str(),
                    u.user_name.as_str(),
                    u.user_name.folded(),
                    u.external_id,
                    u.display_name,
                    fold_opt(&u.display_name),
                    u.email,
                    fold_opt(&u.email),
                    u.active,
                    u.doc,
                    u.quota_gb.get(),
                    u.used_bytes,
                    u.scim_managed,
                    ts(u.created_at),
                    ts(u.updated_at),
                    u.version,
                ]))?;
                db(insert_audit_with(c, &audit, &changes))
            })
            .await
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read_point(move |c| get_user_where(c, &t, &i, true))
            .await
    }

    async fn get_user_any(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read_point(move |c| get_user_where(c, &t, &i, false))
            .await
    }

    async fn list_users(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<UserRecord>> {
        let tenant = tenant.to_string();
        let query = query.clone();
        let starts = self.page_starts.clone();
        self.read(move |c| list_users_in(c, tenant, &query, &starts))
            .await
    }

    async fn get_user_with_groups(
        &self,
        tenant: &TenantId,
        id: &UserId,
        with_groups: bool,
    ) -> Result<Option<(UserRecord<DocJson>, Vec<GroupRef>)>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read_point(move |c| {
            let Some(u) = get_user_where::<DocJson>(c, &t, &i, true)? else {
                return Ok(None);
            };
            let groups = if with_groups {
                let ids = [u.id.clone()];
                groups::groups_of_users_in(c, &t, &ids)?
                    .into_iter()
                    .map(|(_, g)| g)
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Some((u, groups)))
        })
        .await
    }

    async fn list_users_with_groups(
        &self,
        tenant: &TenantId,
        query: &ListQuery,
        with_groups: bool,
    ) -> Result<(Page<UserRecord<DocJson>>, Vec<(UserId, GroupRef)>)> {
        let t = tenant.to_string();
        let query = query.clone();
        let point = query.filter.as_ref().is_some_and(is_key_lookup);
        let starts = self.page_starts.clone();
        let read = move |c: &Connection| {
            let page = list_users_in::<DocJson>(c, t.clone(), &query, &starts)?;
            let groups = if with_groups && !page.items.is_empty() {
                let ids: Vec<UserId> = page.items.iter().map(|u| u.id.clone()).collect();
                groups::groups_of_users_in(c, &t, &ids)?
            } else {
                Vec::new()
            };
            Ok((page, groups))
        };
        if point {
            self.read_point(read).await
        } else {
            self.read(read).await
        }
    }

    async fn update_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        expected_version: i64,
        data: &UserData,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<UserRecord> {
        let (t, i) = (tenant.to_string(), id.to_string());
        // Serialised here, not on the writer thread; the document is not copied there,
        // nor parsed back from the row.
        let (doc, changes) = (data.doc.to_string(), audit.changes.to_string());
        let d = UserData {
            doc: Value::Null,
            user_name: data.user_name.clone(),
            external_id: data.external_id.clone(),
            display_name: data.display_name.clone(),
            email: data.email.clone(),
            active: data.active,
        };
        let written = self
            .writer
            .write(move |c| {
                let n = db(c
                    .prepare_cached(
                        "UPDATE users SET user_name = ?, user_name_fold = ?, external_id = ?, display_name = ?,
                            display_name_fold = ?, email = ?, email_fold = ?, active = ?, doc = ?,
                            updated_at = ?, version = version + 1
                         WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL AND version = ?",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            d.user_name.as_str(),
                            d.user_name.folded(),
                            d.external_id,
                            d.display_name,
                            fold_opt(&d.display_name),
                            d.email,
                            fold_opt(&d.email),
                            d.active,
                            doc,
                            ts(at),
                            t,
                            i,
                            expected_version,
                        ])
                    }))?;
                if n == 0 {
                    let live = db(get_user_where::<()>(c, &t, &i, true))?.is_some();
                    return Err(missed_write("user", live));
                }
                db(insert_audit_with(c, &audit, &changes))?;
                db(get_user_where::<()>(c, &t, &i, true))?.ok_or(Error::NotFound("user"))
            })
            .await?;
        Ok(written.map_doc(|()| data.doc.clone()))
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
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "UPDATE users SET deleted_at = ?, purge_at = ?, updated_at = ?, version = version + 1
                     WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL AND (? IS NULL OR version = ?)",
                    params![ts(at), ts(purge_at), ts(at), t, i, expected_version, expected_version],
                ))?;
                if n == 0 {
                    let live = db(get_user_where::<()>(c, &t, &i, true))?.is_some();
                    return Err(missed_write("user", live));
                }
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn restore_user(
        &self,
        tenant: &TenantId,
        user_name: &UserName,
        at: OffsetDateTime,
        mut audit: AuditDraft,
    ) -> Result<UserRecord> {
        let t = tenant.to_string();
        let fold = user_name.folded();
        self.writer
            .write(move |c| {
                let found: Option<(String, Option<String>)> = db(c
                    .query_row(
                        "SELECT id, CASE WHEN purge_at <= ? THEN purge_at END FROM users
                         WHERE tenant_id = ? AND user_name_fold = ? AND deleted_at IS NOT NULL
                         AND purging_since IS NULL ORDER BY deleted_at DESC, seq DESC LIMIT 1",
                        params![ts(at), t, fold],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional())?;
                let (id, ended) = found.ok_or(Error::NotFound("deleted account"))?;
                if let Some(purge_at) = ended {
                    return Err(crate::retention_ended(&purge_at));
                }
                db(c.execute(
                    "UPDATE users SET deleted_at = NULL, purge_at = NULL, updated_at = ?, version = version + 1
                     WHERE tenant_id = ? AND id = ?",
                    params![ts(at), t, id],
                ))?;
                audit.target_id = Some(id.clone());
                db(insert_audit(c, &audit))?;
                db(get_user_where(c, &t, &id, true))?.ok_or(Error::NotFound("user"))
            })
            .await
    }

    async fn begin_purge(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<UserRecord>> {
        self.writer
            .write(move |c| {
                let due = db(c
                    .prepare(&format!(
                        "SELECT {USER_COLS} FROM users u WHERE u.deleted_at IS NOT NULL AND u.purge_at <= ?
                         ORDER BY u.purge_at LIMIT ?"
                    ))
                    .and_then(|mut st| {
                        st.query_map(params![ts(now), limit], user_from_row)?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    }))?;
                for u in &due {
                    db(c.execute(
                        "UPDATE users SET purging_since = ?
                         WHERE tenant_id = ? AND id = ? AND purging_since IS NULL",
                        params![ts(now), u.tenant_id.as_str(), u.id.as_str()],
                    ))?;
                }
                Ok(due)
            })
            .await
    }

    async fn finish_purge(
        &self,
        tenant: &TenantId,
        id: &UserId,
        audits: Vec<AuditDraft>,
    ) -> Result<bool> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                let n = db(c.execute(
                    "DELETE FROM users WHERE tenant_id = ? AND id = ? AND purging_since IS NOT NULL",
                    params![t, i],
                ))?;
                if n == 0 {
                    return Ok(false);
                }
                for a in &audits {
                    db(insert_audit(c, a))?;
                }
                Ok(true)
            })
            .await
    }

    async fn list_accounts(&self, tenant: &TenantId, q: &AccountQuery) -> Result<Page<UserRecord>> {
        let (t, q) = (tenant.to_string(), q.clone());
        self.read(move |c| list_accounts(c, &t, &q)).await
    }
}

/// Upper bound for a prefix range: every string that starts with `p` sorts (bytewise, as
/// SQLite's BINARY collation does) below `p` followed by the highest code point.
fn prefix_end(p: &str) -> String {
    format!("{p}\u{10FFFF}")
}

fn list_accounts(
    c: &Connection,
    tenant: &str,
    q: &AccountQuery,
) -> rusqlite::Result<Page<UserRecord>> {
    let mut where_sql = String::from("u.tenant_id = ?");
    let mut params = vec![SqlValue::Text(tenant.to_owned())];
    if let Some(s) = &q.search {
        // Prefix ranges over three indexed columns (SQLite answers the OR with one index
        // lookup per branch); an id matches exactly.
        where_sql.push_str(
            " AND ((u.user_name_fold >= ? AND u.user_name_fold < ?) \
             OR (u.email_fold >= ? AND u.email_fold < ?) \
             OR (u.display_name_fold >= ? AND u.display_name_fold < ?) OR u.id = ?)",
        );
        for _ in 0..3 {
            params.push(SqlValue::Text(s.clone()));
            params.push(SqlValue::Text(prefix_end(s)));
        }
        params.push(SqlValue::Text(s.clone()));
    }
    match q.status {
        None => {}
        Some(AccountStatus::Active) => {
            where_sql.push_str(" AND u.deleted_at IS NULL AND u.active = 1")
        }
        Some(AccountStatus::Suspended) => {
            where_sql.push_str(" AND u.deleted_at IS NULL AND u.active = 0")
        }
        Some(AccountStatus::Deleted) => where_sql.push_str(" AND u.deleted_at IS NOT NULL"),
    }
    // The sort key (see `AccountOrder`); the last backup's is the expression of the
    // index of migration 0014.
    let key = match q.order {
        AccountOrder::Name => "u.user_name_fold",
        AccountOrder::LastBackup => "COALESCE(u.last_snapshot_at, '')",
    };
    if let Some(before) = q.snapshot_before {
        where_sql.push_str(" AND COALESCE(u.last_snapshot_at, '') < ?");
        params.push(SqlValue::Text(ts(before)));
    }
    let total: i64 = c
        .prepare_cached(&format!("SELECT COUNT(*) FROM users u WHERE {where_sql}"))?
        .query_row(params_from_iter(params.iter()), |r| r.get(0))?;
    let (cmp, order) = match &q.cursor {
        None => (None, "ASC"),
        Some(AccountCursor::After { key, id }) => (Some((">", key, id)), "ASC"),
        Some(AccountCursor::Before { key, id }) => (Some(("<", key, id)), "DESC"),
    };
    if let Some((op, cursor_key, id)) = cmp {
        where_sql.push_str(&format!(" AND ({key}, u.id) {op} (?, ?)"));
        params.push(SqlValue::Text(cursor_key.clone()));
        params.push(SqlValue::Text(id.to_string()));
    }
    params.push(SqlValue::Integer(i64::from(q.limit) + 1));
    let sql = format!(
        "SELECT {USER_COLS} FROM users u WHERE {where_sql} \
         ORDER BY {key} {order}, u.id {order} LIMIT ?"
    );
    let mut items = c
        .prepare_cached(&sql)?
        .query_map(params_from_iter(params.iter()), user_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if order == "DESC" {
        items.reverse();
    }
    Ok(Page {
        total: total.max(0) as u64,
        items,
    })
}

fn get_user_where<D: FromDoc>(
    c: &Connection,
    tenant: &str,
    id: &str,
    live_only: bool,
) -> rusqlite::Result<Option<UserRecord<D>>> {
    let sql = if live_only {
        concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.tenant_id = ? AND u.id = ? AND u.deleted_at IS NULL"
        )
    } else {
        concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.tenant_id = ? AND u.id = ?"
        )
    };
    c.prepare_cached(sql)?
        .query_row([tenant, id], user_from_row::<D>)
        .optional()
}

fn fold_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(fold_case)
}

/// One page of a tenant's live accounts (and the total), on a connection the caller holds.
fn list_users_in<D: FromDoc>(
    c: &Connection,
    tenant: String,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> rusqlite::Result<Page<UserRecord<D>>> {
    if query.filter.is_none() && query.sort.is_none() && query.seek.is_none() {
        return list_live_users(c, &tenant, query, starts);
    }
    if let (None, Some(seek)) = (&query.filter, &query.seek) {
        // An unfiltered cursor page takes its total from the tenant's live count (kept by
        // triggers, migration 0007) as the plain list does, instead of COUNT(*); both
        // are read in the caller's snapshot.
        let live: i64 = c
            .prepare_cached("SELECT live FROM user_list_state WHERE tenant_id = ?")?
            .query_row([&tenant], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        return super::keyset_page(
            c,
            "users",
            USER_COLS,
            "u.tenant_id = ? AND u.deleted_at IS NULL",
            vec![rusqlite::types::Value::Text(tenant)],
            query,
            seek,
            user_from_row::<D>,
            move |_| Ok(live.max(0) as u64),
        );
    }
    list_page(
        c,
        "users",
        USER_COLS,
        "u.tenant_id = ? AND u.deleted_at IS NULL",
        tenant,
        query,
        user_from_row::<D>,
    )
}

/// A page of a tenant's live accounts in insertion order, without a filter: what Okta's
/// and Entra's imports read page after page. `totalResults` is the tenant's live count
/// kept by triggers (migration 0007), not a `COUNT(*)` over the tenant. The page is read
/// from where it starts through the primary key (`seq > after`); where that is comes from
/// an earlier page at the same generation, or else from walking the offset over the
/// `(tenant_id, seq)` index. All in the caller's snapshot, so count, generation and rows
/// agree.
fn list_live_users<D: FromDoc>(
    c: &Connection,
    tenant: &str,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> rusqlite::Result<Page<UserRecord<D>>> {
    let (live, generation): (i64, i64) = c
        .prepare_cached("SELECT live, generation FROM user_list_state WHERE tenant_id = ?")?
        .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, 0));
    let total = live.max(0) as u64;
    let offset = query.start_index.saturating_sub(1);
    let plan =
        starts
            .lock()
            .expect("page starts")
            .plan(tenant, offset, query.count, total, generation);
    let (after, sought) = match plan {
        PlainPage::Empty => {
            return Ok(Page {
                total,
                items: Vec::new(),
            })
        }
        PlainPage::After(after) => (after, None),
        PlainPage::Seek(before) => {
            let after = c
                .prepare_cached(
                    "SELECT u.seq FROM users u WHERE u.tenant_id = ? AND u.deleted_at IS NULL
                     ORDER BY u.seq LIMIT 1 OFFSET ?",
                )?
                .query_row(params![tenant, before], |r| r.get(0))?;
            (after, Some(after))
        }
    };
    let rows = c
        .prepare_cached(concat!(
            "SELECT ",
            user_cols!(),
            ", u.seq FROM users u
             WHERE u.tenant_id = ? AND u.deleted_at IS NULL AND u.seq > ?
             ORDER BY u.seq LIMIT ?"
        ))?
        .query_map(
            params![tenant, after, query.count.min(i64::MAX as u64) as i64],
            |r| Ok((user_from_row::<D>(r)?, r.get::<_, i64>(16)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    starts.lock().expect("page starts").learn(
        tenant,
        generation,
        offset,
        sought,
        rows.len(),
        rows.last().map(|(_, seq)| *seq),
    );
    Ok(Page {
        total,
        items: rows.into_iter().map(|(u, _)| u).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::audit::{Action, Actor, AuditDraft};
    use cairn_core::ids::{QuotaGb, UserId};
    use cairn_core::tenant::Tenant;

    /// The accounts list at 100,000 accounts: every page (first, deep keyset, backwards,
    /// searched, by status) is right, and a keyset page reads the index in order. How
    /// fast: scripts/bench (operation dashboard_accounts), BENCHMARKS.md.
    #[tokio::test]
    async fn accounts_list_pages_right_with_100k_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.db");
        let store = SqliteStore::open(&path).unwrap();
        let now = OffsetDateTime::now_utc();
        let tenant = Tenant {
            id: TenantId::random(),
            name: "Big".into(),
            scim_enabled: true,
            account_size_gb: QuotaGb::default(),
            created_at: now,
            max_account_size_gb: None,
            stale_days: Default::default(),
        };
        let audit = AuditDraft {
            tenant_id: tenant.id.clone(),
            actor: Actor::Operator,
            action: Action::TenantCreated,
            target_type: "tenant",
            target_id: None,
            target_name: None,
            changes: serde_json::json!({}),
            meta: Default::default(),
            at: now,
        };
        store.create_tenant(&tenant, audit).await.unwrap();
        {
            let mut c = super::super::conn::open(&path, true).unwrap();
            let tx = c.transaction().unwrap();
            {
                let mut st = tx
                    .prepare(
                        "INSERT INTO users (id, tenant_id, user_name, user_name_fold, display_name,
                            display_name_fold, email, email_fold, active, doc, quota_gb, scim_managed,
                            created_at, updated_at, version, deleted_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, '{}', 10, 1, ?, ?, 1, ?)",
                    )
                    .unwrap();
                for i in 0..100_000 {
                    let name = format!("user{i:06}@big.test");
                    let display = format!("Person {i}");
                    let deleted = (i % 10 == 0).then(|| ts(now));
                    st.execute(params![
                        UserId::random().as_str(),
                        tenant.id.as_str(),
                        name,
                        name,
                        display,
                        display.to_lowercase(),
                        name,
                        name,
                        ts(now),
                        ts(now),
                        deleted
                    ])
                    .unwrap();
                }
            }
            tx.commit().unwrap();
            c.execute_batch("ANALYZE").unwrap();
        }
        let list = |q: AccountQuery| {
            let store = &store;
            let t = tenant.id.clone();
            async move { store.list_accounts(&t, &q).await.unwrap() }
        };
        let first = list(AccountQuery {
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(first.total, 100_000);
        assert_eq!(first.items.len(), 51);

        let deep = list(AccountQuery {
            cursor: Some(AccountCursor::After {
                key: "user099000@big.test".into(),
                // Sorts after every issued id: the page starts after user099000.
                id: UserId::from_trusted("~".into()),
            }),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(deep.items[0].user_name.as_str(), "user099001@big.test");

        let back = list(AccountQuery {
            cursor: Some(AccountCursor::Before {
                key: "user050000@big.test".into(),
                // Sorts before every issued id: the page ends before user050000.
                id: UserId::from_trusted(String::new()),
            }),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(
            back.items.last().unwrap().user_name.as_str(),
            "user049999@big.test"
        );

        let found = list(AccountQuery {
            search: Some("user04213".into()),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(found.total, 10);

        let deleted = list(AccountQuery {
            status: Some(AccountStatus::Deleted),
            limit: 50,
            ..Default::default()
        })
        .await;
        assert_eq!(deleted.total, 10_000);

        // The plan of a keyset page uses the (tenant, user_name_fold, id) index.
        let c = super::super::conn::open(&path, false).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT {USER_COLS} FROM users u WHERE u.tenant_id = ? AND \
                 (u.user_name_fold, u.id) > (?, ?) ORDER BY u.user_name_fold, u.id LIMIT 51"
            ))
            .unwrap()
            .query_map(params![tenant.id.as_str(), "a", "b"], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(
            plan.contains("users_tenant_id_user_name_fold_id_idx"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
