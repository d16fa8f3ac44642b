//! SQLite side of groups: the groups table, the membership relation (one indexed row per
//! membership, so adding or removing k members touches k rows) and the quota recompute of
//! group-based account sizes.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::group::{
    complete_change_audit, effective_quota, member_diff, quota_affected, quota_audit, GroupData,
    GroupRecord, GroupRef, GroupSummary, MemberChange,
};
use cairn_core::ids::{fold_case, GroupId, QuotaGb, TenantId, UserId};
use cairn_core::query::{ListQuery, Page};
use cairn_core::store::*;
use cairn_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;

#[async_trait]
impl GroupStore for SqliteStore {
    async fn member_displays(
        &self,
        tenant: &TenantId,
        id: &GroupId,
    ) -> Result<HashMap<UserId, String>> {
        let (t, g) = (tenant.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT user_id, display FROM group_members
                 WHERE tenant_id = ? AND group_id = ? AND display IS NOT NULL",
            )?;
            let rows = st.query_map(params![t, g], |r| {
                Ok((UserId::from_trusted(r.get(0)?), r.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }

    async fn create_group(
        &self,
        g: &GroupRecord,
        members: &[UserId],
        displays: &[(UserId, String)],
        mut audit: AuditDraft,
    ) -> Result<()> {
        let g = g.clone();
        let members = members.to_vec();
        let displays = displays.to_vec();
        self.writer
            .write(move |c| {
                let t = g.tenant_id.as_str();
                db(c.execute(
                    "INSERT INTO groups (id, tenant_id, display_name, display_name_fold, external_id, doc,
                        size_gb, created_at, updated_at, version)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        g.id.as_str(),
                        t,
                        g.display_name,
                        fold_case(&g.display_name),
                        g.external_id,
                        g.doc.to_string(),
                        g.size_gb.map(|s| s.get()),
                        ts(g.created_at),
                        ts(g.updated_at),
                        g.version,
                    ],
                ))?;
                let added = add_members(c, t, g.id.as_str(), &members)?;
                set_displays(c, t, g.id.as_str(), &displays)?;
                complete_change_audit(&mut audit, None, &added, &[]);
                db(insert_audit(c, &audit))?;
                recompute_quotas(c, t, &quota_affected(g.size_gb, &added, &[]), &audit)
            })
            .await
    }

    async fn get_group(&self, tenant: &TenantId, id: &GroupId) -> Result<Option<GroupRecord>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read(move |c| get_group(c, &t, &i)).await
    }

    async fn find_group_by_name(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<GroupRecord>> {
        let (t, n) = (tenant.to_string(), fold_case(name));
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {GROUP_COLS} FROM groups u WHERE u.tenant_id = ? AND u.display_name_fold = ?"
            ))?
            .query_row([t, n], group_from_row)
            .optional()
        })
        .await
    }

    async fn list_groups(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page<GroupRecord>> {
        let tenant = tenant.to_string();
        let query = query.clone();
        self.read(move |c| {
            super::list_page(
                c,
                "groups",
                GROUP_COLS,
                "u.tenant_id = ?",
                tenant,
                &query,
                group_from_row,
            )
        })
        .await
    }

    async fn group_members_up_to(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        limit: u32,
    ) -> Result<Vec<UserId>> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT m.user_id FROM group_members m
                 JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
                 WHERE m.tenant_id = ? AND m.group_id = ? AND u.deleted_at IS NULL
                 ORDER BY m.user_id LIMIT ?",
            )?;
            let rows = st.query_map(params![t, i, limit], |r| {
                Ok(UserId::from_trusted(r.get(0)?))
            })?;
            rows.collect()
        })
        .await
    }

    async fn groups_of_users(
        &self,
        tenant: &TenantId,
        users: &[UserId],
    ) -> Result<Vec<(UserId, GroupRef)>> {
        let t = tenant.to_string();
        let users = users.to_vec();
        self.read(move |c| groups_of_users_in(c, &t, &users)).await
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
        let (t, i) = (tenant.to_string(), id.to_string());
        let data = data.cloned();
        let members = members.clone();
        let displays = displays.to_vec();
        self.writer
            .write(move |c| {
                let current = check_version("group", db(get_group(c, &t, &i))?, expected_version)?;
                let (added, removed) = apply_members(c, &t, &i, &members)?;
                set_displays(c, &t, &i, &displays)?;
                let data = data.filter(|d| *d != current.data());
                if data.is_none() && added.is_empty() && removed.is_empty() {
                    return Ok(current);
                }
                let at = ts(audit.at);
                match &data {
                    Some(d) => db(c.execute(
                        "UPDATE groups SET display_name = ?, display_name_fold = ?, external_id = ?, doc = ?,
                            updated_at = ?, version = version + 1
                         WHERE tenant_id = ? AND id = ?",
                        params![
                            d.display_name,
                            fold_case(&d.display_name),
                            d.external_id,
                            d.doc.to_string(),
                            at,
                            t,
                            i
                        ],
                    ))?,
                    None => db(c.execute(
                        "UPDATE groups SET updated_at = ?, version = version + 1 WHERE tenant_id = ? AND id = ?",
                        params![at, t, i],
                    ))?,
                };
                complete_change_audit(&mut audit, data.as_ref(), &added, &removed);
                db(insert_audit(c, &audit))?;
                let affected = quota_affected(current.size_gb, &added, &removed);
                recompute_quotas(c, &t, &affected, &audit)?;
                db(get_group(c, &t, &i))?.ok_or(Error::NotFound("group"))
            })
            .await
    }

    async fn delete_group(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        expected_version: Option<i64>,
        audit: AuditDraft,
    ) -> Result<()> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                let current = check_version("group", db(get_group(c, &t, &i))?, expected_version)?;
                let members = if current.size_gb.is_some() {
                    db(all_members(c, &t, &i))?
                } else {
                    Vec::new()
                };
                // Memberships go with the group (ON DELETE CASCADE); accounts stay.
                db(c.execute(
                    "DELETE FROM groups WHERE tenant_id = ? AND id = ?",
                    params![t, i],
                ))?;
                db(insert_audit(c, &audit))?;
                recompute_quotas(c, &t, &members, &audit)
            })
            .await
    }

    async fn set_group_size(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        size: Option<QuotaGb>,
        audit: AuditDraft,
    ) -> Result<GroupRecord> {
        let (t, i) = (tenant.to_string(), id.to_string());
        self.writer
            .write(move |c| {
                let current = db(get_group(c, &t, &i))?.ok_or(Error::NotFound("group"))?;
                if current.size_gb == size {
                    return Ok(current);
                }
                // The size is not a SCIM attribute: the version (ETag) stays.
                db(c.execute(
                    "UPDATE groups SET size_gb = ? WHERE tenant_id = ? AND id = ?",
                    params![size.map(|s| s.get()), t, i],
                ))?;
                db(insert_audit(c, &audit))?;
                let members = db(all_members(c, &t, &i))?;
                recompute_quotas(c, &t, &members, &audit)?;
                db(get_group(c, &t, &i))?.ok_or(Error::NotFound("group"))
            })
            .await
    }

    async fn group_summaries(&self, tenant: &TenantId) -> Result<Vec<GroupSummary>> {
        let t = tenant.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {GROUP_COLS}, (SELECT COUNT(*) FROM group_members m
                     JOIN users us ON us.tenant_id = m.tenant_id AND us.id = m.user_id
                     WHERE m.tenant_id = u.tenant_id AND m.group_id = u.id AND us.deleted_at IS NULL)
                 FROM groups u WHERE u.tenant_id = ? ORDER BY u.display_name_fold, u.seq"
            ))?;
            let rows = st.query_map([t], |r| {
                let n: i64 = r.get(9)?;
                Ok(GroupSummary {
                    group: group_from_row(r)?,
                    members: n.max(0) as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

pub(super) const GROUP_COLS: &str = "u.id, u.tenant_id, u.display_name, u.external_id, u.doc, \
    u.size_gb, u.created_at, u.updated_at, u.version";

fn group_from_row(r: &Row<'_>) -> rusqlite::Result<GroupRecord> {
    let doc: String = r.get(4)?;
    let size: Option<i64> = r.get(5)?;
    Ok(GroupRecord {
        id: GroupId::from_trusted(r.get(0)?),
        tenant_id: TenantId::from_trusted(r.get(1)?),
        display_name: r.get(2)?,
        external_id: r.get(3)?,
        doc: serde_json::from_str(&doc).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
        })?,
        size_gb: size.and_then(|s| QuotaGb::new(s).ok()),
        created_at: parse_time(r.get(6)?)?,
        updated_at: parse_time(r.get(7)?)?,
        version: r.get(8)?,
    })
}

fn get_group(c: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<GroupRecord>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLS} FROM groups u WHERE u.tenant_id = ? AND u.id = ?"
    ))?
    .query_row([tenant, id], group_from_row)
    .optional()
}

/// Fails with `Invalid { members }` unless every id is a live account of the tenant.
fn check_members(c: &Connection, tenant: &str, ids: &[UserId]) -> Result<()> {
    let mut st = db(c.prepare_cached(
        "SELECT 1 FROM users WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL",
    ))?;
    for u in ids {
        if !db(st.exists(params![tenant, u.as_str()]))? {
            return Err(Error::Invalid {
                field: "members",
                reason: format!("{u} is not a user of this tenant"),
            });
        }
    }
    Ok(())
}

/// Adds memberships; returns the accounts that were not members before.
fn add_members(c: &Connection, tenant: &str, group: &str, ids: &[UserId]) -> Result<Vec<UserId>> {
    check_members(c, tenant, ids)?;
    let mut st = db(c.prepare_cached(
        "INSERT INTO group_members (tenant_id, group_id, user_id) VALUES (?, ?, ?)
         ON CONFLICT DO NOTHING",
    ))?;
    let mut added = Vec::new();
    for u in ids {
        if db(st.execute(params![tenant, group, u.as_str()]))? == 1 {
            added.push(u.clone());
        }
    }
    Ok(added)
}

/// Removes memberships; returns the accounts that were members.
fn remove_members(
    c: &Connection,
    tenant: &str,
    group: &str,
    ids: &[UserId],
) -> Result<Vec<UserId>> {
    let mut st = db(c.prepare_cached(
        "DELETE FROM group_members WHERE tenant_id = ? AND group_id = ? AND user_id = ?",
    ))?;
    let mut removed = Vec::new();
    for u in ids {
        if db(st.execute(params![tenant, group, u.as_str()]))? == 1 {
            removed.push(u.clone());
        }
    }
    Ok(removed)
}

fn all_members(c: &Connection, tenant: &str, group: &str) -> rusqlite::Result<Vec<UserId>> {
    let mut st = c.prepare_cached(
        "SELECT user_id FROM group_members WHERE tenant_id = ? AND group_id = ? ORDER BY user_id",
    )?;
    let rows = st.query_map([tenant, group], |r| Ok(UserId::from_trusted(r.get(0)?)))?;
    rows.collect()
}

/// Records members' `display` values (non-members are skipped), within the caller's
/// transaction so that they come and go with the membership change that named them.
fn set_displays(
    c: &Connection,
    tenant: &str,
    group: &str,
    displays: &[(UserId, String)],
) -> Result<()> {
    if displays.is_empty() {
        return Ok(());
    }
    let mut st = db(c.prepare_cached(
        "UPDATE group_members SET display = ?
         WHERE tenant_id = ? AND group_id = ? AND user_id = ?
           AND display IS NOT ?",
    ))?;
    for (u, d) in displays {
        db(st.execute(params![d, tenant, group, u.as_str(), d]))?;
    }
    Ok(())
}

/// Applies a member change; returns (added, removed).
fn apply_members(
    c: &Connection,
    tenant: &str,
    group: &str,
    change: &MemberChange,
) -> Result<(Vec<UserId>, Vec<UserId>)> {
    match change {
        MemberChange::Delta { add, remove } => {
            let removed = remove_members(c, tenant, group, remove)?;
            let added = add_members(c, tenant, group, add)?;
            Ok((added, removed))
        }
        MemberChange::Replace(want) => {
            let current = db(all_members(c, tenant, group))?;
            let (to_add, to_remove) = member_diff(&current, want);
            let removed = remove_members(c, tenant, group, &to_remove)?;
            let added = add_members(c, tenant, group, &to_add)?;
            Ok((added, removed))
        }
    }
}

/// Recomputes the effective quota of these accounts ([`effective_quota`], in Rust: the
/// rows are local) and audits each one that changed.
fn recompute_quotas(
    c: &Connection,
    tenant: &str,
    users: &[UserId],
    cause: &AuditDraft,
) -> Result<()> {
    // One row per group of the account (one with no size when it has none).
    let mut read = db(c.prepare_cached(
        "SELECT u.user_name, u.quota_gb, u.base_quota_gb, g.size_gb FROM users u
         LEFT JOIN group_members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
         LEFT JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
         WHERE u.tenant_id = ? AND u.id = ?",
    ))?;
    let mut write =
        db(c.prepare_cached("UPDATE users SET quota_gb = ? WHERE tenant_id = ? AND id = ?"))?;
    for u in users {
        let rows = db(read
            .query_map(params![tenant, u.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>()))?;
        let Some((name, before, base, _)) = rows.first() else {
            continue;
        };
        let (before, after) = (
            *before,
            effective_quota(*base, rows.iter().filter_map(|r| r.3)),
        );
        if before != after {
            db(write.execute(params![after, tenant, u.as_str()]))?;
            db(insert_audit(
                c,
                &quota_audit(cause, u.as_str(), name, before, after),
            ))?;
        }
    }
    Ok(())
}

/// The groups of each of these accounts, on a connection the caller holds.
pub(super) fn groups_of_users_in(
    c: &Connection,
    t: &str,
    users: &[UserId],
) -> rusqlite::Result<Vec<(UserId, GroupRef)>> {
    // Sorted here, not by `ORDER BY`: SQLite would build a temporary sorter for every user
    // (a few groups each), which cost more than the rest of the lookup.
    let mut st = c.prepare_cached(
        "SELECT g.id, g.display_name, g.display_name_fold FROM group_members m
         JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
         WHERE m.tenant_id = ? AND m.user_id = ?",
    )?;
    let mut out = Vec::new();
    let mut mine: Vec<(String, GroupRef)> = Vec::new();
    for u in users {
        let rows = st.query_map(params![t, u.as_str()], |r| {
            Ok((
                r.get::<_, String>(2)?,
                GroupRef {
                    id: GroupId::from_trusted(r.get(0)?),
                    display_name: r.get(1)?,
                },
            ))
        })?;
        for g in rows {
            mine.push(g?);
        }
        // The order `ORDER BY display_name_fold, id` gives (BINARY collation: bytes).
        mine.sort_unstable_by(|a, b| (&a.0, a.1.id.as_str()).cmp(&(&b.0, b.1.id.as_str())));
        out.extend(mine.drain(..).map(|(_, g)| (u.clone(), g)));
    }
    Ok(out)
}
