//! Which addresses a delivery may connect to. Endpoints are registered by administrators, but a
//! name can resolve to anything, and again differently at the next lookup (DNS rebinding): so
//! the rule applies to every address a name resolves to, at connect time, by the caller's
//! resolver. By default only public unicast addresses pass: no loopback, private (RFC 1918, IPv6
//! unique local), shared (100.64/10), link-local, multicast, broadcast, unspecified,
//! documentation, benchmarking or reserved range, and an IPv6 address that embeds an IPv4 one
//! (mapped, NAT64, 6to4) is judged by that one. `allow_private` lets loopback, private,
//! shared and link-local addresses through too (tests, and receivers on the operator's own
//! network); the rest stay refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address rule (configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Also allow loopback, private, shared and link-local addresses.
    pub allow_private: bool,
}

/// What kind of address it is, as far as the rule goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    /// Loopback, private, shared or link-local: the operator's own network.
    Internal,
    /// Never a receiver.
    Special,
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

fn kind_v4(ip: Ipv4Addr) -> Kind {
    const INTERNAL: [([u8; 4], u32); 6] = [
        ([127, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([172, 16, 0, 0], 12),
        ([192, 168, 0, 0], 16),
        ([100, 64, 0, 0], 10),
        ([169, 254, 0, 0], 16),
    ];
    const SPECIAL: [([u8; 4], u32); 8] = [
        ([0, 0, 0, 0], 8),
        ([192, 0, 0, 0], 24),
        ([192, 0, 2, 0], 24),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
    ];
    if SPECIAL.iter().any(|(net, bits)| in_v4(ip, *net, *bits)) {
        Kind::Special
    } else if INTERNAL.iter().any(|(net, bits)| in_v4(ip, *net, *bits)) {
        Kind::Internal
    } else {
        Kind::Public
    }
}

fn kind_v6(ip: Ipv6Addr) -> Kind {
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return kind_v4(v4);
    }
    let bits = u128::from(ip);
    // NAT64 (64:ff9b::/96) carries its IPv4 address in the last 32 bits, 6to4 (2002::/16) in the
    // 32 after the prefix.
    if in_v6(ip, v6("64:ff9b::"), 96) {
        #[allow(clippy::cast_possible_truncation)]
        return kind_v4(Ipv4Addr::from(bits as u32));
    }
    if in_v6(ip, v6("2002::"), 16) {
        #[allow(clippy::cast_possible_truncation)]
        return kind_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    if ip == Ipv6Addr::LOCALHOST || in_v6(ip, v6("fc00::"), 7) || in_v6(ip, v6("fe80::"), 10) {
        return Kind::Internal;
    }
    let special = [
        ("::", 96),         // unspecified, and the deprecated IPv4-compatible addresses
        ("100::", 64),      // discard
        ("2001::", 23),     // IETF protocol assignments (Teredo among them)
        ("2001:db8::", 32), // documentation
        ("fec0::", 10),     // site-local (deprecated)
        ("ff00::", 8),      // multicast
    ];
    if special.iter().any(|(net, n)| in_v6(ip, v6(net), *n)) {
        Kind::Special
    } else {
        Kind::Public
    }
}

impl AddressPolicy {
    /// Whether a delivery may connect to `ip`.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        let kind = match ip {
            IpAddr::V4(v4) => kind_v4(v4),
            IpAddr::V6(v6) => kind_v6(v6),
        };
        match kind {
            Kind::Public => true,
            Kind::Internal => self.allow_private,
            Kind::Special => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_unicast_passes_by_default() {
        let strict = AddressPolicy::default();
        let open = AddressPolicy {
            allow_private: true,
        };
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(strict.allows(ip(public)), "{public}");
        }
        for internal in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(!strict.allows(ip(internal)), "{internal}");
            assert!(open.allows(ip(internal)), "{internal} with allow_private");
        }
        for special in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "::",
            "::ffff:0.0.0.0",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
        ] {
            assert!(!strict.allows(ip(special)), "{special}");
            assert!(!open.allows(ip(special)), "{special} with allow_private");
        }
        // Just outside the ranges.
        for edge in [
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "192.169.0.1",
            "fbff::1",
        ] {
            assert!(strict.allows(ip(edge)), "{edge}");
        }
    }
}
