//! Which addresses are worth looking up.
//!
//! Private, loopback, link-local, documentation, multicast and otherwise
//! reserved addresses have no location: a visitor coming from one is on a
//! local network or a proxy we cannot see through, so they are "unknown"
//! rather than whatever a database happens to say about the range. An
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket
//! reports for an IPv4 client) is the IPv4 address.

use std::net::{IpAddr, Ipv4Addr};

/// IPv4 special-purpose blocks (RFC 6890 and the IANA registry) as
/// (network, prefix length).
const V4_SPECIAL: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared (carrier-grade NAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 TEST-NET-1
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and the broadcast address
];

/// IPv6 blocks that are not public unicast: everything outside 2000::/3 and
/// the documentation and benchmarking blocks inside it.
const V6_SPECIAL: &[(u128, u8)] = &[
    (0x0000 << 112, 3), // ::/3: unspecified, loopback, mapped, NAT64, discard
    (0x4000 << 112, 2), // 4000::/2 unassigned
    (0x8000 << 112, 1), // 8000::/1: ULA, link-local, multicast, unassigned
    (0x2001_0002_0000 << 80, 48), // 2001:2::/48 benchmarking
    (0x2001_0010 << 96, 28), // 2001:10::/28 ORCHID
    (0x2001_0020 << 96, 28), // 2001:20::/28 ORCHIDv2
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x3fff << 112, 20), // 3fff::/20 documentation
];

/// The address to look up for `ip`: IPv4-mapped IPv6 becomes IPv4; `None`
/// for any address that is not public unicast.
pub fn public_address(ip: IpAddr) -> Option<IpAddr> {
    let ip = unmap(ip);
    special_block(ip).is_none().then_some(ip)
}

/// Turns an IPv4-mapped IPv6 address into the IPv4 address; others unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The special-purpose block containing `ip`, as its first and last address.
/// IPv4-mapped addresses are not unmapped here (they lie in `::/3`).
pub fn special_block(ip: IpAddr) -> Option<(IpAddr, IpAddr)> {
    match ip {
        IpAddr::V4(v4) => {
            let a = u32::from(v4);
            V4_SPECIAL.iter().find_map(|&(net, len)| {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                (a & mask == net).then(|| {
                    (
                        IpAddr::V4(Ipv4Addr::from(net)),
                        IpAddr::V4(Ipv4Addr::from(net | !mask)),
                    )
                })
            })
        }
        IpAddr::V6(v6) => {
            let a = u128::from(v6);
            V6_SPECIAL.iter().find_map(|&(net, len)| {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                (a & mask == net)
                    .then(|| (IpAddr::V6(net.into()), IpAddr::V6((net | !mask).into())))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> Option<String> {
        let ip: IpAddr = s.parse().expect("test address");
        public_address(ip).map(|a| a.to_string())
    }

    #[test]
    fn private_and_reserved_are_none() {
        for s in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "64:ff9b::808:808",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "100::1",
        ] {
            assert_eq!(public(s), None, "{s}");
        }
    }

    #[test]
    fn public_addresses_pass_and_mapped_ones_unmap() {
        assert_eq!(public("8.8.8.8").as_deref(), Some("8.8.8.8"));
        assert_eq!(public("172.32.0.1").as_deref(), Some("172.32.0.1"));
        assert_eq!(public("::ffff:8.8.4.4").as_deref(), Some("8.8.4.4"));
        assert_eq!(
            public("2606:4700::1111").as_deref(),
            Some("2606:4700::1111")
        );
        assert_eq!(
            public("2002:808:808::1").as_deref(),
            Some("2002:808:808::1")
        );
    }

    #[test]
    fn blocks_have_bounds() {
        let (first, last) = special_block("172.20.1.1".parse().expect("ip")).expect("private");
        assert_eq!(
            (first.to_string(), last.to_string()),
            ("172.16.0.0".into(), "172.31.255.255".into())
        );
        let (first, last) = special_block("fe80::1".parse().expect("ip")).expect("link-local");
        assert_eq!(first.to_string(), "8000::");
        assert_eq!(last.to_string(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    }
}
