//! The dashboard's side of a benchmark: an administrator created through the CLI signs in
//! the way a browser does (the login form's CSRF cookie and field, a same-origin POST),
//! and the session cookie goes on every request of the dashboard operations.

use crate::server::Deployment;
use anyhow::{bail, Context, Result};

const EMAIL: &str = "bench-admin@bench.example";
const PASSWORD: &str = "bench-password-not-secret";

/// Creates an administrator of `tenant` and signs in; returns the session cookie as
/// `name=value`.
pub async fn session(dep: &Deployment, base: &str, tenant: &str) -> Result<String> {
    dep.cli_stdin(
        &[
            "user",
            "create",
            "--tenant",
            tenant,
            "--email",
            EMAIL,
            "--role",
            "administrator",
            "--password-stdin",
        ],
        base,
        &format!("{PASSWORD}\n"),
    )
    .await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = client.get(format!("{base}/login")).send().await?;
    let login_cookie = cookie_set_by(page.headers(), "cairn_login").context("login cookie")?;
    let html = page.text().await?;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .context("csrf field of /login")?;
    let body = format!(
        "email={}&password={}&csrf={}",
        form_encode(EMAIL),
        form_encode(PASSWORD),
        form_encode(csrf)
    );
    let r = client
        .post(format!("{base}/login"))
        .header("origin", base)
        .header("cookie", login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    if r.status().as_u16() != 303 {
        bail!("sign-in answered {}: {}", r.status(), r.text().await?);
    }
    let session = cookie_set_by(r.headers(), "cairn_session").context("session cookie")?;
    signed_in(base, &session).await?;
    Ok(session)
}

/// Fails unless the session still gets the accounts page. wrk counts only answers of 400
/// and above as failed, so a dashboard operation whose session had ended (a 303 to the
/// sign-in page) would be measured as a fast success: checked before and after.
pub async fn signed_in(base: &str, session: &str) -> Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = client
        .get(format!("{base}/accounts"))
        .header("cookie", session)
        .send()
        .await?;
    let status = r.status().as_u16();
    let html = r.text().await?;
    if status != 200 || !html.contains("Backup Accounts") {
        bail!("the dashboard session does not get /accounts: {status}");
    }
    Ok(())
}

fn cookie_set_by(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.split('=').next() == Some(name))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): unreserved bytes as they are,
/// everything else percent-encoded.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
