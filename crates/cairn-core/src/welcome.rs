//! Getting people started (issue 22): one-time sign-in links for backup accounts. An
//! administrator (the account page, or `cairn account sign-in-link`) makes one; the
//! person opens it, confirms on a page (a POST, so that mail scanners fetching the link
//! do not use it up), and lands on their own page (`/me`) with an account session.
//!
//! The link's secret is 256 random bits ([`LinkSecret`]); the store keeps only its
//! SHA-256. It is single use (a conditional update that exactly one caller wins, in the
//! same transaction as the new session and its audit entry), expires
//! ([`Services::account_link_lifetime`], 7 days by default) and belongs to one tenant and
//! one account.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::ids::{TenantId, UserId};
use crate::people::LinkSecret;
use crate::service::{Authority, Services};
use crate::session::{SessionSecret, SESSION_ABSOLUTE};
use crate::sso::AccountSessionRecord;
use crate::store::Role;
use crate::user::UserRecord;
use crate::{Error, Result};
use serde_json::json;
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

/// How long a sign-in link is valid unless the operator says otherwise.
pub const ACCOUNT_LINK_LIFETIME: Duration = Duration::days(7);

/// How long a used or expired link is kept, so that opening it again says "used" or
/// "expired" rather than "unknown"; older ones go as new links are made.
pub const ACCOUNT_LINK_KEEP: Duration = Duration::days(30);

/// A sign-in link as stored (only the hash of its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLinkRecord {
    pub hash: [u8; 32],
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
}

/// A link just made: its secret is in the URL, shown (or sent) once.
#[derive(Debug, Clone)]
pub struct NewAccountLink {
    pub account: UserRecord,
    pub secret: LinkSecret,
    pub url: String,
    pub expires_at: OffsetDateTime,
}

/// What opening a link finds.
#[derive(Debug, Clone)]
pub enum AccountLinkState {
    /// Unused and unexpired (until the time given), for this live, active account.
    Live(Box<UserRecord>, OffsetDateTime),
    Used,
    Expired,
    /// No such link (never made, or forgotten long after it expired), or its account is
    /// deleted or suspended.
    Unknown,
}

impl Services {
    fn link_actor(who: Authority<'_>, tenant: &TenantId) -> Result<Actor> {
        match who {
            Authority::Operator(_) => Ok(Actor::Operator),
            Authority::Dashboard(ctx) => {
                if ctx.tenant_id() != tenant || ctx.role() != Role::Administrator {
                    return Err(Error::Forbidden);
                }
                Ok(Actor::DashboardUser {
                    id: ctx.user_id().clone(),
                    email: ctx.email().to_owned(),
                })
            }
        }
    }

    /// The URL of an account sign-in link.
    pub fn account_link_url(&self, secret: &LinkSecret) -> String {
        format!("{}/me/link/{}", self.public_url, secret.expose())
    }

    /// Makes a one-time sign-in link for the account `id` of `tenant` (administrators
    /// and the operator). Refused for a suspended account (it could not sign in).
    pub async fn create_account_sign_in_link(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &UserId,
        meta: &RequestMeta,
    ) -> Result<NewAccountLink> {
        let actor = Self::link_actor(who, tenant)?;
        let account = self
            .store
            .get_user(tenant, id)
            .await?
            .ok_or(Error::NotFound("account"))?;
        self.issue_account_link(account, actor, meta).await
    }

    /// Like [`Self::create_account_sign_in_link`], for an account named by its userName
    /// (`cairn account sign-in-link`).
    pub async fn create_account_sign_in_link_by_name(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        user_name: &str,
        meta: &RequestMeta,
    ) -> Result<NewAccountLink> {
        let actor = Self::link_actor(who, tenant)?;
        let account = self.find_account(tenant, user_name).await?;
        self.issue_account_link(account, actor, meta).await
    }

    pub(crate) async fn issue_account_link(
        &self,
        account: UserRecord,
        actor: Actor,
        meta: &RequestMeta,
    ) -> Result<NewAccountLink> {
        if !account.active {
            return Err(Error::Invalid {
                field: "active",
                reason: "the account is suspended: it cannot sign in".into(),
            });
        }
        let now = self.clock.now();
        let secret = LinkSecret::generate();
        let record = AccountLinkRecord {
            hash: secret.hash(),
            tenant_id: account.tenant_id.clone(),
            user_id: account.id.clone(),
            created_at: now,
            expires_at: now + self.account_link_lifetime,
            used_at: None,
        };
        let audit = AuditDraft {
            tenant_id: account.tenant_id.clone(),
            actor,
            action: Action::AccountSignInLinkCreated,
            target_type: "user",
            target_id: Some(account.id.to_string()),
            target_name: Some(account.user_name.to_string()),
            changes: json!({"link_expires_at": {"after": crate::clock::format_ts(record.expires_at)}}),
            meta: meta.clone(),
            at: now,
        };
        self.store
            .create_account_link(&record, now - ACCOUNT_LINK_KEEP, audit)
            .await?;
        Ok(NewAccountLink {
            url: self.account_link_url(&secret),
            expires_at: record.expires_at,
            account,
            secret,
        })
    }

    /// What the link behind `secret` is now (nothing is changed).
    pub async fn account_link_state(&self, secret: &LinkSecret) -> Result<AccountLinkState> {
        let hash = secret.hash();
        let Some(link) = self
            .store
            .get_account_link(&hash)
            .await?
            .filter(|l| bool::from(l.hash.ct_eq(&hash)))
        else {
            return Ok(AccountLinkState::Unknown);
        };
        if link.used_at.is_some() {
            return Ok(AccountLinkState::Used);
        }
        if self.clock.now() >= link.expires_at {
            return Ok(AccountLinkState::Expired);
        }
        match self.store.get_user(&link.tenant_id, &link.user_id).await? {
            Some(a) if a.active => Ok(AccountLinkState::Live(Box::new(a), link.expires_at)),
            _ => Ok(AccountLinkState::Unknown),
        }
    }

    /// Uses the link up and starts the account's session (ending `previous`, the
    /// browser's earlier account session, if any). `Err(state)` when the link is not
    /// live: nothing is started then.
    pub async fn use_account_sign_in_link(
        &self,
        secret: &LinkSecret,
        previous: Option<&SessionSecret>,
        meta: &RequestMeta,
    ) -> Result<std::result::Result<SessionSecret, AccountLinkState>> {
        let account = match self.account_link_state(secret).await? {
            AccountLinkState::Live(a, _) => *a,
            other => return Ok(Err(other)),
        };
        let now = self.clock.now();
        let session = SessionSecret::generate();
        let record = AccountSessionRecord {
            id_hash: session.hash(),
            tenant_id: account.tenant_id.clone(),
            user_id: account.id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + SESSION_ABSOLUTE,
        };
        let audit = AuditDraft {
            tenant_id: account.tenant_id.clone(),
            actor: Actor::SingleSignOn {
                subject: Some(account.user_name.to_string()),
            },
            action: Action::AccountSignInLinkUsed,
            target_type: "user",
            target_id: Some(account.id.to_string()),
            target_name: Some(account.user_name.to_string()),
            changes: json!({}),
            meta: meta.clone(),
            at: now,
        };
        // The store's conditional update decides: of two concurrent uses, one wins.
        if !self
            .store
            .use_account_link(&secret.hash(), now, &record, audit)
            .await?
        {
            return Ok(Err(AccountLinkState::Used));
        }
        if let Some(prev) = previous {
            self.store.delete_account_session(&prev.hash()).await?;
        }
        Ok(Ok(session))
    }
}
