//! Which addresses a plug-in may reach: the class of an IP address and the host names of an allow-list.
//! Pure functions, no I/O — the connector (`send`) calls them on every address it is about to connect to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of network an address belongs to. Only [`AddressClass::Public`] is reachable from the
/// sandbox by default; [`AddressClass::Loopback`] also with the plug-in's
/// `allow_loopback_for_development` opt-in; every other class never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// A globally routed unicast address.
    Public,
    /// 127.0.0.0/8, ::1: this machine.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7 (unique local, AWS's IPv6 metadata fd00:ec2::254 included).
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (Alibaba Cloud's metadata service, 100.100.100.200, is here).
    SharedAddressSpace,
    /// 169.254/16 and fe80::/10: where cloud metadata services answer (169.254.169.254).
    LinkLocal,
    /// 0.0.0.0/8, ::: "this host" — connecting to it reaches the local machine on most systems.
    Unspecified,
    /// 224/4, ff00::/8.
    Multicast,
    /// Everything else that is not globally routed: 240/4, broadcast, documentation and benchmarking
    /// ranges, 192.0.0/24, 100::/64, 2001:db8::/32, site-local fec0::/10.
    Reserved,
}

impl AddressClass {
    /// How a refusal names the class.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::SharedAddressSpace => "a carrier-grade NAT (shared) address",
            AddressClass::LinkLocal => {
                "a link-local address (where cloud metadata services such as 169.254.169.254 answer)"
            }
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Reserved => "a reserved, non-routed address",
        }
    }
}

/// The class of `ip`. IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are classed by that IPv4 address, so
/// `::ffff:127.0.0.1` is loopback, not public.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedAddressSpace,
        (169, 254, _) => AddressClass::LinkLocal,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _)
        | (192, 0, 0)
        | (192, 0, 2)
        | (198, 51, 100)
        | (203, 0, 113)
        | (198, 18..=19, _) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    match s[0] {
        0xfc00..=0xfdff => AddressClass::Private,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        0xfec0..=0xfeff => AddressClass::Reserved,
        0xff00..=0xffff => AddressClass::Multicast,
        0x2001 if s[1] == 0x0db8 => AddressClass::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => AddressClass::Reserved,
        // Outside 2000::/3 nothing is globally routed unicast.
        first if !(0x2000..=0x3fff).contains(&first) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that reach it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(tail()),
        // NAT64's well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        // 6to4: 2002:AABB:CCDD::/48 routes to a.b.c.d.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// Whether `host` (lower case, no trailing dot) matches one allow-list entry: the same name, or for
/// `*.contoso.com` any name under contoso.com, at any depth (not contoso.com itself).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => pattern == host,
    }
}

/// Checks one allow-list entry as written: a host name (letters, digits, `-`, `.`), optionally `*.`
/// first; not an IP address, URL or port.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.parse::<IpAddr>().is_ok() || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Err(format!(
            "allowed_hosts entry \"{pattern}\" is an IP address; the sandbox calls named hosts only"
        ));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "allowed_hosts entry \"{pattern}\" is not a host name (write `api.contoso.com` or \
             `*.contoso.com`: no scheme, port or path)"
        ));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "allowed_hosts entry \"{pattern}\" has upper-case letters; write host names in lower case"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().expect("test address"))
    }

    /// Every range the sandbox refuses is classed as such, including IPv6 disguises of IPv4 loopback
    /// and metadata addresses; ordinary public addresses stay public.
    #[test]
    fn address_classes() {
        use AddressClass::*;
        for (ip, want) in [
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("::1", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("fd00:ec2::254", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.100.100.200", SharedAddressSpace),
            ("169.254.169.254", LinkLocal),
            ("fe80::1", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Reserved),
            ("192.0.2.10", Reserved),
            ("2001:db8::1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("64:ff9b::a00:1", Private),
            ("2002:7f00:1::", Loopback),
            ("8.8.8.8", Public),
            ("172.32.0.1", Public),
            ("100.128.0.1", Public),
            ("2606:4700::1111", Public),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    /// Exact names match themselves only; a wildcard matches names under the domain, not the domain
    /// itself nor a name that merely ends with the same letters.
    #[test]
    fn allow_list_patterns() {
        assert!(host_matches("api.contoso.com", "api.contoso.com"));
        assert!(!host_matches("api.contoso.com", "x.api.contoso.com"));
        assert!(host_matches("*.contoso.com", "api.contoso.com"));
        assert!(host_matches("*.contoso.com", "a.b.contoso.com"));
        assert!(!host_matches("*.contoso.com", "contoso.com"));
        assert!(!host_matches("*.contoso.com", "evilcontoso.com"));
        assert!(check_pattern("*.contoso.com").is_ok());
        assert!(check_pattern("localhost").is_ok());
        for bad in [
            "10.0.0.1",
            "[::1]",
            "https://contoso.com",
            "contoso.com:443",
            "",
            "API.contoso.com",
        ] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
