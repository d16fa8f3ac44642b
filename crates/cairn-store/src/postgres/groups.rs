//! PostgreSQL side of groups: the groups table, the membership relation (set-based
//! statements over the k members a change names, never over the whole group) and the
//! quota recompute of group-based account sizes.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::group::{
    complete_change_audit, distinct, member_diff, quota_affected, quota_audit, GroupData,
    GroupRecord, GroupRef, GroupSummary, MemberChange,
};
use cairn_core::ids::{fold_case, GroupId, QuotaGb, TenantId, UserId};
use cairn_core::query::{ListQuery, Page};
use cairn_core::store::*;
use cairn_core::{Error, Result};
use std::collections::HashMap;
use std::collections::HashSet;
use tokio_postgres::{GenericClient, Row};

#[async_trait]
impl GroupStore for PostgresStore {
    async fn member_displays(
        &self,
        tenant: &TenantId,
        id: &GroupId,
    ) -> Result<HashMap<UserId, String>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT user_id, display FROM group_members
                 WHERE tenant_id = $1 AND group_id = $2 AND display IS NOT NULL",
                &[&tenant.as_str(), &id.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| (UserId::from_trusted(r.get(0)), r.get(1)))
            .collect())
    }

    async fn create_group(
        &self,
        g: &GroupRecord,
        members: &[UserId],
        displays: &[(UserId, String)],
        mut audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let t = g.tenant_id.as_str();
        tx.execute(
            "INSERT INTO groups (id, tenant_id, display_name, display_name_fold, external_id, doc,
                size_gb, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &g.id.as_str(),
                &t,
                &g.display_name,
                &fold_case(&g.display_name),
                &g.external_id,
                &g.doc,
                &g.size_gb.map(|s| i64::from(s.get())),
                &ts(g.created_at),
                &ts(g.updated_at),
                &g.version,
            ],
        )
        .await
        .map_err(map_err)?;
        let added = add_members(&*tx, t, g.id.as_str(), &distinct(members)).await?;
        set_displays(&*tx, t, g.id.as_str(), displays).await?;
        complete_change_audit(&mut audit, None, &added, &[]);
        insert_audit(&*tx, &audit).await?;
        let affected = quota_affected(g.size_gb, &added, &[]);
        recompute_quotas(&*tx, t, &affected, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<GroupRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        get_group(&**c, tenant.as_str(), id.as_str(), false).await
    }

    async fn find_group_by_name(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<GroupRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {GROUP_COLS} FROM groups u WHERE u.tenant_id = $1 AND u.display_name_fold = $2"
                ),
                &[&tenant.as_str(), &fold_case(name)],
            )
            .await
            .map_err(map_err)?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn list_groups(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<GroupRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        super::list_page(
            &c,
            "groups",
            GROUP_COLS,
            "TRUE",
            tenant,
            query,
            group_from_row,
        )
        .await
    }

    async fn group_members_up_to(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT m.user_id FROM group_members m
                 JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
                 WHERE m.tenant_id = $1 AND m.group_id = $2 AND u.deleted_at IS NULL
                 ORDER BY m.user_id COLLATE \"C\" LIMIT $3",
                &[&tenant.as_str(), &id.as_str(), &i64::from(limit)],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| UserId::from_trusted(r.get(0)))
            .collect())
    }

    async fn groups_of_users(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, GroupRef)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.pool.get().await.map_err(pool_err)?;
        groups_of_users_on(&c, tenant, users).await
    }

    async fn update_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        data: Option<&GroupData>,
        members: &MemberChange,
        displays: &[(UserId, String)],
        mut audit: AuditDraft,
    ) -> Result<GroupRecord> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let (t, i) = (tenant.as_str(), id.as_str());
        // The row lock orders concurrent changes of one group (and of its size).
        let current = check_version(
            "group",
            get_group(&*tx, t, i, true).await?,
            expected_version,
        )?;
        let (added, removed) = apply_members(&*tx, t, i, members).await?;
        let displayed = set_displays(&*tx, t, i, displays).await?;
        let data = data.filter(|d| **d != current.data());
        if data.is_none() && added.is_empty() && removed.is_empty() {
            if displayed > 0 {
                tx.commit().await.map_err(map_err)?;
            }
            return Ok(current);
        }
        let at = ts(audit.at);
        match data {
            Some(d) => tx
                .execute(
                    "UPDATE groups SET display_name = $1, display_name_fold = $2, external_id = $3, doc = $4,
                        updated_at = $5, version = version + 1
                     WHERE tenant_id = $6 AND id = $7",
                    &[
                        &d.display_name,
                        &fold_case(&d.display_name),
                        &d.external_id,
                        &d.doc,
                        &at,
                        &t,
                        &i,
                    ],
                )
                .await
                .map_err(map_err)?,
            None => tx
                .execute(
                    "UPDATE groups SET updated_at = $1, version = version + 1 WHERE tenant_id = $2 AND id = $3",
                    &[&at, &t, &i],
                )
                .await
                .map_err(map_err)?,
        };
        complete_change_audit(&mut audit, data, &added, &removed);
        insert_audit(&*tx, &audit).await?;
        let affected = quota_affected(current.size_gb, &added, &removed);
        recompute_quotas(&*tx, t, &affected, &audit).await?;
        let g = get_group(&*tx, t, i, false)
            .await?
            .ok_or(Error::NotFound("group"))?;
        tx.commit().await.map_err(map_err)?;
        Ok(g)
    }

    async fn delete_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let (t, i) = (tenant.as_str(), id.as_str());
        let current = check_version(
            "group",
            get_group(&*tx, t, i, true).await?,
            expected_version,
        )?;
        let members = if current.size_gb.is_some() {
            all_members(&*tx, t, i).await?
        } else {
            Vec::new()
        };
        // Memberships go with the group (ON DELETE CASCADE); accounts stay.
        tx.execute(
            "DELETE FROM groups WHERE tenant_id = $1 AND id = $2",
            &[&t, &i],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        recompute_quotas(&*tx, t, &members, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_group_size(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        size: Option<QuotaGb>,
        audit: AuditDraft,
    ) -> Result<GroupRecord> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        let (t, i) = (tenant.as_str(), id.as_str());
        let current = get_group(&*tx, t, i, true)
            .await?
            .ok_or(Error::NotFound("group"))?;
        if current.size_gb == size {
            return Ok(current);
        }
        // The size is not a SCIM attribute: the version (ETag) stays.
        tx.execute(
            "UPDATE groups SET size_gb = $1 WHERE tenant_id = $2 AND id = $3",
            &[&size.map(|s| i64::from(s.get())), &t, &i],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        let members = all_members(&*tx, t, i).await?;
        recompute_quotas(&*tx, t, &members, &audit).await?;
        let g = get_group(&*tx, t, i, false)
            .await?
            .ok_or(Error::NotFound("group"))?;
        tx.commit().await.map_err(map_err)?;
        Ok(g)
    }

    async fn group_summaries(&self, tenant: &TenantId) -> Result<Vec<GroupSummary>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                &format!(
                    "SELECT {GROUP_COLS}, (SELECT COUNT(*) FROM group_members m
                         JOIN users us ON us.tenant_id = m.tenant_id AND us.id = m.user_id
                         WHERE m.tenant_id = u.tenant_id AND m.group_id = u.id AND us.deleted_at IS NULL)
                     FROM groups u WHERE u.tenant_id = $1
                     ORDER BY u.display_name_fold COLLATE \"C\", u.seq"
                ),
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.get(9);
                Ok(GroupSummary {
                    group: group_from_row(r)?,
                    members: n.max(0) as u64,
                })
            })
            .collect()
    }
}

const GROUP_COLS: &str = "u.id, u.tenant_id, u.display_name, u.external_id, u.doc, \
    u.size_gb, u.created_at, u.updated_at, u.version";

fn group_from_row(r: &Row) -> Result<GroupRecord> {
    let size: Option<i64> = r.get(5);
    Ok(GroupRecord {
        id: GroupId::from_trusted(r.get(0)),
        tenant_id: TenantId::from_trusted(r.get(1)),
        display_name: r.get(2),
        external_id: r.get(3),
        doc: r.get(4),
        size_gb: size.and_then(|s| QuotaGb::new(s).ok()),
        created_at: time_of(r.get(6))?,
        updated_at: time_of(r.get(7))?,
        version: r.get(8),
    })
}

async fn get_group<C: GenericClient>(
    c: &C,
    tenant: &str,
    id: &str,
    lock: bool,
) -> Result<Option<GroupRecord>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = c
        .query_opt(
            &format!(
                "SELECT {GROUP_COLS} FROM groups u WHERE u.tenant_id = $1 AND u.id = $2{lock}"
            ),
            &[&tenant, &id],
        )
        .await
        .map_err(map_err)?;
    row.as_ref().map(group_from_row).transpose()
}

fn strs(ids: &[UserId]) -> Vec<&str> {
    ids.iter().map(UserId::as_str).collect()
}

async fn add_members<C: GenericClient>(
    c: &C,
    tenant: &str,
    group: &str,
    ids: &[UserId],
) -> Result<Vec<UserId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = strs(ids);
    let live: HashSet<String> = c
        .query(
            "SELECT id FROM users WHERE tenant_id = $1 AND id = ANY($2) AND deleted_at IS NULL",
            &[&tenant, &wanted],
        )
        .await
        .map_err(map_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(bad) = ids.iter().find(|u| !live.contains(u.as_str())) {
        return Err(Error::Invalid {
            field: "members",
            reason: format!("{bad} is not a user of this tenant"),
        });
    }
    let rows = c
        .query(
            "INSERT INTO group_members (tenant_id, group_id, user_id)
             SELECT $1, $2, x FROM unnest($3::text[]) AS x
             ON CONFLICT DO NOTHING RETURNING user_id",
            &[&tenant, &group, &wanted],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| UserId::from_trusted(r.get(0)))
        .collect())
}

async fn remove_members<C: GenericClient>(
    c: &C,
    tenant: &str,
    group: &str,
    ids: &[UserId],
) -> Result<Vec<UserId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = ANY($3)
             RETURNING user_id",
            &[&tenant, &group, &strs(ids)],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| UserId::from_trusted(r.get(0)))
        .collect())
}

async fn all_members<C: GenericClient>(c: &C, tenant: &str, group: &str) -> Result<Vec<UserId>> {
    let rows = c
        .query(
            "SELECT user_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id",
            &[&tenant, &group],
        )
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| UserId::from_trusted(r.get(0)))
        .collect())
}

/// Records members' `display` values (non-members are skipped; of several values for
/// one member the last wins, as in request order) within the caller's transaction, so
/// that they come and go with the membership change that named them. Returns the rows
/// changed.
async fn set_displays<C: GenericClient>(
    c: &C,
    tenant: &str,
    group: &str,
    displays: &[(UserId, String)],
) -> Result<u64> {
    let mut last: HashMap<&str, &str> = HashMap::new();
    for (u, d) in displays {
        last.insert(u.as_str(), d.as_str());
    }
    if last.is_empty() {
        return Ok(0);
    }
    let (users, values): (Vec<&str>, Vec<&str>) = last.into_iter().unzip();
    c.execute(
        "UPDATE group_members m SET display = d.display
         FROM UNNEST($3::text[], $4::text[]) AS d (user_id, display)
         WHERE m.tenant_id = $1 AND m.group_id = $2 AND m.user_id = d.user_id
           AND m.display IS DISTINCT FROM d.display",
        &[&tenant, &group, &users, &values],
    )
    .await
    .map_err(map_err)
}

async fn apply_members<C: GenericClient>(
    c: &C,
    tenant: &str,
    group: &str,
    change: &MemberChange,
) -> Result<(Vec<UserId>, Vec<UserId>)> {
    match change {
        MemberChange::Delta { add, remove } => {
            let removed = remove_members(c, tenant, group, remove).await?;
            let added = add_members(c, tenant, group, &distinct(add)).await?;
            Ok((added, removed))
        }
        MemberChange::Replace(want) => {
            let current = all_members(c, tenant, group).await?;
            let (to_add, to_remove) = member_diff(&current, want);
            let removed = remove_members(c, tenant, group, &to_remove).await?;
            let added = add_members(c, tenant, group, &to_add).await?;
            Ok((added, removed))
        }
    }
}

/// Recomputes the effective quota of these accounts in one statement and audits each one
/// that changed. The statement computes [`cairn_core::group::effective_quota`] in SQL,
/// to change k accounts in one round trip; `tests/store/groups.rs` holds it to the Rust
/// rule on generated cases.
async fn recompute_quotas<C: GenericClient>(
    c: &C,
    tenant: &str,
    users: &[UserId],
    cause: &AuditDraft,
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    // Lock the accounts in id order first, so two changes of different sized groups with
    // overlapping members cannot deadlock on each other's quota updates.
    c.execute(
        "SELECT 1 FROM users WHERE tenant_id = $1 AND id = ANY($2) ORDER BY id FOR NO KEY UPDATE",
        &[&tenant, &strs(users)],
    )
    .await
    .map_err(map_err)?;
    let rows = c
        .query(
            "WITH calc AS (
                 SELECT u.id, u.user_name, u.quota_gb AS before,
                        GREATEST(u.base_quota_gb, COALESCE((
                            SELECT MAX(g.size_gb) FROM group_members m
                            JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
                            WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id), 0)) AS after
                 FROM users u WHERE u.tenant_id = $1 AND u.id = ANY($2)
             ), upd AS (
                 UPDATE users u SET quota_gb = calc.after FROM calc
                 WHERE u.tenant_id = $1 AND u.id = calc.id AND calc.before <> calc.after
                 RETURNING u.id
             )
             SELECT id, user_name, before, after FROM calc WHERE before <> after",
            &[&tenant, &strs(users)],
        )
        .await
        .map_err(map_err)?;
    for r in rows {
        let (id, name, before, after): (String, String, i64, i64) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        insert_audit(c, &quota_audit(cause, &id, &name, before, after)).await?;
    }
    Ok(())
}

/// The groups of `users`, on a pooled connection the caller holds (one prepared statement).
pub(super) async fn groups_of_users_on(
    c: &deadpool_postgres::Client,
    tenant: &TenantId,
    users: &[UserId],
) -> Result<Vec<(UserId, GroupRef)>> {
    let st = c
        .prepare_cached(
            "SELECT m.user_id, g.id, g.display_name FROM group_members m
             JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
             WHERE m.tenant_id = $1 AND m.user_id = ANY($2)
             ORDER BY g.display_name_fold COLLATE \"C\", g.id COLLATE \"C\"",
        )
        .await
        .map_err(map_err)?;
    let rows = c
        .query(&st, &[&tenant.as_str(), &strs(users)])
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                UserId::from_trusted(r.get(0)),
                GroupRef {
                    id: GroupId::from_trusted(r.get(1)),
                    display_name: r.get(2),
                },
            )
        })
        .collect())
}
