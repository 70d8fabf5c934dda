//! Which addresses Wharf refuses to call, and the operator's exceptions (`outbound.allow`).
//! Pure: nothing here opens a connection, so every range is unit-tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Host names that reach a cloud's instance metadata service: refused by name, since some
/// resolve only inside the cloud (and to addresses a resolver could map anywhere).
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata.goog"];

/// Why an address is refused: the name of its range, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    // Most specific first: the metadata addresses sit inside link-local and shared space.
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([169, 254, 169, 254], 32, "cloud metadata"),
        ([100, 100, 100, 200], 32, "cloud metadata"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([0, 0, 0, 0], 32, "unspecified"),
        ([0, 0, 0, 0], 8, "\"this network\""),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "reserved (IETF protocol assignments)"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "reserved (6to4 relay)"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address wrapped in IPv6 reaches that IPv4 host: it is judged as itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let embedded = |bits: u128| Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let n = u128::from(ip);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // IPv4-compatible (::a.b.c.d, deprecated): never a real destination.
    if in_v6(ip, [0; 8], 96) {
        return Some(classify_v4(embedded(n)).unwrap_or("reserved (IPv4-compatible)"));
    }
    // NAT64 (RFC 6052) reaches the embedded IPv4 host through a translator.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(embedded(n));
    }
    // 6to4 carries the IPv4 address in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let v4 = Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32);
        return classify_v4(v4);
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128, "cloud metadata"),
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            "private (local NAT64)",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "reserved (discard-only)"),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, "benchmarking"),
        // Teredo and the other protocol assignments tunnel or name special services.
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "reserved (IETF protocol assignments)",
        ),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        (
            [0x5f00, 0, 0, 0, 0, 0, 0, 0],
            16,
            "reserved (segment routing)",
        ),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "private (unique local)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "private (site-local)"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    if let Some((_, _, why)) = RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Some(why);
    }
    // Only 2000::/3 is allocated for global unicast; the rest is reserved.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return Some("reserved");
    }
    None
}

/// Whether a host name is refused by name (a cloud metadata service).
pub fn blocked_name(host: &str) -> bool {
    let host = normalise(host);
    METADATA_NAMES.contains(&host.as_str())
}

fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// One network of `outbound.allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u32,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, net.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => in_v6(ip, net.segments(), self.prefix),
            _ => false,
        }
    }
}

/// The operator's exceptions to the guard: networks, host names and `*.domain` suffixes.
#[derive(Debug, Clone, Default)]
pub struct Allow {
    nets: Vec<Net>,
    hosts: Vec<String>,
    suffixes: Vec<String>,
}

impl Allow {
    /// Parses `outbound.allow`; the error names the entry that is neither a network nor a name.
    pub fn parse(entries: &[String]) -> Result<Allow, String> {
        let mut allow = Allow::default();
        for raw in entries {
            let entry = raw.trim();
            let bad = || {
                format!(
                    "`{raw}` is neither a network (`10.0.0.0/8`, `fd00::/8`, an address) nor a host name (`erp.internal`, `*.corp.example`)"
                )
            };
            if entry.contains('/') || entry.parse::<IpAddr>().is_ok() {
                let (addr, prefix) = entry.split_once('/').unwrap_or((entry, ""));
                let addr: IpAddr = addr
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse()
                    .map_err(|_| bad())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix = if prefix.is_empty() {
                    max
                } else {
                    prefix
                        .parse::<u32>()
                        .ok()
                        .filter(|p| *p <= max)
                        .ok_or_else(bad)?
                };
                allow.nets.push(Net { addr, prefix });
            } else if let Some(domain) = entry.strip_prefix("*.") {
                if !valid_name(domain) {
                    return Err(bad());
                }
                allow.suffixes.push(format!(".{}", normalise(domain)));
            } else {
                if !valid_name(entry) {
                    return Err(bad());
                }
                allow.hosts.push(normalise(entry));
            }
        }
        Ok(allow)
    }

    /// Whether an address is in an allowed network (an IPv4-mapped address also as IPv4).
    pub fn ip(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.nets
            .iter()
            .any(|n| n.contains(ip) || n.contains(canonical))
    }

    /// Whether a host name is allowed as such (whatever it resolves to).
    pub fn name(&self, host: &str) -> bool {
        let host = normalise(host);
        self.hosts.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

fn valid_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(ip: &str) -> Option<&'static str> {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn every_special_ipv4_range_is_refused() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "\"this network\""),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("100.127.255.254", "shared (carrier-grade NAT)"),
            ("100.100.100.200", "cloud metadata"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.0.1", "link-local"),
            ("169.254.169.254", "cloud metadata"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "reserved (IETF protocol assignments)"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "reserved (6to4 relay)"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ];
        for (ip, expected) in cases {
            assert_eq!(why(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_ipv4_addresses_pass_including_the_edges_of_special_ranges() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_special_ipv6_range_is_refused() {
        let cases = [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf:ffff::1", "link-local"),
            ("fc00::1", "private (unique local)"),
            ("fdff::1", "private (unique local)"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fec0::1", "private (site-local)"),
            ("ff02::1", "multicast"),
            ("ff0e::101", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("2001::1", "reserved (IETF protocol assignments)"),
            ("2001:1ff::1", "reserved (IETF protocol assignments)"),
            ("100::1", "reserved (discard-only)"),
            ("64:ff9b:1::1", "private (local NAT64)"),
            ("5f00::1", "reserved (segment routing)"),
            ("4000::1", "reserved"),
            ("1000::1", "reserved"),
            ("e000::1", "reserved"),
        ];
        for (ip, expected) in cases {
            assert_eq!(why(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn ipv4_wrapped_in_ipv6_is_judged_as_the_ipv4_address() {
        let cases = [
            // IPv4-mapped
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:100.100.100.200", Some("cloud metadata")),
            ("::ffff:192.168.0.1", Some("private")),
            ("::ffff:0.0.0.0", Some("unspecified")),
            ("::ffff:255.255.255.255", Some("broadcast")),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible (deprecated): refused even for a public address
            ("::127.0.0.1", Some("loopback")),
            ("::10.0.0.1", Some("private")),
            ("::169.254.169.254", Some("cloud metadata")),
            ("::8.8.8.8", Some("reserved (IPv4-compatible)")),
            // NAT64 well-known prefix
            ("64:ff9b::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("cloud metadata")),
            ("64:ff9b::8.8.8.8", None),
            // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
            ("2002:7f00:1::1", Some("loopback")),
            ("2002:c0a8:101::1", Some("private")),
            ("2002:a9fe:a9fe::1", Some("cloud metadata")),
            ("2002:808:808::1", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(why(ip), expected, "{ip}");
        }
    }

    #[test]
    fn global_unicast_ipv6_passes() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:200::1",
            "3ffe::1",
        ] {
            assert_eq!(why(ip), None, "{ip}");
        }
    }

    #[test]
    fn metadata_names_are_refused_by_name() {
        assert!(blocked_name("metadata.google.internal"));
        assert!(blocked_name("METADATA.google.internal."));
        assert!(blocked_name("metadata.goog"));
        assert!(!blocked_name("metadata.example.com"));
        assert!(!blocked_name("shop.myshopify.com"));
    }

    #[test]
    fn the_allow_list_takes_networks_addresses_and_names() {
        let allow = Allow::parse(&[
            "127.0.0.0/8".into(),
            "::1".into(),
            "[fd00::]/8".into(),
            "10.1.2.3".into(),
            "ERP.internal.".into(),
            "*.corp.example".into(),
        ])
        .unwrap();
        assert!(allow.ip("127.0.0.1".parse().unwrap()));
        assert!(allow.ip("127.9.9.9".parse().unwrap()));
        assert!(allow.ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(allow.ip("::1".parse().unwrap()));
        assert!(allow.ip("fd12::1".parse().unwrap()));
        assert!(allow.ip("10.1.2.3".parse().unwrap()));
        assert!(!allow.ip("10.1.2.4".parse().unwrap()));
        assert!(!allow.ip("128.0.0.1".parse().unwrap()));
        assert!(!allow.ip("fe80::1".parse().unwrap()));
        assert!(allow.name("erp.internal"));
        assert!(allow.name("a.b.corp.example"));
        assert!(!allow.name("corp.example"));
        assert!(!allow.name("erp.internal.evil.example"));
        assert!(!allow.name("localhost"));
        assert!(Allow::parse(&[]).unwrap().nets.is_empty());
    }

    #[test]
    fn a_bad_allow_entry_is_named() {
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "300.1.1.1/8",
            "not a host",
            "",
            "*.",
        ] {
            let e = Allow::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }
}
