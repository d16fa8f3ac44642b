//! SQLite side of single sign-on (migration 0009): SAML settings, request ids, the replay
//! store, subject pins and backup accounts' sessions.

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
use cairn_core::Result;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings serialises")
}

fn parse_list(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn config_from_row(r: &Row<'_>) -> rusqlite::Result<SamlIdpConfig> {
    Ok(SamlIdpConfig {
        tenant_id: TenantId::from_trusted(r.get(0)?),
        enabled: r.get(1)?,
        idp_entity_id: r.get(2)?,
        sso_url: r.get(3)?,
        certificates: parse_list(r.get(4)?),
        metadata_xml: r.get(5)?,
        metadata_url: r.get(6)?,
        scope: SsoScope {
            admins: r.get(7)?,
            all_accounts: r.get(8)?,
            accounts: parse_list(r.get(9)?),
        },
        updated_at: parse_time(r.get(10)?)?,
    })
}

fn account_session_from_row(r: &Row<'_>) -> rusqlite::Result<AccountSessionRecord> {
    let hash: Vec<u8> = r.get(0)?;
    Ok(AccountSessionRecord {
        id_hash: SessionHash::from_bytes(&hash).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Blob,
                "bad session hash".into(),
            )
        })?,
        tenant_id: TenantId::from_trusted(r.get(1)?),
        user_id: UserId::from_trusted(r.get(2)?),
        created_at: parse_time(r.get(3)?)?,
        last_seen_at: parse_time(r.get(4)?)?,
        expires_at: parse_time(r.get(5)?)?,
    })
}

#[async_trait]
impl SsoStore for SqliteStore {
    async fn put_saml_config(&self, config: &SamlIdpConfig, audit: AuditDraft) -> Result<()> {
        let c0 = config.clone();
        let certs = json_list(&c0.certificates);
        let accounts = json_list(&c0.scope.accounts);
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO sso_saml_configs (tenant_id, enabled, idp_entity_id, sso_url,
                        certificates, metadata_xml, metadata_url, scope_admins, scope_all_accounts,
                        scope_accounts, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled,
                        idp_entity_id = excluded.idp_entity_id, sso_url = excluded.sso_url,
                        certificates = excluded.certificates, metadata_xml = excluded.metadata_xml,
                        metadata_url = excluded.metadata_url, scope_admins = excluded.scope_admins,
                        scope_all_accounts = excluded.scope_all_accounts,
                        scope_accounts = excluded.scope_accounts, updated_at = excluded.updated_at",
                    params![
                        c0.tenant_id.as_str(),
                        c0.enabled,
                        c0.idp_entity_id,
                        c0.sso_url,
                        certs,
                        c0.metadata_xml,
                        c0.metadata_url,
                        c0.scope.admins,
                        c0.scope.all_accounts,
                        accounts,
                        ts(c0.updated_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn get_saml_config(&self, tenant: &TenantId) -> Result<Option<SamlIdpConfig>> {
        let id = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT tenant_id, enabled, idp_entity_id, sso_url, certificates, metadata_xml,
                        metadata_url, scope_admins, scope_all_accounts, scope_accounts, updated_at
                 FROM sso_saml_configs WHERE tenant_id = ?",
            )?
            .query_row([id], config_from_row)
            .optional()
        })
        .await
    }

    async fn create_sso_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        expires_at: OffsetDateTime,
        keep: usize,
    ) -> Result<()> {
        let (t, r) = (tenant.to_string(), request_id.to_owned());
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO sso_requests (tenant_id, request_id, expires_at) VALUES (?, ?, ?)",
                    params![t, r, ts(expires_at)],
                ))?;
                // The cap: every id past the `keep` latest-expiring ones goes.
                db(c.execute(
                    "DELETE FROM sso_requests WHERE tenant_id = ?1 AND request_id NOT IN (
                         SELECT request_id FROM sso_requests WHERE tenant_id = ?1
                         ORDER BY expires_at DESC, request_id DESC LIMIT ?2)",
                    params![t, keep],
                ))
                .map(drop)
            })
            .await
    }

    async fn outstanding_sso_requests(
        &self,
        tenant: &TenantId,
        ids: &[String],
        now: OffsetDateTime,
    ) -> Result<Vec<String>> {
        let t = tenant.to_string();
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT request_id FROM sso_requests
                 WHERE tenant_id = ? AND request_id = ? AND expires_at > ?",
            )?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(found) = st
                    .query_row(params![t, id, ts(now)], |r| r.get::<_, String>(0))
                    .optional()?
                {
                    out.push(found);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn take_sso_request(
        &self,
        tenant: &TenantId,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let (t, r) = (tenant.to_string(), request_id.to_owned());
        self.writer
            .write(move |c| {
                let taken = db(c.execute(
                    "DELETE FROM sso_requests WHERE tenant_id = ? AND request_id = ? AND expires_at > ?",
                    params![t, r, ts(now)],
                ))?;
                db(c.execute(
                    "DELETE FROM sso_requests WHERE expires_at <= ?",
                    params![ts(now)],
                ))?;
                Ok(taken == 1)
            })
            .await
    }

    async fn record_assertion_id(
        &self,
        tenant: &TenantId,
        assertion_id: &str,
        keep_until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let (t, a) = (tenant.to_string(), assertion_id.to_owned());
        self.writer
            .write(move |c| {
                db(c.execute(
                    "DELETE FROM sso_assertions WHERE keep_until <= ?",
                    params![ts(now)],
                ))?;
                let added = db(c.execute(
                    "INSERT INTO sso_assertions (tenant_id, assertion_id, keep_until) VALUES (?, ?, ?)
                     ON CONFLICT (tenant_id, assertion_id) DO NOTHING",
                    params![t, a, ts(keep_until)],
                ))?;
                Ok(added == 1)
            })
            .await
    }

    async fn sso_subject(
        &self,
        tenant: &TenantId,
        kind: PrincipalKind,
        principal_id: &str,
    ) -> Result<Option<SubjectPin>> {
        let (t, p) = (tenant.to_string(), principal_id.to_owned());
        self.read(move |c| get_pin(c, &t, kind, &p)).await
    }

    async fn pin_sso_subject(
        &self,
        tenant: &TenantId,
        kind: PrincipalKind,
        principal_id: &str,
        pin: &SubjectPin,
        at: OffsetDateTime,
    ) -> Result<SubjectPin> {
        let (t, p, pin) = (tenant.to_string(), principal_id.to_owned(), pin.clone());
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO sso_subjects (tenant_id, principal_kind, principal_id, issuer,
                        subject, pinned_at) VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant_id, principal_kind, principal_id) DO NOTHING",
                    params![t, kind.as_str(), p, pin.issuer, pin.subject, ts(at)],
                ))?;
                db(get_pin(c, &t, kind, &p))?
                    .ok_or(cairn_core::Error::Internal("subject pin vanished".into()))
            })
            .await
    }

    async fn find_account_by_user_name(
        &self,
        tenant: &TenantId,
        user_name: &str,
    ) -> Result<Option<UserRecord>> {
        let (t, fold) = (tenant.to_string(), fold_case(user_name));
        self.read(move |c| {
            c.prepare_cached(concat!(
                "SELECT ",
                user_cols!(),
                " FROM users u WHERE u.tenant_id = ? AND u.user_name_fold = ? AND u.deleted_at IS NULL"
            ))?
            .query_row(params![t, fold], user_from_row)
            .optional()
        })
        .await
    }

    async fn create_account_session(&self, s: &AccountSessionRecord) -> Result<()> {
        let s = s.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO account_sessions (id_hash, tenant_id, user_id, created_at,
                        last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                    params![
                        s.id_hash.as_bytes().to_vec(),
                        s.tenant_id.as_str(),
                        s.user_id.as_str(),
                        ts(s.created_at),
                        ts(s.last_seen_at),
                        ts(s.expires_at)
                    ],
                ))
                .map(drop)
            })
            .await
    }

    async fn get_account_session(&self, id: &SessionHash) -> Result<Option<AccountSessionRecord>> {
        let id = id.as_bytes().to_vec();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id_hash, tenant_id, user_id, created_at, last_seen_at, expires_at
                 FROM account_sessions WHERE id_hash = ?",
            )?
            .query_row([id], account_session_from_row)
            .optional()
        })
        .await
    }

    async fn touch_account_session(&self, id: &SessionHash, at: OffsetDateTime) -> Result<()> {
        let id = id.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "UPDATE account_sessions SET last_seen_at = ? WHERE id_hash = ?",
                    params![ts(at), id],
                ))
                .map(drop)
            })
            .await
    }

    async fn delete_account_session(&self, id: &SessionHash) -> Result<()> {
        let id = id.as_bytes().to_vec();
        self.writer
            .write(move |c| {
                db(c.execute("DELETE FROM account_sessions WHERE id_hash = ?", [id])).map(drop)
            })
            .await
    }

    async fn get_password_policy(&self, tenant: &TenantId) -> Result<Option<PasswordPolicy>> {
        let id = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT p.tenant_id, p.password_sign_in, p.break_glass_user, d.email, p.updated_at
                 FROM sso_sign_in_policies p
                 LEFT JOIN dashboard_users d ON d.id = p.break_glass_user
                 WHERE p.tenant_id = ?",
            )?
            .query_row([id], |r| {
                Ok(PasswordPolicy {
                    tenant_id: TenantId::from_trusted(r.get(0)?),
                    password_sign_in: r.get(1)?,
                    break_glass: r
                        .get::<_, Option<String>>(2)?
                        .map(DashboardUserId::from_trusted),
                    break_glass_email: r.get(3)?,
                    updated_at: parse_time(r.get(4)?)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn put_password_policy(&self, p: &PasswordPolicy, audit: AuditDraft) -> Result<()> {
        let p = p.clone();
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO sso_sign_in_policies (tenant_id, password_sign_in,
                        break_glass_user, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (tenant_id) DO UPDATE SET
                        password_sign_in = excluded.password_sign_in,
                        break_glass_user = excluded.break_glass_user,
                        updated_at = excluded.updated_at",
                    params![
                        p.tenant_id.as_str(),
                        p.password_sign_in,
                        p.break_glass.as_ref().map(|u| u.to_string()),
                        ts(p.updated_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn set_sso_group_role(
        &self,
        tenant: &TenantId,
        group: &GroupId,
        role: Option<Role>,
        at: OffsetDateTime,
        audit: AuditDraft,
    ) -> Result<()> {
        let (t, g) = (tenant.to_string(), group.to_string());
        self.writer
            .write(move |c| {
                match role {
                    Some(role) => db(c.execute(
                        "INSERT INTO sso_group_roles (tenant_id, group_id, role, updated_at)
                         VALUES (?, ?, ?, ?)
                         ON CONFLICT (tenant_id, group_id) DO UPDATE SET role = excluded.role,
                            updated_at = excluded.updated_at",
                        params![t, g, role.as_str(), ts(at)],
                    ))?,
                    None => db(c.execute(
                        "DELETE FROM sso_group_roles WHERE tenant_id = ? AND group_id = ?",
                        params![t, g],
                    ))?,
                };
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn sso_group_roles(&self, tenant: &TenantId) -> Result<Vec<SsoGroupRole>> {
        let t = tenant.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT r.group_id, g.display_name, r.role FROM sso_group_roles r
                 JOIN groups g ON g.tenant_id = r.tenant_id AND g.id = r.group_id
                 WHERE r.tenant_id = ? ORDER BY g.display_name_fold, r.group_id",
            )?;
            let rows = st.query_map([t], |r| {
                let role: String = r.get(2)?;
                Ok(SsoGroupRole {
                    group_id: GroupId::from_trusted(r.get(0)?),
                    display_name: r.get(1)?,
                    role: Role::parse(&role).unwrap_or(Role::Viewer),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn account_group_role(
        &self,
        tenant: &TenantId,
        account: &UserId,
    ) -> Result<Option<Role>> {
        let (t, a) = (tenant.to_string(), account.to_string());
        self.read(move |c| {
            let rank: Option<i64> = c
                .prepare_cached(ACCOUNT_ROLE_SQL)?
                .query_row(params![t, a], |r| r.get(0))?;
            Ok(role_of_rank(rank))
        })
        .await
    }

    async fn sso_dashboard_user_of(
        &self,
        tenant: &TenantId,
        account: &UserId,
    ) -> Result<Option<DashboardUserId>> {
        let (t, a) = (tenant.to_string(), account.to_string());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT dashboard_user_id FROM sso_dashboard_users
                 WHERE tenant_id = ? AND account_id = ?",
            )?
            .query_row(params![t, a], |r| {
                Ok(DashboardUserId::from_trusted(r.get(0)?))
            })
            .optional()
        })
        .await
    }

    async fn put_sso_dashboard_user(
        &self,
        user: &DashboardUser,
        account: &UserId,
        audit: AuditDraft,
    ) -> Result<()> {
        let (u, a) = (user.clone(), account.to_string());
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO dashboard_users (id, tenant_id, email, email_fold, role,
                        password_hash, created_at) VALUES (?, ?, ?, ?, ?, '', ?)
                     ON CONFLICT (id) DO UPDATE SET email = excluded.email,
                        email_fold = excluded.email_fold, role = excluded.role",
                    params![
                        u.id.as_str(),
                        u.tenant_id.as_str(),
                        u.email,
                        fold_case(&u.email),
                        u.role.as_str(),
                        ts(u.created_at)
                    ],
                ))?;
                db(c.execute(
                    "INSERT INTO sso_dashboard_users (dashboard_user_id, tenant_id, account_id)
                     VALUES (?, ?, ?) ON CONFLICT (dashboard_user_id) DO NOTHING",
                    params![u.id.as_str(), u.tenant_id.as_str(), a],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn sso_dashboard_role(&self, user: &DashboardUserId) -> Result<Option<SsoLinkedRole>> {
        let u = user.to_string();
        self.read(move |c| {
            let link = c
                .prepare_cached(
                    "SELECT tenant_id, account_id FROM sso_dashboard_users
                     WHERE dashboard_user_id = ?",
                )?
                .query_row([u], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .optional()?;
            let Some((t, a)) = link else {
                return Ok(None);
            };
            let rank: Option<i64> = c
                .prepare_cached(ACCOUNT_ROLE_SQL)?
                .query_row(params![t, a], |r| r.get(0))?;
            Ok(Some(SsoLinkedRole {
                account_id: UserId::from_trusted(a),
                role: role_of_rank(rank),
            }))
        })
        .await
    }

    async fn put_oidc_config(&self, config: &OidcConfig, audit: AuditDraft) -> Result<()> {
        let c0 = config.clone();
        let accounts = json_list(&c0.scope.accounts);
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO sso_oidc_configs (tenant_id, enabled, issuer, client_id,
                        client_secret, scope_admins, scope_all_accounts, scope_accounts, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled,
                        issuer = excluded.issuer, client_id = excluded.client_id,
                        client_secret = excluded.client_secret, scope_admins = excluded.scope_admins,
                        scope_all_accounts = excluded.scope_all_accounts,
                        scope_accounts = excluded.scope_accounts, updated_at = excluded.updated_at",
                    params![
                        c0.tenant_id.as_str(),
                        c0.enabled,
                        c0.issuer,
                        c0.client_id,
                        c0.client_secret.expose(),
                        c0.scope.admins,
                        c0.scope.all_accounts,
                        accounts,
                        ts(c0.updated_at)
                    ],
                ))?;
                db(insert_audit(c, &audit))
            })
            .await
    }

    async fn get_oidc_config(&self, tenant: &TenantId) -> Result<Option<OidcConfig>> {
        let id = tenant.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT tenant_id, enabled, issuer, client_id, client_secret, scope_admins,
                        scope_all_accounts, scope_accounts, updated_at
                 FROM sso_oidc_configs WHERE tenant_id = ?",
            )?
            .query_row([id], |r| {
                Ok(OidcConfig {
                    tenant_id: TenantId::from_trusted(r.get(0)?),
                    enabled: r.get(1)?,
                    issuer: r.get(2)?,
                    client_id: r.get(3)?,
                    client_secret: ClientSecret::new(r.get::<_, String>(4)?),
                    scope: SsoScope {
                        admins: r.get(5)?,
                        all_accounts: r.get(6)?,
                        accounts: parse_list(r.get(7)?),
                    },
                    updated_at: parse_time(r.get(8)?)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn create_oidc_request(
        &self,
        tenant: &TenantId,
        request: &OidcRequest,
        keep: usize,
    ) -> Result<()> {
        let (t, r) = (tenant.to_string(), request.clone());
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.writer
            .write(move |c| {
                db(c.execute(
                    "INSERT INTO sso_oidc_requests (tenant_id, state, nonce, pkce_verifier,
                        expires_at) VALUES (?, ?, ?, ?, ?)",
                    params![t, r.state, r.nonce, r.pkce_verifier, ts(r.expires_at)],
                ))?;
                db(c.execute(
                    "DELETE FROM sso_oidc_requests WHERE tenant_id = ?1 AND state NOT IN (
                         SELECT state FROM sso_oidc_requests WHERE tenant_id = ?1
                         ORDER BY expires_at DESC, state DESC LIMIT ?2)",
                    params![t, keep],
                ))
                .map(drop)
            })
            .await
    }

    async fn take_oidc_request(
        &self,
        tenant: &TenantId,
        state: &str,
        now: OffsetDateTime,
    ) -> Result<Option<OidcRequest>> {
        let (t, st) = (tenant.to_string(), state.to_owned());
        self.writer
            .write(move |c| {
                let taken = db(c
                    .prepare_cached(
                        "DELETE FROM sso_oidc_requests
                         WHERE tenant_id = ? AND state = ? AND expires_at > ?
                         RETURNING state, nonce, pkce_verifier, expires_at",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_row(params![t, st, ts(now)], |r| {
                            Ok(OidcRequest {
                                state: r.get(0)?,
                                nonce: r.get(1)?,
                                pkce_verifier: r.get(2)?,
                                expires_at: parse_time(r.get(3)?)?,
                            })
                        })
                        .optional()
                    }))?;
                db(c.execute(
                    "DELETE FROM sso_oidc_requests WHERE expires_at <= ?",
                    params![ts(now)],
                ))?;
                Ok(taken)
            })
            .await
    }
}

/// The best role (0: administrator, 1: viewer) the account's current groups grant; NULL
/// when none does or the account is suspended or soft-deleted.
const ACCOUNT_ROLE_SQL: &str = "SELECT MIN(CASE r.role WHEN 'administrator' THEN 0 ELSE 1 END)
     FROM group_members m
     JOIN sso_group_roles r ON r.tenant_id = m.tenant_id AND r.group_id = m.group_id
     JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
     WHERE m.tenant_id = ? AND m.user_id = ? AND u.active = 1 AND u.deleted_at IS NULL";

fn role_of_rank(rank: Option<i64>) -> Option<Role> {
    match rank {
        Some(0) => Some(Role::Administrator),
        Some(_) => Some(Role::Viewer),
        None => None,
    }
}

fn get_pin(
    c: &Connection,
    tenant: &str,
    kind: PrincipalKind,
    principal: &str,
) -> rusqlite::Result<Option<SubjectPin>> {
    c.prepare_cached(
        "SELECT issuer, subject FROM sso_subjects
         WHERE tenant_id = ? AND principal_kind = ? AND principal_id = ?",
    )?
    .query_row(params![tenant, kind.as_str(), principal], |r| {
        Ok(SubjectPin {
            issuer: r.get(0)?,
            subject: r.get(1)?,
        })
    })
    .optional()
}
