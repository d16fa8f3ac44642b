//! PostgreSQL side of backup accounts: create, read, list (SCIM and the
//! dashboard's accounts list), update, soft delete, restore and the retention purge.

use super::*;
use crate::listing::PageStarts;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::dashboard::{AccountCursor, AccountOrder, AccountQuery};
use cairn_core::group::GroupRef;
use cairn_core::ids::{fold_case, TenantId, UserId, UserName};
use cairn_core::query::{ListQuery, Page};
use cairn_core::store::*;
use cairn_core::user::{AccountStatus, DocJson, UserData, UserRecord};
use cairn_core::{Error, Result};
use std::sync::Mutex;
use time::OffsetDateTime;
use tokio_postgres::GenericClient;

#[async_trait]
impl UserStore for PostgresStore {
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
            let live = get_user_where(&*tx, tenant.as_str(), id.as_str(), true).await?;
            return Err(missed_write("user", live.is_some()));
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
            let live = get_user_where(&*tx, tenant.as_str(), id.as_str(), true).await?;
            return Err(missed_write("user", live.is_some()));
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
                "SELECT id, CASE WHEN purge_at <= $3 THEN purge_at END FROM users
                 WHERE tenant_id = $1 AND user_name_fold = $2 AND deleted_at IS NOT NULL
                 AND purging_since IS NULL ORDER BY deleted_at DESC, seq DESC LIMIT 1 FOR UPDATE",
                &[&tenant.as_str(), &user_name.folded(), &ts(at)],
            )
            .await
            .map_err(map_err)?;
        let row = row.ok_or(Error::NotFound("deleted account"))?;
        if let Some(purge_at) = row.get::<_, Option<String>>(1) {
            return Err(crate::retention_ended(&purge_at));
        }
        let id: String = row.get(0);
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

    async fn list_accounts(&self, tenant: &TenantId, q: &AccountQuery) -> Result<Page<UserRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let mut sql = Sql::default();
        let t = sql.bind(Box::new(tenant.to_string()));
        sql.text = format!("u.tenant_id = {t}");
        if let Some(s) = &q.search {
            // LIKE 'prefix%' is answered by the text_pattern_ops indexes of migration 0002.
            let pat = sql.bind(Box::new(prefix_pattern(s)));
            let exact = sql.bind(Box::new(s.clone()));
            sql.text.push_str(&format!(
                " AND (u.user_name_fold LIKE {pat} OR u.email_fold LIKE {pat} \
                 OR u.display_name_fold LIKE {pat} OR u.id = {exact})"
            ));
        }
        match q.status {
            None => {}
            Some(AccountStatus::Active) => {
                sql.text.push_str(" AND u.deleted_at IS NULL AND u.active")
            }
            Some(AccountStatus::Suspended) => sql
                .text
                .push_str(" AND u.deleted_at IS NULL AND NOT u.active"),
            Some(AccountStatus::Deleted) => sql.text.push_str(" AND u.deleted_at IS NOT NULL"),
        }
        // The sort key (see `AccountOrder`); the last backup's is the expression of the
        // index of migration 0014.
        let key = match q.order {
            AccountOrder::Name => "u.user_name_fold",
            AccountOrder::LastBackup => "(COALESCE(u.last_snapshot_at, '') COLLATE \"C\")",
        };
        if let Some(before) = q.snapshot_before {
            let b = sql.bind(Box::new(ts(before)));
            sql.text.push_str(&format!(
                " AND (COALESCE(u.last_snapshot_at, '') COLLATE \"C\") < {b}"
            ));
        }
        let total: i64 = c
            .query_one(
                &format!("SELECT COUNT(*) FROM users u WHERE {}", sql.text),
                &refs(&sql.params),
            )
            .await
            .map_err(map_err)?
            .get(0);
        let (cmp, order) = match &q.cursor {
            None => (None, "ASC"),
            Some(AccountCursor::After { key, id }) => (Some((">", key, id)), "ASC"),
            Some(AccountCursor::Before { key, id }) => (Some(("<", key, id)), "DESC"),
        };
        if let Some((op, cursor_key, id)) = cmp {
            let n = sql.bind(Box::new(cursor_key.clone()));
            let i = sql.bind(Box::new(id.to_string()));
            sql.text
                .push_str(&format!(" AND ({key}, u.id) {op} ({n}, {i})"));
        }
        let limit = sql.bind(Box::new(i64::from(q.limit) + 1));
        let text = format!(
            "SELECT {USER_COLS} FROM users u WHERE {} \
             ORDER BY {key} {order}, u.id {order} LIMIT {limit}",
            sql.text
        );
        let rows = c.query(&text, &refs(&sql.params)).await.map_err(map_err)?;
        let mut items = rows.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
        if order == "DESC" {
            items.reverse();
        }
        Ok(Page {
            total: total.max(0) as u64,
            items,
        })
    }
}

/// A LIKE pattern matching strings that start with `p` literally.
fn prefix_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    for ch in p.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// A record as the render-only reads return it. The driver has already parsed the
/// `jsonb` column, so the text is written back out (the renderer copies it into the
/// response, which still costs less than rendering the parsed tree).
fn as_text(u: UserRecord) -> UserRecord<DocJson> {
    u.map_doc(|d| DocJson(d.to_string()))
}

/// One page of a tenant's live accounts and the total.
async fn list_live_users(
    c: &mut deadpool_postgres::Client,
    tenant: &TenantId,
    query: &ListQuery,
    starts: &Mutex<PageStarts>,
) -> Result<Page<UserRecord>> {
    if query.filter.is_none() && query.sort.is_none() && query.seek.is_none() {
        return list_plain_users(c, tenant, query, starts).await;
    }
    if let (None, Some(seek)) = (&query.filter, &query.seek) {
        // An unfiltered cursor page takes its total from the tenant's live count (kept by
        // triggers, migration 0007) as the plain list does, instead of COUNT(*).
        let st = c
            .prepare_cached(
                "SELECT COALESCE(SUM(live), 0)::BIGINT FROM user_list_state WHERE tenant_id = $1",
            )
            .await
            .map_err(map_err)?;
        let live: i64 = c
            .query_one(&st, &[&tenant.to_string()])
            .await
            .map_err(map_err)?
            .get(0);
        return super::keyset_page(
            c,
            "users",
            USER_COLS,
            "u.deleted_at IS NULL",
            tenant,
            query,
            seek,
            user_from_row,
            Some(live.max(0) as u64),
        )
        .await;
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
