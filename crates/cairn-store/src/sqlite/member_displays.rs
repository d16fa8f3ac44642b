//! The `display` values clients send with group members (RFC 7643 §4.2), kept on the
//! membership rows (`group_members.display`).

use super::*;
use cairn_core::ids::{GroupId, TenantId, UserId};
use cairn_core::Result;
use rusqlite::params;
use std::collections::HashMap;

impl SqliteStore {
    pub(super) async fn write_member_displays(
        &self,
        tenant: &TenantId,
        id: &GroupId,
        displays: &[(UserId, String)],
    ) -> Result<()> {
        if displays.is_empty() {
            return Ok(());
        }
        let (t, g) = (tenant.to_string(), id.to_string());
        let displays = displays.to_vec();
        self.writer
            .write(move |c| {
                let mut st = db(c.prepare_cached(
                    "UPDATE group_members SET display = ?
                     WHERE tenant_id = ? AND group_id = ? AND user_id = ?
                       AND display IS NOT ?",
                ))?;
                for (u, d) in &displays {
                    db(st.execute(params![d, t, g, u.as_str(), d]))?;
                }
                Ok(())
            })
            .await
    }

    pub(super) async fn read_member_displays(
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
}
