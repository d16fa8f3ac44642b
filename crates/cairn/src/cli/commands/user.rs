//! `cairn user …`: dashboard users: create, list, invite, change role, disable, enable,
//! delete, reset a password or a second factor.

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, UserCmd};
use anyhow::{Context, Result};
use cairn_core::people::{LinkPurpose, UserAction};
use cairn_core::service::Authority;
use cairn_core::store::{DashboardUser, Role};
use serde_json::json;
use std::io::Read;

pub async fn run(cx: &Ctx, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Create {
            tenant,
            email,
            role,
            password_stdin: _,
        } => create(cx, &tenant, &email, &role).await,
        UserCmd::BreakGlass { tenant, email, off } => {
            let id = tenant_id(&tenant)?;
            let st = cx.svc.set_break_glass(&id, &email, !off).await?;
            match st.break_glass {
                Some(e) => outln!(
                    "{e} is the break-glass administrator of tenant {id}: they keep password \
                     sign-in when it is off, and each such sign-in is audited"
                ),
                None => outln!("Tenant {id} has no break-glass administrator"),
            }
            Ok(())
        }
        UserCmd::List { tenant, json } => list(cx, &tenant, json).await,
        UserCmd::Invite {
            tenant,
            email,
            role,
            json,
        } => invite(cx, &tenant, &email, &role, json).await,
        UserCmd::SetRole {
            tenant,
            email,
            role,
            json,
        } => {
            let role = Role::parse(&role).context("--role must be administrator or viewer")?;
            change(cx, &tenant, &email, UserAction::SetRole(role), json).await
        }
        UserCmd::Disable {
            tenant,
            email,
            json,
        } => change(cx, &tenant, &email, UserAction::Disable, json).await,
        UserCmd::Enable {
            tenant,
            email,
            json,
        } => change(cx, &tenant, &email, UserAction::Enable, json).await,
        UserCmd::Delete {
            tenant,
            email,
            json,
        } => change(cx, &tenant, &email, UserAction::Delete, json).await,
        UserCmd::Reset2fa {
            tenant,
            email,
            json,
        } => change(cx, &tenant, &email, UserAction::ResetSecondFactor, json).await,
        UserCmd::ResetPassword {
            tenant,
            email,
            json,
        } => reset_password(cx, &tenant, &email, json).await,
    }
}

async fn create(cx: &Ctx, tenant: &str, email: &str, role: &str) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let id = tenant_id(tenant)?;
    let role = Role::parse(role).context("--role must be administrator or viewer")?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    let u = svc
        .create_dashboard_user(op, &id, email, role, &password)
        .await?;
    outln!(
        "Created dashboard user {} ({}) in tenant {}",
        u.email,
        u.role.as_str(),
        id
    );
    Ok(())
}

fn user_json(u: &DashboardUser) -> serde_json::Value {
    json!({"id": u.id, "email": u.email, "role": u.role.as_str(),
           "disabled": u.disabled, "second_factor": u.second_factor})
}

async fn list(cx: &Ctx, tenant: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, .. } = cx;
    let id = tenant_id(tenant)?;
    let users = svc
        .list_dashboard_users(Authority::Operator(op), &id)
        .await?;
    if json {
        let rows: Vec<_> = users
            .iter()
            .map(|e| {
                let mut v = user_json(&e.user);
                v["status"] = json!(e.status());
                v["single_sign_on"] = json!(e.single_sign_on);
                v["last_sign_in_at"] = json!(e.last_sign_in_at.and_then(|t| t
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()));
                v
            })
            .collect();
        print_json!(&rows);
    } else {
        for e in &users {
            outln!(
                "{}\t{}\t{}\t2FA {}",
                e.user.email,
                e.user.role.as_str(),
                e.status(),
                if e.user.second_factor { "on" } else { "off" }
            );
        }
    }
    Ok(())
}

async fn invite(cx: &Ctx, tenant: &str, email: &str, role: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let role = Role::parse(role).context("--role must be administrator or viewer")?;
    let (u, secret) = svc
        .invite_dashboard_user(Authority::Operator(op), &id, email, role, meta)
        .await?;
    print_link(cx, &u, svc.link_url(&secret), LinkPurpose::Invite, json)
}

async fn reset_password(cx: &Ctx, tenant: &str, email: &str, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let u = svc
        .dashboard_user_by_email(Authority::Operator(op), &id, email)
        .await?;
    let (u, secret) = svc
        .reset_dashboard_password(Authority::Operator(op), &id, &u.id, meta)
        .await?;
    print_link(
        cx,
        &u,
        svc.link_url(&secret),
        LinkPurpose::PasswordReset,
        json,
    )
}

fn print_link(
    cx: &Ctx,
    u: &DashboardUser,
    url: String,
    purpose: LinkPurpose,
    json: bool,
) -> Result<()> {
    let expires = cx.svc.clock.now() + purpose.lifetime();
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    if json {
        let mut v = user_json(u);
        v["link"] = json!(url);
        v["link_expires_at"] = json!(expires);
        print_json!(&v);
    } else {
        outln!(
            "One-time link for {} (valid until {expires}; shown once):\n{url}",
            u.email
        );
    }
    Ok(())
}

async fn change(cx: &Ctx, tenant: &str, email: &str, action: UserAction, json: bool) -> Result<()> {
    let Ctx { svc, op, meta, .. } = cx;
    let id = tenant_id(tenant)?;
    let u = svc
        .dashboard_user_by_email(Authority::Operator(op), &id, email)
        .await?;
    let u = svc
        .change_dashboard_user(Authority::Operator(op), &id, &u.id, action, meta)
        .await?;
    let what = match action {
        UserAction::SetRole(r) => format!("is now {}", r.as_str()),
        UserAction::Disable => "is disabled; their sessions ended".into(),
        UserAction::Enable => "is enabled".into(),
        UserAction::Delete => "was deleted".into(),
        UserAction::ResetSecondFactor => "has no second factor now".into(),
    };
    if json {
        let mut v = user_json(&u);
        v["deleted"] = json!(action == UserAction::Delete);
        print_json!(&v);
    } else {
        outln!("{} {what}", u.email);
    }
    Ok(())
}
