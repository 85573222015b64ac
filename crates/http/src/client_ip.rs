//! Which address a request comes from.
//!
//! The socket's peer, unless the peer is a configured trusted proxy: then `X-Forwarded-For` is
//! read from the right (each proxy appends the address it received from), skipping trusted
//! proxies, and the first untrusted address is the client. The leftmost entries are whatever the
//! client chose to send and are never believed.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// CIDR ranges whose `X-Forwarded-For` is believed (load balancers, ingress).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// The CIDR list did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR range or an IP address (e.g. 10.0.0.0/8, ::1)")]
pub struct CidrError(pub String);

/// Parses `10.0.0.0/8, 192.168.1.7, ::1/128`: bare addresses are single-host ranges.
///
/// # Errors
/// [`CidrError`] naming the first bad entry.
pub fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, CidrError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| CidrError(s.to_owned()))
        })
        .collect()
}

/// Whether `ip` is in any of `nets` (IPv4-mapped IPv6 addresses count as IPv4).
#[must_use]
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

impl TrustedProxies {
    /// These ranges.
    #[must_use]
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn trusts(&self, ip: IpAddr) -> bool {
        contains(&self.0, ip)
    }

    /// The client address of a request whose socket peer is `peer`.
    #[must_use]
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        // All X-Forwarded-For fields, in order, as one list (RFC 9110 list semantics).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut last_trusted = peer;
        for hop in hops.iter().rev() {
            // Some proxies append the port: "192.0.2.1:5678", "[2001:db8::1]:443".
            let parsed = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()));
            match parsed {
                Ok(ip) if self.trusts(ip) => last_trusted = canonical(ip),
                Ok(ip) => return canonical(ip),
                // Garbage where the client's address should be: the nearest proxy we trust is
                // the best we know.
                Err(_) => return last_trusted,
            }
        }
        last_trusted
    }
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

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(parse_cidrs("10.0.0.0/8, 192.168.1.7").unwrap())
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            proxies().client_ip(ip("203.0.113.5"), &h),
            ip("203.0.113.5")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        // The client forged "6.6.6.6" at the left; the proxy appended the real address.
        let h = xff(&["6.6.6.6, 203.0.113.9"]);
        assert_eq!(proxies().client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // Two trusted hops, across two header fields.
        let h = xff(&["6.6.6.6, 198.51.100.2", "192.168.1.7"]);
        assert_eq!(proxies().client_ip(ip("10.1.2.3"), &h), ip("198.51.100.2"));
    }

    #[test]
    fn missing_or_garbage_forwarding_falls_back_to_the_nearest_trusted_hop() {
        assert_eq!(
            proxies().client_ip(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
        let h = xff(&["203.0.113.9, not-an-ip, 192.168.1.7"]);
        assert_eq!(proxies().client_ip(ip("10.1.2.3"), &h), ip("192.168.1.7"));
    }

    #[test]
    fn forwarded_entries_with_ports_are_understood() {
        let h = xff(&["203.0.113.9:5678"]);
        assert_eq!(proxies().client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        let h = xff(&["[2001:db8::7]:443"]);
        assert_eq!(proxies().client_ip(ip("10.1.2.3"), &h), ip("2001:db8::7"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let h = xff(&["203.0.113.9"]);
        assert_eq!(
            proxies().client_ip(ip("::ffff:10.0.0.1"), &h),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies().client_ip(ip("::ffff:203.0.113.1"), &h),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn cidr_lists_parse_or_name_the_bad_entry() {
        assert_eq!(parse_cidrs("10.0.0.0/8, ::1").unwrap().len(), 2);
        assert_eq!(parse_cidrs("").unwrap().len(), 0);
        assert_eq!(
            parse_cidrs("10.0.0.0/8, 300.1.1.1").unwrap_err(),
            CidrError("300.1.1.1".into())
        );
    }
}
