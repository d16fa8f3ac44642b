//! The client's address behind reverse proxies, for sign-in throttling.
//!
//! Only a peer in the operator's trusted-proxy list (`--trusted-proxies`) may say who the
//! client is, through `X-Forwarded-For`. The list is read from the right: each proxy
//! appends the address it received the request from, so the rightmost entry that is not
//! one of ours is the client as far as anyone we trust can vouch (MDN, "X-Forwarded-For",
//! "Selecting an IP address"). Anything left of it can be forged by the client.

use axum::http::HeaderMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One `address/prefix-length` block (a bare address is a block of one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-wide address.
fn masked(v: u128, prefix: u8, bits: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        v >> (bits - prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed. Empty by default: the client
/// is the TCP peer and the header is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl FromStr for TrustedProxies {
    type Err = String;
    /// A comma-separated list of addresses and CIDR blocks (empty: none).
    fn from_str(s: &str) -> Result<Self, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

impl TrustedProxies {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client of a request that arrived from `peer` with `headers`: the peer itself
    /// unless it is a trusted proxy; then the rightmost `X-Forwarded-For` entry that is
    /// not a trusted proxy. An entry that is not an address ends the walk at the proxy
    /// that passed it on (garbage must not give a client fresh throttle keys); a list of
    /// trusted proxies only gives its leftmost entry.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return client;
        }
        // Several header lines are one comma-separated list, in order (RFC 9110 §5.3).
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for e in entries.iter().rev() {
            let Some(ip) = parse_entry(e) else { break };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`), as some proxies write them.
fn parse_entry(e: &str) -> Option<IpAddr> {
    let e = e.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = e.parse::<std::net::SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cidr_blocks_parse_and_match() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.200.3.4")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped peers match");
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")));
        assert!(!one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "example.com",
            "::/129",
            "1.2.3.4/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let list: TrustedProxies = " 10.0.0.0/8, ::1 ,".parse().unwrap();
        assert_eq!(list.0.len(), 2);
        assert_eq!(
            "".parse::<TrustedProxies>().unwrap(),
            TrustedProxies::default()
        );
        assert!("10.0.0.0/8,nope".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let none = TrustedProxies::default();
        let h = xff(&["198.51.100.1"]);
        assert_eq!(none.client(ip("203.0.113.5"), &h), ip("203.0.113.5"));
        let some: TrustedProxies = "10.0.0.1".parse().unwrap();
        assert_eq!(some.client(ip("203.0.113.5"), &h), ip("203.0.113.5"));
    }

    #[test]
    fn rightmost_untrusted_entry_is_the_client() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // The client forged the first entry; our proxies appended the rest.
        let h = xff(&["1.1.1.1, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Ports and IPv6 brackets as some proxies write them.
        let h = xff(&["[2001:db8::9]:4711, 10.1.1.1:80"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("2001:db8::9"));
        // Only trusted entries: the leftmost.
        let h = xff(&["10.9.9.9, 10.0.0.3"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(t.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // Garbage stops the walk at the proxy that passed it on.
        let h = xff(&["198.51.100.7, not-an-ip"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = xff(&["not-an-ip, 10.0.0.4"]);
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.0.0.4"));
        // An IPv4-mapped peer is the IPv4 proxy.
        let h = xff(&["198.51.100.8"]);
        assert_eq!(t.client(ip("::ffff:10.0.0.1"), &h), ip("198.51.100.8"));
    }
}
