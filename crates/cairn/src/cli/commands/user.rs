//! `cairn user …`: dashboard users.

use crate::cli::config::tenant_id;
use crate::cli::{Ctx, UserCmd};
use anyhow::{Context, Result};
use cairn_core::store::Role;
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
