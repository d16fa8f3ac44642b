//! Server-side fetches from identity providers (SAML metadata URLs, OpenID discovery,
//! keys and tokens), with the rules that keep an administrator-supplied URL from reaching
//! inside the deployment's network (server-side request forgery, OWASP SSRF Prevention
//! Cheat Sheet):
//!
//! - https only;
//! - every address a host name resolves to is classified ([`is_forbidden`]): loopback,
//!   private (RFC 1918, RFC 4193), link-local (with the cloud metadata address
//!   169.254.169.254), CGNAT (RFC 6598), multicast, unspecified, reserved and
//!   documentation ranges, and IPv6 forms that embed such an IPv4 address, are refused;
//!   a name with any forbidden address is refused whole;
//! - the addresses checked are the ones connected to: the check runs inside the client's
//!   resolver, so the name is not resolved a second time (no DNS rebinding between check
//!   and connect); addresses written in the URL are checked before the request;
//! - no redirects are followed and no proxy from the environment is used (a proxy would
//!   resolve the name itself);
//! - the body is read with a size cap enforced while streaming, and the whole exchange
//!   has a time limit.
//!
//! `cairn serve --sso-allow-insecure-idp` (tests only) lifts the https and address rules,
//! never the size and time limits.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long one request to an identity provider may take, all told (connect, headers
/// and body).
pub const IDP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest SAML metadata document read.
pub const MAX_METADATA: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("only https URLs are fetched")]
    Insecure,
    #[error("the address {0} is {kind}: identity providers are not fetched from there", kind = describe(.0))]
    Forbidden(IpAddr),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the identity provider took longer than {0:?}")]
    Timeout(Duration),
    #[error("the identity provider answered HTTP {0}")]
    Status(u16),
    #[error("request failed: {0}")]
    Http(String),
    #[error("bad URL: {0}")]
    Url(String),
}

impl From<reqwest::Error> for FetchError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            return FetchError::Timeout(IDP_TIMEOUT);
        }
        // The resolver's refusal travels as one of the error's sources.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            if let Some(FetchError::Forbidden(ip)) = s.downcast_ref::<FetchError>() {
                return FetchError::Forbidden(*ip);
            }
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        FetchError::Http(msg)
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", with 0.0.0.0 (RFC 1122 §3.2.1.3)
        || a == 10 // RFC 1918
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT, RFC 6598
        || (a == 169 && b == 254) // link-local, RFC 3927 (cloud metadata: 169.254.169.254)
        || (a == 172 && (16..32).contains(&b)) // RFC 1918
        || (a == 192 && b == 168) // RFC 1918
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, RFC 6890
        || (a == 192 && b == 0 && c == 2) // documentation, RFC 5737
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224 // multicast (224/4), reserved (240/4) and broadcast
}

/// What kind of forbidden address `ip` is, for the administrator.
fn describe(ip: &IpAddr) -> &'static str {
    let v4 = |v4: Ipv4Addr| match v4.octets() {
        [0 | 127, ..] => "loopback or unspecified",
        [10, ..] | [192, 168, ..] => "private",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [100, b, ..] if (64..128).contains(&b) => "private (shared address space)",
        [169, 254, ..] => "link-local",
        [a, ..] if a >= 224 => "multicast or reserved",
        _ => "reserved",
    };
    match *ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if s[..6] == [0, 0, 0, 0, 0, 0xffff] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                v4(embedded(s[6], s[7]))
            } else if s[0] == 0x2002 {
                v4(embedded(s[1], s[2]))
            } else if s[..6] == [0; 6] {
                "loopback or unspecified"
            } else if (s[0] & 0xfe00) == 0xfc00 {
                "private"
            } else if (s[0] & 0xffc0) == 0xfe80 {
                "link-local"
            } else if (s[0] & 0xff00) == 0xff00 {
                "multicast or reserved"
            } else {
                "reserved"
            }
        }
    }
}

/// Whether an identity provider may not be reached at this address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::ffff:a.b.c.d (IPv4-mapped, RFC 4291 §2.5.5.2): the IPv4 rules.
    if s[..6] == [0, 0, 0, 0, 0, 0xffff] {
        return v4_forbidden(embedded(s[6], s[7]));
    }
    // ::/96: unspecified, loopback and the deprecated IPv4-compatible form (§2.5.5.1).
    if s[..6] == [0; 6] {
        return true;
    }
    // 64:ff9b::/96, NAT64 (RFC 6052): the IPv4 address it translates to.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_forbidden(embedded(s[6], s[7]));
    }
    // 2002::/16, 6to4 (RFC 3056): the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return v4_forbidden(embedded(s[1], s[2]));
    }
    (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7 (RFC 4193)
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local, fec0::/10 (deprecated, RFC 3879)
        || (s[0] & 0xff00) == 0xff00 // multicast, ff00::/8
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation, RFC 3849
        || (s[0] == 0x2001 && s[1] == 0) // Teredo (RFC 4380): tunnels to any IPv4 address
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64, RFC 8215
        || s[..4] == [0x100, 0, 0, 0] // discard-only, RFC 6666
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The resolver that refuses forbidden addresses: the client connects only to what it
/// returns, so the check and the connection see the same addresses.
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                return Err(Box::new(FetchError::Forbidden(bad.ip())) as BoxError);
            }
            if addrs.is_empty() {
                return Err(BoxError::from(format!("{host} has no address")));
            }
            Ok::<Addrs, BoxError>(Box::new(addrs.into_iter()))
        })
    }
}

/// The HTTP client for identity providers.
#[derive(Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
    /// `--sso-allow-insecure-idp`: http and any address (tests only).
    pub allow_insecure: bool,
    timeout: Duration,
}

impl IdpHttp {
    pub fn new(allow_insecure: bool) -> Self {
        Self::with_timeout(allow_insecure, IDP_TIMEOUT)
    }

    pub fn with_timeout(allow_insecure: bool, timeout: Duration) -> Self {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        if !allow_insecure {
            b = b.dns_resolver(Arc::new(GuardedResolver));
        }
        IdpHttp {
            client: b.build().expect("reqwest client builds"),
            allow_insecure,
            timeout,
        }
    }

    /// The scheme and, for an address written in the URL (no resolver runs then), the
    /// address.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, FetchError> {
        let u = reqwest::Url::parse(url).map_err(|e| FetchError::Url(e.to_string()))?;
        if self.allow_insecure {
            return match u.scheme() {
                "https" | "http" => Ok(u),
                _ => Err(FetchError::Insecure),
            };
        }
        if u.scheme() != "https" {
            return Err(FetchError::Insecure);
        }
        let host = u.host_str().ok_or(FetchError::Url("no host".into()))?;
        // The URL parser has already normalised IPv4 forms such as `2130706433` or
        // `0x7f.1` (WHATWG URL, IPv4 parser); IPv6 comes in brackets.
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) if is_forbidden(ip) => Err(FetchError::Forbidden(ip)),
            _ => Ok(u),
        }
    }

    /// Sends a request after [`Self::check_url`] and reads the answer's body, at most
    /// `max` bytes, all within the time limit. Returns the status, headers and body.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        max: usize,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), FetchError> {
        let req = req.build()?;
        self.check_url(req.url().as_str())?;
        let exchange = async {
            let mut r = self.client.execute(req).await?;
            let status = r.status();
            let headers = r.headers().clone();
            if r.content_length().is_some_and(|n| n > max as u64) {
                return Err(FetchError::TooLarge(max));
            }
            let mut out = Vec::new();
            while let Some(chunk) = r.chunk().await? {
                if out.len() + chunk.len() > max {
                    return Err(FetchError::TooLarge(max));
                }
                out.extend_from_slice(&chunk);
            }
            Ok((status, headers, out))
        };
        // reqwest's own timeout covers the body too; this one also bounds our loop.
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// GET `url`; a non-2xx answer (redirects included) is an error.
    pub async fn get(&self, url: &str, max: usize) -> Result<Vec<u8>, FetchError> {
        let u = self.check_url(url)?;
        let (status, _, body) = self
            .send(
                self.client.get(u).header("accept", "application/xml, */*"),
                max,
            )
            .await?;
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_address_classifier_refuses_internal_ranges() {
        for bad in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(is_forbidden(ip), "{bad} must be refused");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert!(!is_forbidden(ip), "{good} must be allowed");
        }
    }

    #[tokio::test]
    async fn urls_are_refused_before_any_connection() {
        let h = IdpHttp::new(false);
        for (url, what) in [
            ("http://idp.example.com/md", "insecure"),
            ("ftp://idp.example.com/md", "insecure"),
            ("https://127.0.0.1/md", "forbidden"),
            ("https://[::1]/md", "forbidden"),
            ("https://[::ffff:127.0.0.1]/md", "forbidden"),
            ("https://0.0.0.0/md", "forbidden"),
            ("https://[::]/md", "forbidden"),
            ("https://169.254.169.254/latest/meta-data", "forbidden"),
            ("https://2130706433/md", "forbidden"),
            ("https://0x7f.1/md", "forbidden"),
            ("https://100.64.1.1/md", "forbidden"),
            ("https://[fd00::1]/md", "forbidden"),
            ("https://[fe80::1]/md", "forbidden"),
        ] {
            let e = h.get(url, 1024).await.unwrap_err();
            match what {
                "insecure" => assert!(matches!(e, FetchError::Insecure), "{url}: {e}"),
                _ => assert!(matches!(e, FetchError::Forbidden(_)), "{url}: {e}"),
            }
        }
        // A name is checked on what it resolves to, inside the resolver the connection
        // uses: `localhost` is loopback.
        let e = h.get("https://localhost:1/md", 1024).await.unwrap_err();
        assert!(matches!(e, FetchError::Forbidden(_)), "{e}");
    }

    /// A loopback server answering every connection with `head` then `body` (repeated
    /// for ever, `gap` apart, when `endless`), after `delay`.
    async fn serve_with(
        head: &'static str,
        body: &'static [u8],
        endless: bool,
        delay: Duration,
        gap: Duration,
    ) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    loop {
                        if s.write_all(body).await.is_err() || !endless {
                            return;
                        }
                        tokio::time::sleep(gap).await;
                    }
                });
            }
        });
        port
    }

    async fn serve(head: &'static str, body: &'static [u8], endless: bool, delay: Duration) -> u16 {
        serve_with(head, body, endless, delay, Duration::ZERO).await
    }

    #[tokio::test]
    async fn with_the_operator_flag_a_local_server_is_read() {
        let port = serve(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n",
            b"hello",
            false,
            Duration::ZERO,
        )
        .await;
        let url = format!("http://127.0.0.1:{port}/md");
        let body = IdpHttp::new(true).get(&url, 1024).await.unwrap();
        assert_eq!(body, b"hello");
        // Without the flag the same server is never reached.
        let e = IdpHttp::new(false).get(&url, 1024).await.unwrap_err();
        assert!(matches!(e, FetchError::Insecure), "{e}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let port = serve(
            "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n",
            b"",
            false,
            Duration::ZERO,
        )
        .await;
        let e = IdpHttp::new(true)
            .get(&format!("http://127.0.0.1:{port}/md"), 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Status(302)), "{e}");
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_off_at_the_cap() {
        // No content-length: the cap is enforced while streaming.
        let port = serve(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
            &[b'x'; 16 * 1024],
            true,
            Duration::ZERO,
        )
        .await;
        let started = std::time::Instant::now();
        let e = IdpHttp::new(true)
            .get(&format!("http://127.0.0.1:{port}/md"), MAX_METADATA)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::TooLarge(MAX_METADATA)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // A declared length over the cap is refused before the body is read.
        let port = serve(
            "HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n",
            b"x",
            false,
            Duration::ZERO,
        )
        .await;
        let e = IdpHttp::new(true)
            .get(&format!("http://127.0.0.1:{port}/md"), MAX_METADATA)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::TooLarge(_)), "{e}");
    }

    #[tokio::test]
    async fn a_slow_server_runs_into_the_time_limit() {
        // Headers at once, then a body that trickles for ever: the total limit, not an
        // idle timeout, ends it.
        let port = serve_with(
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
            b"x",
            true,
            Duration::ZERO,
            Duration::from_millis(20),
        )
        .await;
        let h = IdpHttp::with_timeout(true, Duration::from_millis(500));
        let started = std::time::Instant::now();
        let e = h
            .get(&format!("http://127.0.0.1:{port}/md"), usize::MAX)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // A server that never answers at all.
        let port = serve("", b"", false, Duration::from_secs(30)).await;
        let e = h
            .get(&format!("http://127.0.0.1:{port}/md"), 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Timeout(_)), "{e}");
    }
}
