//! PostgreSQL side of single sign-on (migration 0009): SAML settings, request ids, the
//! replay store, subject pins and backup accounts' sessions. The single-use checks are
//! one statement each (`DELETE … RETURNING`-style row counts, `ON CONFLICT DO NOTHING`),
//! so two instances racing on one request id or assertion id see one winner.

use super::*;
use async_trait::async_trait;
use cairn_core::audit::AuditDraft;
use cairn_core::ids::{fold_case, DashboardUserId, GroupId, TenantId, UserId};
use cairn_core::oidc::{ClientSecret, OidcConfig, OidcRequest};
use cairn_core::session::SessionHash;
use cairn_core::sso::{AccountSessionRecord, PrincipalKind, SamlIdpConfig, SsoScope, SubjectPin};
use cairn_core::sso_password::PasswordPolicy;
use cairn_core::store::*;
use cairn_core::user::UserRecord;
use cairn_core::{Error, Result};
use time::OffsetDateTime;
use tokio_postgres::Row;

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings serialises")
}

fn parse_list(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn config_from_row(r: &Row) -> Result<SamlIdpConfig> {
    Ok(SamlIdpConfig {
        tenant_id: TenantId::from_trusted(r.get(0)),
        enabled: r.get(1),
        idp_entity_id: r.get(2),
        sso_url: r.get(3),
        certificates: parse_list(r.get(4)),
        metadata_xml: r.get(5),
        metadata_url: r.get(6),
        scope: SsoScope {
            admins: r.get(7),
            all_accounts: r.get(8),
            accounts: parse_list(r.get(9)),
        },
        updated_at: time_of(r.get(10))?,
    })
}

fn account_session_from_row(r: &Row) -> Result<AccountSessionRecord> {
    let hash: Vec<u8> = r.get(0);
    Ok(AccountSessionRecord {
        id_hash: SessionHash::from_bytes(&hash)
            .ok_or_else(|| conv(0, "bad session hash".into()))?,
        tenant_id: TenantId::from_trusted(r.get(1)),
        user_id: UserId::from_trusted(r.get(2)),
        created_at: time_of(r.get(3))?,
        last_seen_at: time_of(r.get(4))?,
        expires_at: time_of(r.get(5))?,
    })
}

async fn get_pin<C: GenericClient>(
    c: &C,
    tenant: &str,
    kind: PrincipalKind,
    principal: &str,
) -> Result<Option<SubjectPin>> {
    let row = c
        .query_opt(
            "SELECT issuer, subject FROM sso_subjects
             WHERE tenant_id = $1 AND principal_kind = $2 AND principal_id = $3",
            &[&tenant, &kind.as_str(), &principal],
        )
        .await
        .map_err(map_err)?;
    Ok(row.map(|r| SubjectPin {
        issuer: r.get(0),
        subject: r.get(1),
    }))
}

#[async_trait]
impl SsoStore for PostgresStore {
    async fn put_saml_config(&self, cfg: &SamlIdpConfig, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO sso_saml_configs (tenant_id, enabled, idp_entity_id, sso_url,
                certificates, metadata_xml, metadata_url, scope_admins, scope_all_accounts,
                scope_accounts, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled,
                idp_entity_id = excluded.idp_entity_id, sso_url = excluded.sso_url,
                certificates = excluded.certificates, metadata_xml = excluded.metadata_xml,
                metadata_url = excluded.metadata_url, scope_admins = excluded.scope_admins,
                scope_all_accounts = excluded.scope_all_accounts,
                scope_accounts = excluded.scope_accounts, updated_at = excluded.updated_at",
            &[
                &cfg.tenant_id.as_str(),
                &cfg.enabled,
                &cfg.idp_entity_id,
                &cfg.sso_url,
                &json_list(&cfg.certificates),
                &cfg.metadata_xml,
                &cfg.metadata_url,
                &cfg.scope.admins,
                &cfg.scope.all_accounts,
                &json_list(&cfg.scope.accounts),
                &ts(cfg.updated_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_saml_config(&self, tenant: &TenantId) -> Result<Option<SamlIdpConfig>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT tenant_id, enabled, idp_entity_id, sso_url, certificates, metadata_xml,
                        metadata_url, scope_admins, scope_all_accounts, scope_accounts, updated_at
                 FROM sso_saml_configs WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.as_ref().map(config_from_row).transpose()
    }

    async fn create_sso_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        expires_at: OffsetDateTime,
        keep: usize,
    ) -> Result<()> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO sso_requests (tenant_id, request_id, expires_at) VALUES ($1, $2, $3)",
            &[&tenant.as_str(), &request_id, &ts(expires_at)],
        )
        .await
        .map_err(map_err)?;
        // The cap: every id past the `keep` latest-expiring ones goes.
        c.execute(
            "DELETE FROM sso_requests WHERE tenant_id = $1 AND request_id NOT IN (
                 SELECT request_id FROM sso_requests WHERE tenant_id = $1
                 ORDER BY expires_at DESC, request_id DESC LIMIT $2)",
            &[&tenant.as_str(), &keep],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn outstanding_sso_requests(
        &self,
        tenant: &TenantId,
        ids: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<String>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT request_id FROM sso_requests
                 WHERE tenant_id = $1 AND request_id = ANY($2) AND expires_at > $3",
                &[&tenant.as_str(), &ids, &ts(now)],
            )
            .await
            .map_err(map_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn take_sso_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let taken = c
            .execute(
                "DELETE FROM sso_requests WHERE tenant_id = $1 AND request_id = $2 AND expires_at > $3",
                &[&tenant.as_str(), &request_id, &ts(now)],
            )
            .await
            .map_err(map_err)?;
        c.execute(
            "DELETE FROM sso_requests WHERE expires_at <= $1",
            &[&ts(now)],
        )
        .await
        .map_err(map_err)?;
        Ok(taken == 1)
    }

    async fn record_assertion_id(
        &self,
        tenant: &TenantId,
        assertion_id: &str,
        keep_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM sso_assertions WHERE keep_until <= $1",
            &[&ts(now)],
        )
        .await
        .map_err(map_err)?;
        let added = c
            .execute(
                "INSERT INTO sso_assertions (tenant_id, assertion_id, keep_until) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id, assertion_id) DO NOTHING",
                &[&tenant.as_str(), &assertion_id, &ts(keep_until)],
            )
            .await
            .map_err(map_err)?;
        Ok(added == 1)
    }

    async fn sso_subject(
        &self,
        tenant: &TenantId,
        kind: PrincipalKind,
        principal_id: &str,
    ) -> Result<Option<SubjectPin>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        get_pin(&**c, tenant.as_str(), kind, principal_id).await
    }

    async fn pin_sso_subject(
        &self,
        tenant: &TenantId,
        kind: PrincipalKind,
        principal_id: &str,
        pin: &SubjectPin,
        at: OffsetDateTime,
    ) -> Result<SubjectPin> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO sso_subjects (tenant_id, principal_kind, principal_id, issuer, subject,
                pinned_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, principal_kind, principal_id) DO NOTHING",
            &[
                &tenant.as_str(),
                &kind.as_str(),
                &principal_id,
                &pin.issuer,
                &pin.subject,
                &ts(at),
            ],
        )
        .await
        .map_err(map_err)?;
        get_pin(&**c, tenant.as_str(), kind, principal_id)
            .await?
            .ok_or(Error::Internal("subject pin vanished".into()))
    }

    async fn find_account_by_user_name(
        &self,
        tenant: &TenantId,
        user_name: &str,
    ) -> Result<Option<UserRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {USER_COLS} FROM users u
                     WHERE u.tenant_id = $1 AND u.user_name_fold = $2 AND u.deleted_at IS NULL"
                ),
                &[&tenant.as_str(), &fold_case(user_name)],
            )
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_account_session(&self, s: &AccountSessionRecord) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO account_sessions (id_hash, tenant_id, user_id, created_at, last_seen_at,
                expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &s.id_hash.as_bytes().as_slice(),
                &s.tenant_id.as_str(),
                &s.user_id.as_str(),
                &ts(s.created_at),
                &ts(s.last_seen_at),
                &ts(s.expires_at),
            ],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn get_account_session(&self, id: &SessionHash) -> Result<Option<AccountSessionRecord>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT id_hash, tenant_id, user_id, created_at, last_seen_at, expires_at
                 FROM account_sessions WHERE id_hash = $1",
                &[&id.as_bytes().as_slice()],
            )
            .await
            .map_err(map_err)?;
        row.as_ref().map(account_session_from_row).transpose()
    }

    async fn touch_account_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "UPDATE account_sessions SET last_seen_at = $1 WHERE id_hash = $2",
            &[&ts(at), &id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn delete_account_session(&self, id: &SessionHash) -> Result<()> {
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "DELETE FROM account_sessions WHERE id_hash = $1",
            &[&id.as_bytes().as_slice()],
        )
        .await
        .map_err(map_err)
        .map(drop)
    }

    async fn get_password_policy(&self, tenant: &TenantId) -> Result<Option<PasswordPolicy>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT p.tenant_id, p.password_sign_in, p.break_glass_user, d.email, p.updated_at
                 FROM sso_sign_in_policies p
                 LEFT JOIN dashboard_users d ON d.id = p.break_glass_user
                 WHERE p.tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(PasswordPolicy {
                tenant_id: TenantId::from_trusted(r.get(0)),
                password_sign_in: r.get(1),
                break_glass: r
                    .get::<_, Option<String>>(2)
                    .map(DashboardUserId::from_trusted),
                break_glass_email: r.get(3),
                updated_at: time_of(r.get(4))?,
            })
        })
        .transpose()
    }

    async fn put_password_policy(&self, p: &PasswordPolicy, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO sso_sign_in_policies (tenant_id, password_sign_in, break_glass_user,
                updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id) DO UPDATE SET password_sign_in = excluded.password_sign_in,
                break_glass_user = excluded.break_glass_user, updated_at = excluded.updated_at",
            &[
                &p.tenant_id.as_str(),
                &p.password_sign_in,
                &p.break_glass.as_ref().map(|u| u.to_string()),
                &ts(p.updated_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn set_sso_group_role(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        role: Option<Role>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        match role {
            Some(role) => tx
                .execute(
                    "INSERT INTO sso_group_roles (tenant_id, group_id, role, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id, group_id) DO UPDATE SET role = excluded.role,
                        updated_at = excluded.updated_at",
                    &[&tenant.as_str(), &group.as_str(), &role.as_str(), &ts(at)],
                )
                .await
                .map_err(map_err)?,
            None => tx
                .execute(
                    "DELETE FROM sso_group_roles WHERE tenant_id = $1 AND group_id = $2",
                    &[&tenant.as_str(), &group.as_str()],
                )
                .await
                .map_err(map_err)?,
        };
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn sso_group_roles(&self, tenant: &TenantId) -> Result<Vec<SsoGroupRole>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let rows = c
            .query(
                "SELECT r.group_id, g.display_name, r.role FROM sso_group_roles r
                 JOIN groups g ON g.tenant_id = r.tenant_id AND g.id = r.group_id
                 WHERE r.tenant_id = $1 ORDER BY g.display_name_fold COLLATE \"C\", r.group_id",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let role: String = r.get(2);
                SsoGroupRole {
                    group_id: GroupId::from_trusted(r.get(0)),
                    display_name: r.get(1),
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                }
            })
            .collect())
    }

    async fn account_group_role(
        &self,
        tenant: &TenantId,
        account: &UserId,
    ) -> Result<Option<Role>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        account_role(&**c, tenant.as_str(), account.as_str()).await
    }

    async fn sso_dashboard_user_of(
        &self,
        tenant: &TenantId,
        account: &UserId,
    ) -> Result<Option<DashboardUserId>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT dashboard_user_id FROM sso_dashboard_users
                 WHERE tenant_id = $1 AND account_id = $2",
                &[&tenant.as_str(), &account.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| DashboardUserId::from_trusted(r.get(0))))
    }

    async fn put_sso_dashboard_user(
        &self,
        u: &DashboardUser,
        account: &UserId,
        audit: AuditDraft,
    ) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO dashboard_users (id, tenant_id, email, email_fold, role, password_hash,
                created_at) VALUES ($1, $2, $3, $4, $5, '', $6)
             ON CONFLICT (id) DO UPDATE SET email = excluded.email,
                email_fold = excluded.email_fold, role = excluded.role",
            &[
                &u.id.as_str(),
                &u.tenant_id.as_str(),
                &u.email,
                &fold_case(&u.email),
                &u.role.as_str(),
                &ts(u.created_at),
            ],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "INSERT INTO sso_dashboard_users (dashboard_user_id, tenant_id, account_id)
             VALUES ($1, $2, $3) ON CONFLICT (dashboard_user_id) DO NOTHING",
            &[&u.id.as_str(), &u.tenant_id.as_str(), &account.as_str()],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn sso_dashboard_role(&self, user: &DashboardUserId) -> Result<Option<SsoLinkedRole>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let Some(link) = c
            .query_opt(
                "SELECT tenant_id, account_id FROM sso_dashboard_users WHERE dashboard_user_id = $1",
                &[&user.as_str()],
            )
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let (t, a): (String, String) = (link.get(0), link.get(1));
        let role = account_role(&**c, &t, &a).await?;
        Ok(Some(SsoLinkedRole {
            account_id: UserId::from_trusted(a),
            role,
        }))
    }
    async fn put_oidc_config(&self, cfg: &OidcConfig, audit: AuditDraft) -> Result<()> {
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let tx = c.transaction().await.map_err(map_err)?;
        tx.execute(
            "INSERT INTO sso_oidc_configs (tenant_id, enabled, issuer, client_id, client_secret,
                scope_admins, scope_all_accounts, scope_accounts, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled,
                issuer = excluded.issuer, client_id = excluded.client_id,
                client_secret = excluded.client_secret, scope_admins = excluded.scope_admins,
                scope_all_accounts = excluded.scope_all_accounts,
                scope_accounts = excluded.scope_accounts, updated_at = excluded.updated_at",
            &[
                &cfg.tenant_id.as_str(),
                &cfg.enabled,
                &cfg.issuer,
                &cfg.client_id,
                &cfg.client_secret.expose(),
                &cfg.scope.admins,
                &cfg.scope.all_accounts,
                &json_list(&cfg.scope.accounts),
                &ts(cfg.updated_at),
            ],
        )
        .await
        .map_err(map_err)?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get_oidc_config(&self, tenant: &TenantId) -> Result<Option<OidcConfig>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "SELECT tenant_id, enabled, issuer, client_id, client_secret, scope_admins,
                        scope_all_accounts, scope_accounts, updated_at
                 FROM sso_oidc_configs WHERE tenant_id = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(OidcConfig {
                tenant_id: TenantId::from_trusted(r.get(0)),
                enabled: r.get(1),
                issuer: r.get(2),
                client_id: r.get(3),
                client_secret: ClientSecret::new(r.get::<_, String>(4)),
                scope: SsoScope {
                    admins: r.get(5),
                    all_accounts: r.get(6),
                    accounts: parse_list(r.get(7)),
                },
                updated_at: time_of(r.get(8))?,
            })
        })
        .transpose()
    }

    async fn create_oidc_request(
        &self,
        tenant: &TenantId,
        r: &OidcRequest,
        keep: usize,
    ) -> Result<()> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let c = self.pool.get().await.map_err(pool_err)?;
        c.execute(
            "INSERT INTO sso_oidc_requests (tenant_id, state, nonce, pkce_verifier, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &tenant.as_str(),
                &r.state,
                &r.nonce,
                &r.pkce_verifier,
                &ts(r.expires_at),
            ],
        )
        .await
        .map_err(map_err)?;
        c.execute(
            "DELETE FROM sso_oidc_requests WHERE tenant_id = $1 AND state NOT IN (
                 SELECT state FROM sso_oidc_requests WHERE tenant_id = $1
                 ORDER BY expires_at DESC, state DESC LIMIT $2)",
            &[&tenant.as_str(), &keep],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn take_oidc_request(
        &self,
        tenant: &TenantId,
        state: &str,
        now: OffsetDateTime,
    ) -> Result<Option<OidcRequest>> {
        let c = self.pool.get().await.map_err(pool_err)?;
        let row = c
            .query_opt(
                "DELETE FROM sso_oidc_requests
                 WHERE tenant_id = $1 AND state = $2 AND expires_at > $3
                 RETURNING state, nonce, pkce_verifier, expires_at",
                &[&tenant.as_str(), &state, &ts(now)],
            )
            .await
            .map_err(map_err)?;
        c.execute(
            "DELETE FROM sso_oidc_requests WHERE expires_at <= $1",
            &[&ts(now)],
        )
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(OidcRequest {
                state: r.get(0),
                nonce: r.get(1),
                pkce_verifier: r.get(2),
                expires_at: time_of(r.get(3))?,
            })
        })
        .transpose()
    }
}

/// The best role the account's current groups grant (0: administrator, 1: viewer); none
/// when no mapped group holds it or the account is suspended or soft-deleted.
async fn account_role<C: GenericClient>(
    c: &C,
    tenant: &str,
    account: &str,
) -> Result<Option<Role>> {
    let row = c
        .query_one(
            "SELECT MIN(CASE r.role WHEN 'administrator' THEN 0 ELSE 1 END)::INT4
             FROM group_members m
             JOIN sso_group_roles r ON r.tenant_id = m.tenant_id AND r.group_id = m.group_id
             JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
             WHERE m.tenant_id = $1 AND m.user_id = $2 AND u.active AND u.deleted_at IS NULL",
            &[&tenant, &account],
        )
        .await
        .map_err(map_err)?;
    Ok(match row.get::<_, Option<i32>>(0) {
        Some(0) => Some(Role::Administrator),
        Some(_) => Some(Role::Viewer),
        None => None,
    })
}
