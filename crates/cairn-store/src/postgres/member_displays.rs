//! The `display` values clients send with group members (RFC 7643 §4.2), kept on the
//! membership rows (`group_members.display`).

use super::*;
use cairn_core::ids::{GroupId, TenantId, UserId};
use cairn_core::Result;
use std::collections::HashMap;

impl PostgresStore {
    pub(super) async fn write_member_displays(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        displays: &[(UserId, String)],
    ) -> Result<()> {
        // One row per member, the last display given winning (as in request order).
        let mut last: HashMap<&str, &str> = HashMap::new();
        for (u, d) in displays {
            last.insert(u.as_str(), d.as_str());
        }
        if last.is_empty() {
            return Ok(());
        }
        let (users, values): (Vec<&str>, Vec<&str>) = last.into_iter().unzip();
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE group_members m SET display = d.display
             FROM UNNEST($3::text[], $4::text[]) AS d (user_id, display)
             WHERE m.tenant_id = $1 AND m.group_id = $2 AND m.user_id = d.user_id
               AND m.display IS DISTINCT FROM d.display",
            &[&tenant.as_str(), &id.as_str(), &users, &values],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) async fn read_member_displays(
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
}
