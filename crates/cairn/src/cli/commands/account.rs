//! `cairn account …`: restore, backup keys (create, list, revoke), one-time sign-in
//! links, recount and purge backup accounts.

use crate::cli::config::tenant_id;
use crate::cli::{AccountCmd, Ctx};
use anyhow::{bail, Context, Result};
use cairn_core::service::{Authority, Services};
use serde_json::json;

pub async fn run(cx: &Ctx, cmd: AccountCmd) -> Result<()> {
    match cmd {
        AccountCmd::Restore {
            tenant,
            user_name,
            json,
        } => restore(cx, &tenant, &user_name, json).await,
        AccountCmd::Key {
            tenant,
            user_name,
            name,
            json,
        } => key(cx, &tenant, &user_name, &name, json).await,
        AccountCmd::Keys {
            tenant,
            user_name,
            json,
        } => keys(cx, &tenant, &user_name, json).await,
        AccountCmd::RevokeKey {
            tenant,
            user_name,
            name,
            json,
        } => revoke_key(cx, &tenant, &user_name, &name, json).await,
        AccountCmd::Recount {
            tenant,
            user_name,
            json,
        } => recount(cx, &tenant, &user_name, json).await,
        AccountCmd::SignInLink {
            tenant,
            user_name,
            json,
        } => sign_in_link(cx, &tenant, &user_name, json).await,
        AccountCmd::PurgeExpired { json } => purge(cx, json).await,
    }
}

async fn restore(cx: &Ctx, tenant: &str, user_name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let u = svc
        .restore_user(Authority::Operator(op), &id, user_name, meta)
        .await?;
    if json {
        print_json!(&json!({"id": u.id, "user_name": u.user_name, "status": u.status()}));
    } else {
        outln!("Restored {} ({})", u.user_name, u.id);
    }
    Ok(())
}

async fn key(cx: &Ctx, tenant: &str, user_name: &str, name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let k = svc
        .create_backup_key(Authority::Operator(op), &id, user_name, name, meta)
        .await?;
    let url = svc.repository_url(&id, &k.account.id, Some((&k.key_user, &k.secret)));
    if json {
        print_json!(&json!({"repository": url, "user": k.key_user,
            "secret": k.secret.expose(), "account_id": k.account.id, "name": k.name.as_str()}));
    } else {
        outln!(
            "Backup key \"{}\" (shown once, store it now)\nRepository: {url}\nUser: {}\nSecret: {}",
            k.name,
            k.key_user,
            k.secret.expose()
        );
    }
    Ok(())
}

async fn sign_in_link(cx: &Ctx, tenant: &str, user_name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let l = svc
        .create_account_sign_in_link_by_name(Authority::Operator(op), &id, user_name, meta)
        .await?;
    let expires = cairn_core::clock::format_ts(l.expires_at);
    if json {
        print_json!(
            &json!({"account_id": l.account.id, "user_name": l.account.user_name,
            "email": l.account.email, "link": l.url, "expires_at": expires})
        );
    } else {
        outln!(
            "Sign-in link for {} (shown once; works once; expires {expires}):\n{}",
            l.account.user_name,
            l.url
        );
    }
    Ok(())
}

async fn keys(cx: &Ctx, tenant: &str, user_name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let id = tenant_id(tenant)?;
    let (account, keys) = svc
        .backup_keys(Authority::Operator(op), &id, user_name)
        .await?;
    let ts = |t: time::OffsetDateTime| cairn_core::clock::format_ts(t);
    if json {
        let v: Vec<_> = keys
            .iter()
            .map(|k| {
                json!({"name": k.name.as_str(), "user": k.key_user,
                    "created": ts(k.created_at), "last_used": k.last_used_at.map(ts)})
            })
            .collect();
        print_json!(&json!(v));
    } else {
        outln!("{}: {} backup key(s)", account.user_name, keys.len());
        for k in &keys {
            let last = k.last_used_at.map_or_else(|| "never".to_owned(), ts);
            outln!(
                "  {}  (user {}, created {}, last used {last})",
                k.name,
                k.key_user,
                ts(k.created_at)
            );
        }
    }
    Ok(())
}

async fn revoke_key(cx: &Ctx, tenant: &str, user_name: &str, name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let account = svc
        .revoke_backup_key(Authority::Operator(op), &id, user_name, name, meta)
        .await?;
    let name = name.trim();
    if json {
        print_json!(&json!({"account_id": account.id, "name": name, "revoked": true}));
    } else {
        outln!("Revoked backup key \"{name}\" of {}", account.user_name);
    }
    Ok(())
}

async fn recount(cx: &Ctx, tenant: &str, user_name: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, g, .. } = cx;
    let id = tenant_id(tenant)?;
    let vault = g.vault()?.vault;
    let (u, delta) = svc
        .recount_vault(op, &id, user_name, async |u| {
            vault
                .repo_size(u.tenant_id.as_str(), u.id.as_str())
                .await
                .map_err(|e| cairn_core::Error::Internal(e.to_string()))
        })
        .await?;
    let used = u.used_bytes + delta;
    if json {
        print_json!(&json!({"id": u.id, "user_name": u.user_name,
            "used_bytes": used, "corrected_by": delta}));
    } else {
        outln!("{}: used {used} bytes (corrected by {delta})", u.user_name);
    }
    Ok(())
}

async fn purge(cx: &Ctx, json: bool) -> Result<()> {
    let vault = cx.g.vault()?.vault;
    let report = purge_expired(&cx.svc, &vault).await?;
    // Protected deletions whose window has passed go in the same run, as in `serve`.
    let trash = cairn_web::vault_trash::purge_trash(&cx.svc, &vault).await?;
    if !json && trash.objects > 0 {
        outln!(
            "Removed {} protected deletion(s) ({} bytes) of {} account(s)",
            trash.objects,
            trash.bytes,
            trash.accounts
        );
    }
    let purged = &report.purged;
    if json {
        let v: Vec<_> = purged
            .iter()
            .map(|u| json!({"tenant_id": u.tenant_id, "id": u.id, "user_name": u.user_name}))
            .collect();
        print_json!(&json!(v));
    } else {
        outln!("Purged {} account(s)", purged.len());
    }
    if !report.failed.is_empty() {
        let lines: Vec<String> = report
            .failed
            .iter()
            .map(|(u, reason)| format!("account {} ({}): {reason}", u.id, u.user_name))
            .collect();
        bail!(
            "{} account(s) could not be purged; they stay marked and the next run \
             retries them:\n{}",
            lines.len(),
            lines.join("\n")
        );
    }
    if !trash.failed.is_empty() {
        bail!(
            "protected deletions of {} repositories could not be purged; the next run \
             retries them:\n{}",
            trash.failed.len(),
            trash.failed.join("\n")
        );
    }
    Ok(())
}

/// The retention purge (see `Services::purge_expired`): repositories are removed before
/// their accounts' rows, so a failed removal is retried by the next run.
pub async fn purge_expired(
    svc: &Services,
    vault: &cairn_vault::Vault,
) -> Result<cairn_core::service::PurgeReport> {
    let report = svc
        .purge_expired(|u| {
            let (vault, tenant, id) = (vault.clone(), u.tenant_id.clone(), u.id.clone());
            Box::pin(async move {
                vault
                    .remove_repo(tenant.as_str(), id.as_str())
                    .await
                    .map_err(|e| format!("removing the backup repository: {e}"))
            })
        })
        .await?;
    Ok(report)
}
