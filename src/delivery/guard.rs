//! SSRF protection: which addresses hookline may connect to.
//!
//! Loopback, private, link-local, shared (CGNAT), multicast, reserved, documentation and cloud
//! metadata addresses are refused, IPv4 and IPv6 alike, including IPv4 addresses carried inside
//! IPv6 ones (`::ffff:127.0.0.1`, NAT64, 6to4). The check runs on the addresses a host name
//! resolves to, when the connection is made (a name that resolves to 127.0.0.1 does not pass),
//! and on literal addresses in URLs (`http://2130706433/` is 127.0.0.1: the URL parser reads
//! decimal, octal and hex forms). Networks in `HOOKLINE_ALLOWED_NETWORKS` are exempt;
//! `HOOKLINE_ALLOW_PRIVATE_TARGETS=true` turns the check off, for tests and development.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which target addresses are allowed.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Every address is allowed (tests and development only).
    pub allow_private: bool,
    /// Networks allowed even though they are private.
    pub allowed_networks: Vec<IpNet>,
}

impl TargetPolicy {
    /// Why `ip` is refused, or None when it is allowed.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow_private || self.allowed_networks.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        special_kind(ip)
    }

    /// Checks a URL whose host is a literal address (host names are checked when resolved).
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        match self.refusal(ip) {
            Some(kind) => Err(format!("target `{ip}` refused: {ip} ({kind}) is not a public address; {ALLOW_HINT}")),
            None => Ok(()),
        }
    }
}

/// How every refusal starts.
pub const REFUSED_PREFIX: &str = "target `";

const ALLOW_HINT: &str =
    "allow it with HOOKLINE_ALLOWED_NETWORKS (or HOOKLINE_ALLOW_PRIVATE_TARGETS=true in development)";

/// The refusal of a host name. Its addresses are logged, not shown: API users must not learn
/// the internal network's names and addresses from it.
fn refused_name(host: &str, refused: &[(IpAddr, &'static str)]) -> String {
    let mut kinds: Vec<&str> = refused.iter().map(|(_, kind)| *kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    tracing::debug!(host, addresses = ?refused, "refused a target that resolves to special addresses");
    format!(
        "target `{host}` refused: it resolves to addresses that are not public ({}); {ALLOW_HINT}",
        kinds.join(", ")
    )
}

/// The kind of a special-purpose address, or None for a public one.
pub fn special_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_kind(ip),
        IpAddr::V6(ip) => v6_kind(ip),
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => "cloud metadata",
        (0, ..) => "unspecified",
        (127, ..) => "loopback",
        (10, ..) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared address space (CGNAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    Some(match segments {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        // IPv4-compatible (deprecated) addresses carry an IPv4 address.
        [0, 0, 0, 0, 0, 0, high, low] => return v4_kind(embedded(high, low)),
        // NAT64 reaches the IPv4 address it carries.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => return v4_kind(embedded(high, low)),
        [0x64, 0xff9b, 1, ..] => "private (local NAT64)",
        // 6to4 carries an IPv4 address in bits 16 to 48.
        [0x2002, high, low, ..] => return v4_kind(embedded(high, low)),
        [0xfd00, 0x0ec2, ..] => "cloud metadata",
        [0x2001, 0, ..] => "Teredo tunnel",
        [0x2001, 0x0db8, ..] => "documentation",
        [0x0100, 0, 0, 0, ..] => "discard",
        [first, ..] if first & 0xfe00 == 0xfc00 => "private (unique local)",
        [first, ..] if first & 0xffc0 == 0xfe80 => "link-local",
        [first, ..] if first & 0xffc0 == 0xfec0 => "private (site-local)",
        [first, ..] if first & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// Resolves host names for the HTTP client and keeps only the allowed addresses, so the check
/// holds for the address actually connected to.
pub struct GuardedResolver {
    pub policy: Arc<TargetPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolved.into_iter().partition(|addr| policy.refusal(addr.ip()).is_none());
            if allowed.is_empty() {
                let refused: Vec<(IpAddr, &str)> =
                    refused.iter().filter_map(|addr| policy.refusal(addr.ip()).map(|kind| (addr.ip(), kind))).collect();
                let message =
                    if refused.is_empty() { format!("`{host}` has no address") } else { refused_name(&host, &refused) };
                return Err(message.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<&'static str> {
        TargetPolicy::default().refusal(text.parse().expect("an address"))
    }

    #[test]
    fn special_addresses_are_refused_by_default() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fc00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(refused(ip), Some(kind), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(refused(ip), None, "{ip}");
        }
    }

    #[test]
    fn allowed_networks_and_the_switch_lift_the_refusal() {
        let policy = TargetPolicy { allow_private: false, allowed_networks: vec!["10.0.0.0/8".parse().expect("net")] };
        assert_eq!(policy.refusal("10.9.9.9".parse().expect("ip")), None);
        assert_eq!(policy.refusal("127.0.0.1".parse().expect("ip")), Some("loopback"));
        let open = TargetPolicy { allow_private: true, allowed_networks: Vec::new() };
        assert_eq!(open.refusal("127.0.0.1".parse().expect("ip")), None);
    }

    #[test]
    fn literal_hosts_in_any_notation_are_read_as_addresses() {
        let policy = TargetPolicy::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let parsed = url::Url::parse(url).expect("url");
            assert!(policy.check_url(&parsed).is_err(), "{url} passed");
        }
        assert!(policy.check_url(&url::Url::parse("http://example.com/").expect("url")).is_ok());
        assert!(policy.check_url(&url::Url::parse("http://93.184.216.34/").expect("url")).is_ok());
    }
}
