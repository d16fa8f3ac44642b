//! How domain values read on a page: times, sizes, statuses, clients, audit actions and
//! changes. Everything returned here is plain text; the templates escape it.

use cairn_core::audit::AuditEvent;
use cairn_core::user::{AccountStatus, UserRecord};
use serde_json::Value;
use time::OffsetDateTime;

/// `2026-05-03 14:02 UTC`.
pub fn datetime(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// `2026-05-03`.
pub fn date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// "just now", "2 minutes ago", "3 hours ago", "5 days ago".
pub fn ago(now: OffsetDateTime, t: OffsetDateTime) -> String {
    let secs = (now - t).whole_seconds();
    let unit = |n: i64, one: &str| {
        if n == 1 {
            format!("1 {one} ago")
        } else {
            format!("{n} {one}s ago")
        }
    };
    match secs {
        i64::MIN..=44 => "just now".into(),
        45..=3599 => unit(((secs + 30) / 60).max(1), "minute"),
        3600..=86_399 => unit(secs / 3600, "hour"),
        _ => unit(secs / 86_400, "day"),
    }
}

/// Bytes in binary units: `0 B`, `1.5 GiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n.max(0) as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{} B", n.max(0))
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A readable name for the client behind a User-Agent ("Okta", "Microsoft Entra ID").
pub fn client_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|s| !s.is_empty()) else {
        return "A SCIM client".into();
    };
    // One list of clients for the activity view and the request inspector.
    cairn_core::requests::Client::from_user_agent(ua)
        .map(|c| c.label().to_owned())
        .unwrap_or_else(|| ua.chars().take(40).collect())
}

pub fn status_label(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "Active",
        AccountStatus::Suspended => "Suspended",
        AccountStatus::Deleted => "Deleted",
    }
}

pub fn status_class(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "active",
        AccountStatus::Suspended => "suspended",
        AccountStatus::Deleted => "deleted",
    }
}

pub fn action_label(action: &str) -> &'static str {
    match action {
        "tenant_created" => "Organisation created",
        "scim_enabled" => "SCIM enabled",
        "scim_disabled" => "SCIM disabled",
        "account_size_changed" => "Account Size changed",
        "token_generated" => "API token generated",
        "dashboard_user_created" => "Dashboard user created",
        "user_created" => "Account created",
        "user_updated" => "Account updated",
        "user_suspended" => "Account suspended",
        "user_reactivated" => "Account reactivated",
        "user_deleted" => "Account deleted",
        "user_restored" => "Account restored",
        "user_purged" => "Account purged",
        "backup_key_generated" => "Backup key created",
        "backup_key_revoked" => "Backup key revoked",
        "vault_purge_failed" => "Repository removal failed (retried)",
        "tenant_limit_changed" => "Account Size limit changed (operator)",
        "body_capture_changed" => "Request body capture switched",
        "group_created" => "Group created",
        "group_updated" => "Group updated",
        "group_deleted" => "Group deleted",
        "group_size_changed" => "Group Account Size changed",
        "quota_changed" => "Quota changed",
        "sso_settings_changed" => "Single sign-on settings changed",
        "sso_sign_in" => "Signed in through single sign-on",
        "sso_sign_in_refused" => "Single sign-on refused",
        "sso_session_ended" => "Single sign-on session ended",
        "stale_days_changed" => "Stale backup threshold changed",
        "vault_protection_changed" => "Deletion protection changed",
        "vault_undeleted" => "Backup deletions undone",
        "vault_verify_started" => "Backup repository check started",
        "account_sign_in_link_created" => "Sign-in link made for an account",
        "account_sign_in_link_used" => "Signed in with a one-time link",
        "welcome_settings_changed" => "Welcome mail settings changed",
        "sign_in_mail_queued" => "Sign-in link mail queued",
        "mail_failed" => "Mail to an account given up",
        "vault_trash_purged" => "Deleted backup data purged (window passed)",
        "sso_metadata_refreshed" => "Identity provider metadata refreshed",
        "sso_metadata_refresh_failed" => "Identity provider metadata refresh failed",
        "password_sign_in_changed" => "Password sign-in turned on or off",
        "break_glass_changed" => "Break-glass administrator changed",
        "break_glass_sign_in" => "Break-glass administrator signed in",
        _ => "Other",
    }
}

/// One account row of a list or the head of an account page.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: String,
    pub user_name: String,
    pub display_name: String,
    pub email: String,
    pub status: &'static str,
    pub status_class: &'static str,
    /// For deleted accounts: when their data will be purged.
    pub purge_on: Option<String>,
    pub quota: String,
    pub used: String,
    pub scim: bool,
    pub created: String,
    pub updated: String,
    pub external_id: String,
    pub deleted: bool,
}

impl AccountRow {
    pub fn of(u: &UserRecord) -> Self {
        AccountRow {
            id: u.id.to_string(),
            user_name: u.user_name.to_string(),
            display_name: u.display_name.clone().unwrap_or_default(),
            email: u.email.clone().unwrap_or_default(),
            status: status_label(u.status()),
            status_class: status_class(u.status()),
            purge_on: u.purge_at.map(date),
            quota: u.quota_gb.to_string(),
            used: bytes(u.used_bytes),
            scim: u.scim_managed,
            created: datetime(u.created_at),
            updated: datetime(u.updated_at),
            external_id: u.external_id.clone().unwrap_or_default(),
            deleted: u.deleted_at.is_some(),
        }
    }
}

/// One audit event as a row.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub at: String,
    pub ago: String,
    pub action: &'static str,
    pub action_class: &'static str,
    pub target: String,
    /// Link to the account's page when the event is about a backup account.
    pub target_href: Option<String>,
    pub actor: String,
    pub changes: Vec<String>,
    pub request_id: String,
}

fn actor_text(e: &AuditEvent) -> String {
    match e.actor_kind.as_str() {
        "token" => format!("{} (API token)", client_name(e.user_agent.as_deref())),
        "dashboard_user" => e
            .actor_id
            .clone()
            .unwrap_or_else(|| "Dashboard user".into()),
        "operator" => "Operator (command line)".into(),
        "system" => "Cairn (retention)".into(),
        "sso" => format!(
            "{} (single sign-on)",
            e.actor_id.as_deref().unwrap_or("unknown subject")
        ),
        other => other.to_owned(),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// `attribute: before → after` lines of an event's changes.
pub fn change_lines(changes: &Value) -> Vec<String> {
    let Some(map) = changes.as_object() else {
        return Vec::new();
    };
    map.iter()
        .take(12)
        .map(|(k, v)| {
            let before = v.get("before");
            let after = v.get("after");
            match (before, after) {
                (Some(b), Some(a)) => format!("{k}: {} → {}", short(b), short(a)),
                (None, Some(a)) => format!("{k}: {}", short(a)),
                (Some(b), None) => format!("{k}: was {}", short(b)),
                (None, None) => k.clone(),
            }
        })
        .collect()
}

pub fn action_class(action: &str) -> &'static str {
    match action {
        "user_created" => "created",
        "user_updated" | "user_reactivated" | "user_restored" => "updated",
        "user_suspended" => "suspended",
        "user_deleted" | "user_purged" => "deleted",
        _ => "other",
    }
}

impl EventRow {
    pub fn of(e: &AuditEvent, now: OffsetDateTime) -> Self {
        let is_user = e.target_type == "user";
        EventRow {
            at: datetime(e.at),
            ago: ago(now, e.at),
            action: action_label(&e.action),
            action_class: action_class(&e.action),
            target: e.target_name.clone().unwrap_or_default(),
            target_href: (is_user && e.action != "user_purged")
                .then(|| e.target_id.as_ref().map(|id| format!("/accounts/{id}")))
                .flatten(),
            actor: actor_text(e),
            changes: change_lines(&e.changes),
            request_id: e.request_id.clone().unwrap_or_default(),
        }
    }
}

/// An account's backup freshness as the list and the account page show it.
pub struct BackupView {
    /// The last snapshot (`None`: never backed up).
    pub last_backup: Option<String>,
    pub last_backup_ago: String,
    pub last_upload: Option<String>,
    pub bytes_24h: String,
    /// No snapshot, or the last one before the tenant's stale cutoff.
    pub stale: bool,
}

impl BackupView {
    pub fn of(
        f: &cairn_core::freshness::Freshness,
        now: OffsetDateTime,
        cutoff: OffsetDateTime,
    ) -> Self {
        BackupView {
            last_backup: f.last_snapshot_at.map(datetime),
            last_backup_ago: f.last_snapshot_at.map(|t| ago(now, t)).unwrap_or_default(),
            last_upload: f.last_upload_at.map(datetime),
            bytes_24h: bytes(f.bytes_24h),
            stale: f.is_stale(cutoff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn relative_times() {
        let now = datetime!(2026-05-03 12:00 UTC);
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now, datetime!(2026-05-03 11:58 UTC)), "2 minutes ago");
        assert_eq!(ago(now, datetime!(2026-05-03 11:59 UTC)), "1 minute ago");
        assert_eq!(ago(now, datetime!(2026-05-03 09:00 UTC)), "3 hours ago");
        assert_eq!(ago(now, datetime!(2026-04-28 12:00 UTC)), "5 days ago");
    }

    #[test]
    fn sizes_and_clients() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(client_name(Some("Okta SCIM Client 1.0.0")), "Okta");
        assert_eq!(client_name(Some("OKTA SCIM Integration")), "Okta");
        assert_eq!(client_name(None), "A SCIM client");
        assert_eq!(client_name(Some("curl/8.0")), "curl/8.0");
    }

    #[test]
    fn changes_read_as_lines() {
        let c = serde_json::json!({"active": {"before": true, "after": false}, "quotaGb": {"after": 50}});
        assert_eq!(
            change_lines(&c),
            vec!["active: true → false", "quotaGb: 50"]
        );
    }
}
