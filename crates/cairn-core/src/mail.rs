//! Mail to backup accounts (issue 22): the outbox that a background task sends from
//! (`cairn serve --smtp-url`), what each mail says, the tenant's "Welcome new accounts"
//! setting with its single reminder, and sending sign-in links to every account that
//! never backed up.
//!
//! A queued mail names an account and a kind, never a link: the link is made when the
//! mail is sent ([`Services::prepare_mail`]), so no link secret is ever stored in clear.
//! Rows are claimed with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so several
//! instances never send one row at the same time; a failed attempt is retried later
//! ([`retry_delay`]) up to [`MAX_ATTEMPTS`] times. A crash after the relay accepted a
//! mail but before the row was marked sent sends it again (with a new link): at least
//! once, never lost.

use crate::audit::{Action, Actor, AuditDraft, RequestMeta};
use crate::clock::format_ts;
use crate::ids::{TenantId, UserId};
use crate::service::{Authority, Services};
use crate::user::UserRecord;
use crate::{Error, Result};
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// What a queued mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// To an account provisioning just created ("Welcome new accounts").
    Welcome,
    /// Once, to a welcomed account with no backup after the tenant's N days.
    Reminder,
    /// Sent by an administrator ("Send sign-in link", "Send to all").
    SignInLink,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Welcome => "welcome",
            MailKind::Reminder => "reminder",
            MailKind::SignInLink => "sign_in_link",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [MailKind::Welcome, MailKind::Reminder, MailKind::SignInLink]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a queued mail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    Pending,
    Sent,
    /// Given up after [`MAX_ATTEMPTS`], or refused by the relay for good.
    Failed,
    /// Nothing to send any more: the account is gone, suspended or without email, or
    /// (a reminder) it has backed up meanwhile.
    Dropped,
}

impl MailState {
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Pending => "pending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
            MailState::Dropped => "dropped",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            MailState::Pending,
            MailState::Sent,
            MailState::Failed,
            MailState::Dropped,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub kind: MailKind,
    pub state: MailState,
    pub created_at: OffsetDateTime,
    pub next_attempt_at: OffsetDateTime,
    /// Attempts started so far (a claim counts one).
    pub attempts: u32,
    pub sent_at: Option<OffsetDateTime>,
    /// Why the last attempt failed (the relay's answer; never a password).
    pub last_error: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// Try again at this time.
    Retry(OffsetDateTime, String),
    /// Do not try again.
    Failed(String),
    /// Nothing to send any more (see [`MailState::Dropped`]).
    Dropped,
}

/// A tenant's "Welcome new accounts" setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WelcomeSettings {
    pub tenant_id: TenantId,
    pub enabled: bool,
    /// When it was last turned on: accounts created before are not welcomed.
    pub enabled_at: Option<OffsetDateTime>,
    /// Remind once after this many days without a backup (`None`: never).
    pub remind_days: Option<u32>,
    pub updated_at: OffsetDateTime,
}

/// A mail ready for the relay: plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Attempts before a mail is given up.
pub const MAX_ATTEMPTS: u32 = 10;
/// How long a claim holds a row: an instance that dies mid-send frees it after this.
pub const CLAIM_LEASE: Duration = Duration::minutes(5);
/// Rows claimed per round.
pub const CLAIM_BATCH: usize = 20;
/// The most days "remind after N days" takes.
pub const MAX_REMIND_DAYS: u32 = 365;
/// The most accounts one "Send to all" or CSV export covers.
pub const MAX_BULK_LINKS: usize = 5_000;

/// The wait before attempt `attempts + 1`: 30 s, doubling, at most an hour.
pub fn retry_delay(attempts: u32) -> Duration {
    let secs = 30i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(7));
    Duration::seconds(secs.min(3600))
}

fn email_ok(email: &str) -> bool {
    let e = email.trim();
    !e.is_empty()
        && e.len() <= 254
        && e.contains('@')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Services {
    fn mail_actor(who: Authority<'_>, tenant: &TenantId) -> Result<Actor> {
        match who {
            Authority::Operator(_) => Ok(Actor::Operator),
            Authority::Dashboard(ctx) => {
                if ctx.tenant_id() != tenant || ctx.role() != crate::store::Role::Administrator {
                    return Err(Error::Forbidden);
                }
                Ok(Actor::DashboardUser {
                    id: ctx.user_id().clone(),
                    email: ctx.email().to_owned(),
                })
            }
        }
    }

    fn outbox_row(&self, account: &UserRecord, kind: MailKind) -> OutboxMail {
        let now = self.clock.now();
        OutboxMail {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: account.tenant_id.clone(),
            user_id: account.id.clone(),
            kind,
            state: MailState::Pending,
            created_at: now,
            next_attempt_at: now,
            attempts: 0,
            sent_at: None,
            last_error: None,
        }
    }

    fn wake_mailer(&self) {
        self.mail_wake.notify_one();
    }

    /// The tenant's welcome setting (off when never set).
    pub async fn welcome_settings(&self, tenant: &TenantId) -> Result<WelcomeSettings> {
        Ok(self
            .store
            .welcome_settings(tenant)
            .await?
            .unwrap_or(WelcomeSettings {
                tenant_id: tenant.clone(),
                enabled: false,
                enabled_at: None,
                remind_days: None,
                updated_at: self.clock.now(),
            }))
    }

    /// Turns "Welcome new accounts" on or off, with the reminder's days (administrators
    /// and the operator; audited).
    pub async fn set_welcome_settings(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        enabled: bool,
        remind_days: Option<u32>,
        meta: &RequestMeta,
    ) -> Result<WelcomeSettings> {
        let actor = Self::mail_actor(who, tenant)?;
        self.tenant(tenant).await?;
        if let Some(d) = remind_days {
            if !(1..=MAX_REMIND_DAYS).contains(&d) {
                return Err(Error::Invalid {
                    field: "remind_days",
                    reason: format!("must be a whole number of days from 1 to {MAX_REMIND_DAYS}"),
                });
            }
        }
        let before = self.welcome_settings(tenant).await?;
        let now = self.clock.now();
        let after = WelcomeSettings {
            tenant_id: tenant.clone(),
            enabled,
            // Turning it on welcomes accounts created from now on, not the ones before.
            enabled_at: match (before.enabled, enabled) {
                (_, false) => before.enabled_at,
                (true, true) => before.enabled_at,
                (false, true) => Some(now),
            },
            remind_days,
            updated_at: now,
        };
        let audit = AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::WelcomeSettingsChanged,
            target_type: "tenant",
            target_id: Some(tenant.to_string()),
            target_name: None,
            changes: json!({
                "welcome": {"before": before.enabled, "after": enabled},
                "remind_days": {"before": before.remind_days, "after": remind_days},
            }),
            meta: meta.clone(),
            at: now,
        };
        self.store.put_welcome_settings(&after, audit).await?;
        Ok(after)
    }

    /// Queues the welcome mail of an account provisioning just created, when the tenant
    /// welcomes new accounts and the account has an email. Never fails the creation: a
    /// miss here is caught by [`Self::queue_due_mail`].
    pub async fn queue_welcome(&self, account: &UserRecord) {
        let Some(email) = account.email.as_deref() else {
            return;
        };
        if !email_ok(email) {
            return;
        }
        let queued: Result<bool> = async {
            let s = self.welcome_settings(&account.tenant_id).await?;
            if !s.enabled {
                return Ok(false);
            }
            self.store
                .queue_mail(&self.outbox_row(account, MailKind::Welcome), None)
                .await
        }
        .await;
        match queued {
            Ok(true) => self.wake_mailer(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, tenant = %account.tenant_id,
                "queueing a welcome mail failed; the next scan queues it"),
        }
    }

    /// Queues what is due without a request: welcome mails that were missed (an account
    /// created while the instance stopped between its commit and the queueing) and the
    /// single reminders. Returns how many were queued.
    pub async fn queue_due_mail(&self) -> Result<u64> {
        let n = self.store.queue_due_mail(self.clock.now()).await?;
        if n > 0 {
            self.wake_mailer();
        }
        Ok(n)
    }

    /// "Send sign-in link": queues a mail with a fresh link to the account (administrators
    /// and the operator; needs a mail relay and the account's email).
    pub async fn send_sign_in_link(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        id: &UserId,
        meta: &RequestMeta,
    ) -> Result<UserRecord> {
        let actor = Self::mail_actor(who, tenant)?;
        self.require_mail()?;
        let account = self
            .store
            .get_user(tenant, id)
            .await?
            .ok_or(Error::NotFound("account"))?;
        if !account.email.as_deref().is_some_and(email_ok) {
            return Err(Error::Invalid {
                field: "email",
                reason: "the account has no email address to send the link to".into(),
            });
        }
        if !account.active {
            return Err(Error::Invalid {
                field: "active",
                reason: "the account is suspended: it cannot sign in".into(),
            });
        }
        let audit = self.mail_queued_audit(tenant, actor, Some(&account), 1, meta);
        self.store
            .queue_mail(
                &self.outbox_row(&account, MailKind::SignInLink),
                Some(audit),
            )
            .await?;
        self.wake_mailer();
        Ok(account)
    }

    fn mail_queued_audit(
        &self,
        tenant: &TenantId,
        actor: Actor,
        account: Option<&UserRecord>,
        count: usize,
        meta: &RequestMeta,
    ) -> AuditDraft {
        AuditDraft {
            tenant_id: tenant.clone(),
            actor,
            action: Action::SignInMailQueued,
            target_type: if account.is_some() { "user" } else { "tenant" },
            target_id: Some(account.map_or_else(|| tenant.to_string(), |a| a.id.to_string())),
            target_name: account.map(|a| a.user_name.to_string()),
            changes: json!({"mails": {"after": count}}),
            meta: meta.clone(),
            at: self.clock.now(),
        }
    }

    fn require_mail(&self) -> Result<()> {
        if self.mail_enabled {
            Ok(())
        } else {
            Err(Error::Invalid {
                field: "smtp",
                reason: "no mail relay is set up (cairn serve --smtp-url)".into(),
            })
        }
    }

    /// The tenant's live, active accounts that never backed up, by userName (at most
    /// [`MAX_BULK_LINKS`]).
    pub async fn never_backed_up(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
    ) -> Result<Vec<UserRecord>> {
        Self::mail_actor(who, tenant)?;
        self.store.never_backed_up(tenant, MAX_BULK_LINKS).await
    }

    /// "Export CSV": a new sign-in link for each account that never backed up (each one
    /// audited).
    pub async fn sign_in_links_for_never_backed_up(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        meta: &RequestMeta,
    ) -> Result<Vec<crate::welcome::NewAccountLink>> {
        let actor = Self::mail_actor(who, tenant)?;
        let accounts = self.store.never_backed_up(tenant, MAX_BULK_LINKS).await?;
        let mut out = Vec::with_capacity(accounts.len());
        for a in accounts {
            out.push(self.issue_account_link(a, actor.clone(), meta).await?);
        }
        Ok(out)
    }

    /// "Send to all": queues a sign-in link mail to each account that never backed up
    /// and has an email. Returns how many were queued.
    pub async fn send_sign_in_links_to_never_backed_up(
        &self,
        who: Authority<'_>,
        tenant: &TenantId,
        meta: &RequestMeta,
    ) -> Result<usize> {
        let actor = Self::mail_actor(who, tenant)?;
        self.require_mail()?;
        let rows: Vec<OutboxMail> = self
            .store
            .never_backed_up(tenant, MAX_BULK_LINKS)
            .await?
            .iter()
            .filter(|a| a.email.as_deref().is_some_and(email_ok))
            .map(|a| self.outbox_row(a, MailKind::SignInLink))
            .collect();
        let audit = self.mail_queued_audit(tenant, actor, None, rows.len(), meta);
        self.store.queue_mails(&rows, audit).await?;
        self.wake_mailer();
        Ok(rows.len())
    }

    /// Claims due rows for this instance (a lease of [`CLAIM_LEASE`]).
    pub async fn claim_mail(&self) -> Result<Vec<OutboxMail>> {
        let now = self.clock.now();
        self.store
            .claim_mail(now, now + CLAIM_LEASE, CLAIM_BATCH)
            .await
    }

    /// What to send for a claimed row, with a fresh sign-in link (audited, made by
    /// Cairn). `Ok(None)`: nothing to send any more (the account is gone, suspended or
    /// without email; a reminder for an account that has backed up meanwhile).
    pub async fn prepare_mail(&self, mail: &OutboxMail) -> Result<Option<PreparedMail>> {
        let Some(account) = self.store.get_user(&mail.tenant_id, &mail.user_id).await? else {
            return Ok(None);
        };
        let Some(to) = account.email.clone().filter(|e| email_ok(e)) else {
            return Ok(None);
        };
        if !account.active {
            return Ok(None);
        }
        if mail.kind == MailKind::Reminder {
            let f = self
                .freshness_of(&account.tenant_id, std::slice::from_ref(&account.id))
                .await?;
            if f.iter().any(|(_, f)| f.last_snapshot_at.is_some()) {
                return Ok(None);
            }
        }
        let tenant = self.tenant(&account.tenant_id).await?;
        let meta = RequestMeta::default();
        let link = self
            .issue_account_link(account.clone(), Actor::System, &meta)
            .await?;
        Ok(Some(compose(mail.kind, &tenant.name, &account, &link, to)))
    }

    /// Records how an attempt ended; a mail given up is audited.
    pub async fn finish_mail(&self, mail: &OutboxMail, outcome: MailOutcome) -> Result<()> {
        let now = self.clock.now();
        let outcome = match outcome {
            MailOutcome::Retry(_, reason) if mail.attempts >= MAX_ATTEMPTS => MailOutcome::Failed(
                format!("gave up after {} attempts: {reason}", mail.attempts),
            ),
            o => o,
        };
        let audit = match &outcome {
            MailOutcome::Failed(reason) => Some(AuditDraft {
                tenant_id: mail.tenant_id.clone(),
                actor: Actor::System,
                action: Action::MailFailed,
                target_type: "user",
                target_id: Some(mail.user_id.to_string()),
                target_name: None,
                changes: json!({"kind": {"after": mail.kind.as_str()},
                                "reason": {"after": reason}}),
                meta: RequestMeta::default(),
                at: now,
            }),
            _ => None,
        };
        self.store.finish_mail(&mail.id, now, &outcome, audit).await
    }

    /// The tenant's outbox, newest first (at most `limit` rows).
    pub async fn outbox(&self, tenant: &TenantId, limit: usize) -> Result<Vec<OutboxMail>> {
        self.store.list_mail(tenant, limit).await
    }
}

/// The plain-text mail for `kind`.
pub fn compose(
    kind: MailKind,
    organisation: &str,
    account: &UserRecord,
    link: &crate::welcome::NewAccountLink,
    to: String,
) -> PreparedMail {
    let name = account
        .display_name
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or(account.user_name.as_str());
    let expires = format_ts(link.expires_at);
    let expires = expires.get(..16).unwrap_or(&expires).replace('T', " ");
    let (subject, opening) = match kind {
        MailKind::Welcome => (
            format!("{organisation}: your backup account is ready"),
            format!(
                "{organisation} backs up your computer with Cairn. Your backup account {} is ready.",
                account.user_name
            ),
        ),
        MailKind::Reminder => (
            format!("{organisation}: your backup is not set up yet"),
            format!(
                "Your backup account {} has no backup yet. It takes a few minutes to start.",
                account.user_name
            ),
        ),
        MailKind::SignInLink => (
            format!("{organisation}: sign in to your backup account"),
            format!(
                "Here is a link to sign in to your backup account {}.",
                account.user_name
            ),
        ),
    };
    let body = format!(
        "Hello {name},\r\n\r\n{opening}\r\n\r\nOpen this link to see your account and the restic commands for your\r\ncomputer (it asks you to confirm first):\r\n\r\n{}\r\n\r\nThe link works once, until {expires} UTC. If it has expired, ask your\r\nadministrator for a new one.\r\n",
        link.url
    );
    PreparedMail {
        to,
        subject: subject
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect(),
        body: body
            .chars()
            .filter(|c| !c.is_control() || *c == '\r' || *c == '\n')
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_delay(1), Duration::seconds(30));
        assert_eq!(retry_delay(2), Duration::seconds(60));
        assert_eq!(retry_delay(4), Duration::seconds(240));
        assert_eq!(retry_delay(9), Duration::seconds(3600));
        assert_eq!(retry_delay(u32::MAX), Duration::seconds(3600));
    }

    #[test]
    fn emails_with_spaces_or_controls_are_not_mailed() {
        assert!(email_ok("ann@example.com"));
        assert!(!email_ok("ann@example.com\r\nBcc: x@y"));
        assert!(!email_ok("no at sign"));
        assert!(!email_ok(""));
    }

    #[test]
    fn kinds_and_states_round_trip() {
        for k in [MailKind::Welcome, MailKind::Reminder, MailKind::SignInLink] {
            assert_eq!(MailKind::parse(k.as_str()), Some(k));
        }
        for s in [
            MailState::Pending,
            MailState::Sent,
            MailState::Failed,
            MailState::Dropped,
        ] {
            assert_eq!(MailState::parse(s.as_str()), Some(s));
        }
    }
}
