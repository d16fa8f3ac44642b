//! The mail sender of `cairn serve --smtp-url`: claims due rows of the outbox
//! (`cairn_core::mail`), makes each one's sign-in link, and hands the mail to the relay
//! over SMTP (lettre, rustls). Failures are retried with a growing delay; a relay's
//! permanent refusal (5xx, RFC 5321 §4.2.1) is not.
//!
//! `--smtp-url`: `smtp://host:port` (plain: tests and a relay on the same host),
//! `smtp://host:port?tls=starttls` (STARTTLS required, RFC 3207), `smtps://host:port`
//! (TLS from the first byte, RFC 8314 §3.3); a user and password in the URL are sent
//! with AUTH after TLS. The password is never logged: [`SmtpUrl`]'s `Display` hides it.

use anyhow::{bail, Context, Result};
use cairn_core::mail::{retry_delay, MailOutcome, OutboxMail, PreparedMail, CLAIM_BATCH};
use cairn_core::service::Services;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    Plain,
    StartTls,
    Tls,
}

/// A parsed `--smtp-url`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    password: Option<String>,
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.security == SmtpSecurity::Tls {
            "smtps"
        } else {
            "smtp"
        };
        write!(f, "{scheme}://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}:***@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        if self.security == SmtpSecurity::StartTls {
            f.write_str("?tls=starttls")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpUrl({self})")
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .context("a bad %-escape in --smtp-url")?;
            out.push(u8::from_str_radix(hex, 16).context("a bad %-escape in --smtp-url")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("--smtp-url: the user or password is not UTF-8")
}

impl SmtpUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .context("--smtp-url must start with smtp:// or smtps://")?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let tls_param = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "tls")
            .map(|(_, v)| v);
        let security = match (scheme.to_ascii_lowercase().as_str(), tls_param) {
            ("smtps", None) => SmtpSecurity::Tls,
            ("smtp", None) => SmtpSecurity::Plain,
            ("smtp", Some("starttls" | "required")) => SmtpSecurity::StartTls,
            ("smtp", Some(other)) => {
                bail!("--smtp-url: tls={other} is not known (use tls=starttls, or smtps://)")
            }
            ("smtps", Some(_)) => bail!("--smtp-url: smtps:// takes no tls= parameter"),
            (other, _) => bail!("--smtp-url: the scheme {other}:// is not smtp:// or smtps://"),
        };
        let default_port = match security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Plain => 25,
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("--smtp-url: bad port {p:?}"))?,
            ),
            _ => (hostport, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("--smtp-url names no host");
        }
        let (user, password) = match auth {
            Some(a) => {
                let (u, p) = a.split_once(':').unwrap_or((a, ""));
                (Some(percent_decode(u)?), Some(percent_decode(p)?))
            }
            None => (None, None),
        };
        if user.is_some() && security == SmtpSecurity::Plain && !is_loopback(host) {
            bail!(
                "--smtp-url: a password would cross the network in clear; use tls=starttls \
                 or smtps://"
            );
        }
        Ok(SmtpUrl {
            host: host.to_owned(),
            port,
            security,
            user,
            password,
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The relay, ready to send.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(url: &SmtpUrl, from: &str) -> Result<Self> {
        let from: Mailbox = from
            .parse()
            .with_context(|| format!("--smtp-from {from:?} is not a mail address"))?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(url.host.as_str())
            .port(url.port)
            .timeout(Some(Duration::from_secs(30)));
        if url.security != SmtpSecurity::Plain {
            // The platform's trust store (rustls-native-certs), as for OpenID providers.
            let params = TlsParameters::new(url.host.clone())
                .context("--smtp-url: setting up TLS for the relay")?;
            b = b.tls(match url.security {
                SmtpSecurity::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let (Some(u), Some(p)) = (&url.user, &url.password) {
            b = b.credentials(Credentials::new(u.clone(), p.clone()));
        }
        Ok(Mailer {
            transport: b.build(),
            from,
        })
    }

    /// Sends one mail: `Ok`, or the outcome to record.
    async fn send(&self, m: &PreparedMail) -> std::result::Result<(), (bool, String)> {
        let to: Mailbox = m.to.parse().map_err(|e| {
            (
                true,
                format!("the account's email is not a mail address: {e}"),
            )
        })?;
        let msg = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.clone())
            .map_err(|e| (true, format!("building the mail failed: {e}")))?;
        self.transport
            .send(msg)
            .await
            .map(drop)
            .map_err(|e| (e.is_permanent(), e.to_string()))
    }
}

/// Sends one claimed row and records how it went.
async fn send_one(svc: &Services, mailer: &Mailer, m: &OutboxMail) {
    let now = svc.clock.now();
    let outcome = match svc.prepare_mail(m).await {
        Ok(None) => MailOutcome::Dropped,
        Ok(Some(p)) => match mailer.send(&p).await {
            Ok(()) => MailOutcome::Sent,
            Err((true, reason)) => MailOutcome::Failed(reason),
            Err((false, reason)) => MailOutcome::Retry(now + retry_delay(m.attempts), reason),
        },
        Err(e) => MailOutcome::Retry(now + retry_delay(m.attempts), e.to_string()),
    };
    match &outcome {
        MailOutcome::Sent => {
            tracing::info!(tenant = %m.tenant_id, account = %m.user_id, kind = m.kind.as_str(),
                "mail sent")
        }
        MailOutcome::Retry(at, reason) => {
            tracing::warn!(tenant = %m.tenant_id, account = %m.user_id, kind = m.kind.as_str(),
                attempts = m.attempts, %reason, retry_at = %cairn_core::clock::format_ts(*at),
                "sending a mail failed; retried later")
        }
        MailOutcome::Failed(reason) => {
            tracing::warn!(tenant = %m.tenant_id, account = %m.user_id, kind = m.kind.as_str(),
                %reason, "a mail was refused; not retried")
        }
        MailOutcome::Dropped => {}
    }
    if let Err(e) = svc.finish_mail(m, outcome).await {
        tracing::warn!(error = %e, "recording a mail's outcome failed; its claim lapses");
    }
}

/// The sender's loop: queues due mail (missed welcomes, reminders) every `scan`, and
/// sends what is due, waking every `poll` or when a mail is queued on this instance.
pub async fn run(svc: Arc<Services>, mailer: Mailer, poll: Duration, scan: Duration) {
    let mut last_scan: Option<tokio::time::Instant> = None;
    loop {
        if last_scan.is_none_or(|t| t.elapsed() >= scan) {
            if let Err(e) = svc.queue_due_mail().await {
                tracing::warn!(error = %e, "queueing welcome and reminder mails failed");
            }
            last_scan = Some(tokio::time::Instant::now());
        }
        let batch = match svc.claim_mail().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading the mail outbox failed");
                Vec::new()
            }
        };
        for m in &batch {
            send_one(&svc, &mailer, m).await;
        }
        if batch.len() == CLAIM_BATCH {
            continue;
        }
        tokio::select! {
            _ = svc.mail_wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_print_the_password() {
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((u.port, u.security), (2525, SmtpSecurity::Plain));
        let u = SmtpUrl::parse("smtp://me%40x:p%40ss@mail.example:587?tls=starttls").unwrap();
        assert_eq!(u.security, SmtpSecurity::StartTls);
        assert_eq!(u.user.as_deref(), Some("me@x"));
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(
            u.to_string(),
            "smtp://me@x:***@mail.example:587?tls=starttls"
        );
        assert!(!format!("{u:?}").contains("p@ss"));
        let u = SmtpUrl::parse("smtps://mail.example").unwrap();
        assert_eq!((u.port, u.security), (465, SmtpSecurity::Tls));
        for bad in [
            "http://x",
            "smtp://x?tls=maybe",
            "smtp://",
            "smtp://u:p@mail.example:25",
            "smtp://x:notaport",
        ] {
            assert!(SmtpUrl::parse(bad).is_err(), "{bad}");
        }
        // Loopback relays may take a password in clear (a local sink or relay).
        assert!(SmtpUrl::parse("smtp://u:p@127.0.0.1:2525").is_ok());
    }
}
