//! `cairn healthcheck`: one GET of a running server's readiness endpoint, for container
//! health checks (`HEALTHCHECK CMD ["cairn", "healthcheck"]`) where no curl is
//! installed. Exit 0 on a 2xx answer, 1 on anything else (the error says what).

use super::args::HealthcheckArgs;
use anyhow::{bail, Context, Result};
use std::time::Duration;

pub async fn run(args: HealthcheckArgs) -> Result<()> {
    let url = match args.url {
        Some(u) => u,
        None => default_url(
            std::env::var("CAIRN_LISTEN").ok().as_deref(),
            std::env::var_os("CAIRN_TLS_CERT").is_some_and(|v| !v.is_empty()),
        ),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .redirect(reqwest::redirect::Policy::none())
        // The environment's proxy settings are for outbound traffic, not for this
        // process asking its neighbour.
        .no_proxy()
        .danger_accept_invalid_certs(args.insecure_tls)
        .build()
        .context("building the HTTP client")?;
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("{url}: no answer"))?;
    let status = resp.status();
    // The readiness body is small; a large one is cut for the message.
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(512).collect();
    if !status.is_success() {
        bail!("{url}: {status} {body}");
    }
    outln!("{url}: {status} {body}");
    Ok(())
}

/// `/readyz` on the address `serve` listens on (`CAIRN_LISTEN`), asked over loopback
/// when that address is the unspecified one.
fn default_url(listen: Option<&str>, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let Some(listen) = listen.map(str::trim).filter(|l| !l.is_empty()) else {
        return format!("{scheme}://127.0.0.1:8080/readyz");
    };
    let authority = match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip = if a.is_ipv4() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        Ok(a) => a.to_string(),
        // A host name (`localhost:8080`) as given.
        Err(_) => listen.to_owned(),
    };
    format!("{scheme}://{authority}/readyz")
}

#[cfg(test)]
mod tests {
    use super::default_url;

    #[test]
    fn the_default_url_follows_the_listen_address() {
        assert_eq!(default_url(None, false), "http://127.0.0.1:8080/readyz");
        assert_eq!(
            default_url(Some("0.0.0.0:9000"), false),
            "http://127.0.0.1:9000/readyz"
        );
        assert_eq!(
            default_url(Some("[::]:9000"), true),
            "https://[::1]:9000/readyz"
        );
        assert_eq!(
            default_url(Some("10.0.0.5:8080"), false),
            "http://10.0.0.5:8080/readyz"
        );
        assert_eq!(
            default_url(Some("localhost:8080"), false),
            "http://localhost:8080/readyz"
        );
    }
}
