//! Where outbound requests may go. Webhook targets and plugin `http.send` both ask
//! [`reach`] what an address is and [`Policy::permits`] whether the operator lets them
//! reach it, so the two paths cannot disagree.
//!
//! The classification follows the IANA IPv4 and IPv6 Special-Purpose Address Registries:
//! an address is public only when it is globally reachable. IPv4 carried inside IPv6
//! (IPv4-mapped, IPv4-compatible, NAT64 and 6to4) is classified as the IPv4 it carries,
//! because that is where the packets end up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

/// What kind of network an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Globally reachable: anyone's server on the internet.
    Public,
    /// This host: 127.0.0.0/8 and ::1.
    Loopback,
    /// Networks inside an organisation: RFC 1918, carrier-grade NAT, link-local (where
    /// cloud metadata services live), unique-local, benchmarking, local-use NAT64.
    Private,
    /// Never a destination for a request: unspecified, "this network", multicast,
    /// broadcast, documentation, discard-only and other reserved blocks.
    Reserved,
}

/// What an operator lets outbound requests reach besides public addresses. Reserved
/// addresses are refused whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// Every [`Reach::Private`] block.
    pub allow_private: bool,
}

impl Policy {
    /// Public addresses only.
    pub const PUBLIC_ONLY: Self = Self {
        allow_loopback: false,
        allow_private: false,
    };

    pub fn permits(self, ip: IpAddr) -> bool {
        match reach(ip) {
            Reach::Public => true,
            Reach::Loopback => self.allow_loopback,
            Reach::Private => self.allow_private,
            Reach::Reserved => false,
        }
    }
}

/// The kind of network `ip` belongs to.
pub fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => reach_v6(v6),
    }
}

/// IPv4 blocks that are not public, from the IANA IPv4 Special-Purpose Address Registry
/// plus multicast: block, kind, what it is. Blocks the registry marks globally reachable
/// (AS112, AMT) are public and need no row.
#[rustfmt::skip]
const V4_BLOCKS: &[(&str, Reach, &str)] = &[
    ("0.0.0.0/8",       Reach::Reserved, "this network, RFC 791"),
    ("10.0.0.0/8",      Reach::Private,  "private use, RFC 1918"),
    ("100.64.0.0/10",   Reach::Private,  "shared address space (CGNAT), RFC 6598"),
    ("127.0.0.0/8",     Reach::Loopback, "loopback, RFC 1122"),
    ("169.254.0.0/16",  Reach::Private,  "link-local, RFC 3927"),
    ("172.16.0.0/12",   Reach::Private,  "private use, RFC 1918"),
    ("192.0.0.0/24",    Reach::Reserved, "IETF protocol assignments, RFC 6890"),
    ("192.0.2.0/24",    Reach::Reserved, "documentation (TEST-NET-1), RFC 5737"),
    ("192.88.99.0/24",  Reach::Reserved, "deprecated 6to4 relay anycast, RFC 7526"),
    ("192.168.0.0/16",  Reach::Private,  "private use, RFC 1918"),
    ("198.18.0.0/15",   Reach::Private,  "benchmarking, RFC 2544"),
    ("198.51.100.0/24", Reach::Reserved, "documentation (TEST-NET-2), RFC 5737"),
    ("203.0.113.0/24",  Reach::Reserved, "documentation (TEST-NET-3), RFC 5737"),
    ("224.0.0.0/4",     Reach::Reserved, "multicast, RFC 5771"),
    ("240.0.0.0/4",     Reach::Reserved, "reserved, with the limited broadcast, RFC 1112"),
];

/// IPv6 blocks checked after the forms that carry IPv4, first match wins, from the IANA
/// IPv6 Special-Purpose Address Registry plus the deprecated site-local block and
/// multicast. Whatever matches no row is public inside 2000::/3, the only block IANA
/// allocates as global unicast, and reserved outside it.
#[rustfmt::skip]
const V6_BLOCKS: &[(&str, Reach, &str)] = &[
    ("::1/128",         Reach::Loopback, "loopback, RFC 4291"),
    ("::/128",          Reach::Reserved, "unspecified, RFC 4291"),
    ("64:ff9b:1::/48",  Reach::Private,  "local-use NAT64, RFC 8215"),
    ("100::/64",        Reach::Reserved, "discard-only, RFC 6666"),
    ("100:0:0:1::/64",  Reach::Reserved, "dummy prefix, RFC 9780"),
    // Inside 2001::/23, the registry marks these anycast services globally reachable.
    ("2001:1::1/128",   Reach::Public,   "PCP anycast, RFC 7723"),
    ("2001:1::2/128",   Reach::Public,   "TURN anycast, RFC 8155"),
    ("2001:1::3/128",   Reach::Public,   "DNS-SD SRP anycast, RFC 9665"),
    ("2001:3::/32",     Reach::Public,   "AMT, RFC 7450"),
    ("2001:4:112::/48", Reach::Public,   "AS112-v6, RFC 7535"),
    // The rest of it: Teredo, benchmarking, ORCHIDv2 and DRIP identifiers.
    ("2001::/23",       Reach::Reserved, "IETF protocol assignments, RFC 2928"),
    ("2001:db8::/32",   Reach::Reserved, "documentation, RFC 3849"),
    ("3fff::/20",       Reach::Reserved, "documentation, RFC 9637"),
    ("fc00::/7",        Reach::Private,  "unique-local, RFC 4193"),
    ("fe80::/10",       Reach::Private,  "link-local, RFC 4291"),
    ("fec0::/10",       Reach::Private,  "site-local (deprecated), RFC 3879"),
    ("ff00::/8",        Reach::Reserved, "multicast, RFC 4291"),
];

/// 2000::/3: global unicast, the only IPv6 space IANA hands to registries.
const GLOBAL_UNICAST: (u128, u32) = (0x2000 << 112, 3);
/// 64:ff9b::/96: the well-known NAT64 prefix (RFC 6052); the last 32 bits are IPv4.
const NAT64: (u128, u32) = (0x64_ff9b << 96, 96);
/// 2002::/16: 6to4 (RFC 3056); bits 16 to 48 are the IPv4 of the tunnel's end.
const SIX_TO_FOUR: (u128, u32) = (0x2002 << 112, 16);
/// ::/96: IPv4-compatible addresses (RFC 4291, deprecated), besides :: and ::1.
const IPV4_COMPATIBLE: (u128, u32) = (0, 96);

/// A parsed row: network bits, prefix length, kind.
type Block<T> = (T, u32, Reach);

static V4_PARSED: LazyLock<Vec<Block<u32>>> = LazyLock::new(|| {
    V4_BLOCKS
        .iter()
        .map(|(cidr, reach, _)| {
            let (net, len) = parse_cidr(cidr);
            let IpAddr::V4(net) = net else {
                panic!("{cidr} is in the IPv4 table");
            };
            (u32::from(net), len, *reach)
        })
        .collect()
});

static V6_PARSED: LazyLock<Vec<Block<u128>>> = LazyLock::new(|| {
    V6_BLOCKS
        .iter()
        .map(|(cidr, reach, _)| {
            let (net, len) = parse_cidr(cidr);
            let IpAddr::V6(net) = net else {
                panic!("{cidr} is in the IPv6 table");
            };
            (u128::from(net), len, *reach)
        })
        .collect()
});

/// `address/length` from the tables above; they are constants, so a bad row is a bug.
fn parse_cidr(cidr: &str) -> (IpAddr, u32) {
    let (net, len) = cidr
        .split_once('/')
        .expect("a table row has a prefix length");
    let net: IpAddr = net.parse().expect("a table row has an address");
    (net, len.parse().expect("a table row's length is a number"))
}

fn reach_v4(ip: Ipv4Addr) -> Reach {
    let bits = u32::from(ip);
    V4_PARSED
        .iter()
        .find(|(net, len, _)| prefix_matches_v4(bits, *net, *len))
        .map_or(Reach::Public, |(_, _, reach)| *reach)
}

fn reach_v6(ip: Ipv6Addr) -> Reach {
    // The OS sends to an IPv4-mapped address over IPv4: it is that IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return reach_v4(v4);
    }
    if let Some(v4) = translated_v4(ip) {
        return through_translator(reach_v4(v4));
    }
    let bits = u128::from(ip);
    if let Some((_, _, reach)) = V6_PARSED
        .iter()
        .find(|(net, len, _)| prefix_matches_v6(bits, *net, *len))
    {
        return *reach;
    }
    if in_block(bits, GLOBAL_UNICAST) {
        Reach::Public
    } else {
        Reach::Reserved
    }
}

/// The IPv4 address that a NAT64, 6to4 or IPv4-compatible address leads to.
fn translated_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if in_block(bits, NAT64) || (in_block(bits, IPV4_COMPATIBLE) && bits > 1) {
        return Some(Ipv4Addr::from(bits as u32));
    }
    if in_block(bits, SIX_TO_FOUR) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// A translator's or tunnel end's own loopback is not this host's: it is somebody's
/// internal network.
fn through_translator(reach: Reach) -> Reach {
    match reach {
        Reach::Loopback => Reach::Private,
        other => other,
    }
}

fn in_block(bits: u128, (net, len): (u128, u32)) -> bool {
    prefix_matches_v6(bits, net, len)
}

fn prefix_matches_v4(bits: u32, net: u32, len: u32) -> bool {
    assert!((1..=32).contains(&len), "IPv4 prefix length {len}");
    bits >> (32 - len) == net >> (32 - len)
}

fn prefix_matches_v6(bits: u128, net: u128, len: u32) -> bool {
    assert!((1..=128).contains(&len), "IPv6 prefix length {len}");
    bits >> (128 - len) == net >> (128 - len)
}

#[cfg(test)]
mod tests {
    use super::*;

    use Reach::{Loopback, Private, Public, Reserved};

    /// Every block the classifier knows, at its edges and just outside them.
    const TABLE: &[(&str, Reach)] = &[
        // IPv4: "this network" and unspecified.
        ("0.0.0.0", Reserved),
        ("0.255.255.255", Reserved),
        ("1.0.0.0", Public),
        // RFC 1918.
        ("9.255.255.255", Public),
        ("10.0.0.0", Private),
        ("10.255.255.255", Private),
        ("11.0.0.0", Public),
        ("172.15.255.255", Public),
        ("172.16.0.0", Private),
        ("172.31.255.255", Private),
        ("172.32.0.0", Public),
        ("192.167.255.255", Public),
        ("192.168.0.0", Private),
        ("192.168.255.255", Private),
        ("192.169.0.0", Public),
        // Carrier-grade NAT, with Alibaba Cloud's metadata service.
        ("100.63.255.255", Public),
        ("100.64.0.0", Private),
        ("100.100.100.200", Private),
        ("100.127.255.255", Private),
        ("100.128.0.0", Public),
        // Loopback.
        ("126.255.255.255", Public),
        ("127.0.0.1", Loopback),
        ("127.255.255.254", Loopback),
        ("128.0.0.0", Public),
        // Link-local, with the cloud metadata service.
        ("169.253.255.255", Public),
        ("169.254.0.0", Private),
        ("169.254.169.254", Private),
        ("169.254.255.255", Private),
        ("169.255.0.0", Public),
        // IETF protocol assignments and TEST-NET-1.
        ("191.255.255.255", Public),
        ("192.0.0.0", Reserved),
        ("192.0.0.170", Reserved),
        ("192.0.0.255", Reserved),
        ("192.0.1.0", Public),
        ("192.0.2.0", Reserved),
        ("192.0.2.255", Reserved),
        ("192.0.3.0", Public),
        // Globally reachable special-purpose blocks: AS112, AMT, AS112 delegation.
        ("192.31.196.1", Public),
        ("192.52.193.1", Public),
        ("192.175.48.1", Public),
        // Deprecated 6to4 relay anycast.
        ("192.88.98.255", Public),
        ("192.88.99.1", Reserved),
        ("192.88.100.0", Public),
        // Benchmarking.
        ("198.17.255.255", Public),
        ("198.18.0.0", Private),
        ("198.19.255.255", Private),
        ("198.20.0.0", Public),
        // TEST-NET-2 and TEST-NET-3.
        ("198.51.99.255", Public),
        ("198.51.100.7", Reserved),
        ("198.51.101.0", Public),
        ("203.0.112.255", Public),
        ("203.0.113.9", Reserved),
        ("203.0.114.0", Public),
        // Multicast, reserved, broadcast.
        ("223.255.255.255", Public),
        ("224.0.0.1", Reserved),
        ("239.255.255.255", Reserved),
        ("240.0.0.0", Reserved),
        ("250.1.2.3", Reserved),
        ("255.255.255.255", Reserved),
        // Ordinary public addresses.
        ("8.8.8.8", Public),
        ("93.184.216.34", Public),
        // IPv6 loopback and unspecified.
        ("::1", Loopback),
        ("::", Reserved),
        // IPv4-mapped: the IPv4 address itself.
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:10.0.0.1", Private),
        ("::ffff:169.254.169.254", Private),
        ("::ffff:0.0.0.0", Reserved),
        ("::ffff:8.8.8.8", Public),
        // IPv4-compatible (deprecated): the IPv4 address, loopback counted as private.
        ("::10.0.0.5", Private),
        ("::127.0.0.1", Private),
        ("::0.0.0.2", Reserved),
        ("::8.8.8.8", Public),
        // Well-known NAT64.
        ("64:ff9b::a00:5", Private),
        ("64:ff9b::10.0.0.5", Private),
        ("64:ff9b::127.0.0.1", Private),
        ("64:ff9b::169.254.169.254", Private),
        ("64:ff9b::100.100.100.200", Private),
        ("64:ff9b::198.18.0.1", Private),
        ("64:ff9b::240.0.0.1", Reserved),
        ("64:ff9b::8.8.8.8", Public),
        // Local-use NAT64: whatever it carries, it is somebody's network.
        ("64:ff9b:1::", Private),
        ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Private),
        ("64:ff9b:1::808:808", Private),
        ("64:ff9b:2::", Reserved),
        // 6to4: the IPv4 address of the tunnel's end.
        ("2002:a00:5::1", Private),
        ("2002:7f00:1::", Private),
        ("2002:c0a8:101::", Private),
        ("2002:a9fe:a9fe::", Private),
        ("2002:c633:6407::", Reserved),
        ("2002:808:808::1", Public),
        // Discard-only and the dummy prefix.
        ("100::", Reserved),
        ("100::ffff:ffff:ffff:ffff", Reserved),
        ("100:0:0:1::1", Reserved),
        // IETF protocol assignments: Teredo, benchmarking, ORCHIDv2, and the global anycasts.
        ("2001::", Reserved),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Reserved),
        ("2001:2::1", Reserved),
        ("2001:20::1", Reserved),
        ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("2001:1::1", Public),
        ("2001:1::2", Public),
        ("2001:1::3", Public),
        ("2001:1::4", Reserved),
        ("2001:3::1", Public),
        ("2001:4:112::1", Public),
        ("2001:200::1", Public),
        // Documentation.
        ("2001:db8::1", Reserved),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("2001:db9::1", Public),
        ("3fff::1", Reserved),
        ("3fff:fff::1", Reserved),
        ("3fff:1000::1", Public),
        // Unique-local, with AWS's IPv6 metadata service.
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        ("fc00::1", Private),
        ("fd00::1", Private),
        ("fd00:ec2::254", Private),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
        // Link-local and deprecated site-local.
        ("fe80::1", Private),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
        ("fec0::1", Private),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
        // Multicast.
        ("ff02::1", Reserved),
        ("ff0e::101", Reserved),
        // Segment routing SIDs and other space IANA never allocated.
        ("5f00::1", Reserved),
        ("4000::1", Reserved),
        ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Reserved),
        // Global unicast.
        ("2000::", Public),
        ("2606:2800:220:1::1", Public),
        ("2620:4f:8000::1", Public),
        ("3ffe::1", Public),
    ];

    #[test]
    fn every_special_purpose_block_is_classified() {
        for (text, expected) in TABLE {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(reach(ip), *expected, "{text}");
        }
    }

    #[test]
    fn the_switches_open_loopback_and_private_networks_but_never_reserved_blocks() {
        let loopback_only = Policy {
            allow_loopback: true,
            allow_private: false,
        };
        let private_only = Policy {
            allow_loopback: false,
            allow_private: true,
        };
        let both = Policy {
            allow_loopback: true,
            allow_private: true,
        };
        for (text, expected) in TABLE {
            let ip: IpAddr = text.parse().unwrap();
            let public = *expected == Public;
            assert_eq!(Policy::PUBLIC_ONLY.permits(ip), public, "{text}");
            assert_eq!(
                loopback_only.permits(ip),
                public || *expected == Loopback,
                "{text}"
            );
            assert_eq!(
                private_only.permits(ip),
                public || *expected == Private,
                "{text}"
            );
            assert_eq!(both.permits(ip), *expected != Reserved, "{text}");
        }
    }

    #[test]
    fn every_row_of_the_code_tables_is_exercised_by_the_test_table() {
        for (cidr, _, what) in V4_BLOCKS.iter().chain(V6_BLOCKS) {
            let (net, len) = parse_cidr(cidr);
            let hit = TABLE
                .iter()
                .any(|(text, _)| match (net, text.parse::<IpAddr>().unwrap()) {
                    (IpAddr::V4(net), IpAddr::V4(ip)) => {
                        prefix_matches_v4(u32::from(ip), u32::from(net), len)
                    }
                    (IpAddr::V6(net), IpAddr::V6(ip)) => {
                        prefix_matches_v6(u128::from(ip), u128::from(net), len)
                    }
                    _ => false,
                });
            assert!(hit, "no test row in {cidr} ({what})");
        }
    }
}
