//! SSRF protection: which addresses hookline may connect to.
//!
//! Loopback, private, link-local, shared (CGNAT), multicast, reserved, documentation and cloud
//! metadata addresses are refused, IPv4 and IPv6 alike, including IPv4 addresses carried inside
//! IPv6 ones (`::ffff:127.0.0.1`, NAT64, 6to4) and the translation ranges (`::ffff:0:0:0/96`,
//! the 6to4 relay anycast `192.88.99.0/24`). The check runs on the addresses a host name
//! resolves to, when the connection is made (a name that resolves to 127.0.0.1 does not pass),
//! and on literal addresses in URLs (`http://2130706433/` is 127.0.0.1: the URL parser reads
//! decimal, octal and hex forms). Networks in `HOOKLINE_ALLOWED_NETWORKS` are exempt;
//! `HOOKLINE_ALLOW_PRIVATE_TARGETS=true` turns the check off, for tests and development.
//!
//! A URL that carries a user or password (`https://user:secret@host/`) is refused at send time
//! too, whatever the policy: a rendered URL can carry one that the saved template did not show.
//! Names under `.invalid` (RFC 6761) are answered "does not resolve" without asking DNS.

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

    /// Checks a URL before it is sent: it carries no user or password, and a host that is a
    /// literal address is allowed (host names are checked when resolved). The refusal never
    /// repeats the user or password.
    pub fn check_url(&self, url: &url::Url) -> Result<(), String> {
        if !url.username().is_empty() || url.password().is_some() {
            let host = url.host_str().unwrap_or_default();
            return Err(format!(
                "target `{host}` refused: the URL carries a user or password (`user:password@`); send credentials \
                 in a custom Authorization header (stored encrypted) or use OAuth"
            ));
        }
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

/// The refusal of a host name. Its addresses and their kinds are logged, not shown: API users
/// must not learn the internal network's names, addresses or layout from it (a loopback name
/// and a private one are refused in the same words).
fn refused_name(host: &str, refused: &[(IpAddr, &'static str)]) -> String {
    tracing::info!(host, addresses = ?refused, "refused a target that resolves to special addresses");
    format!("target `{host}` refused: it does not resolve to a public address; {ALLOW_HINT}")
}

/// Whether `host` is under the `.invalid` top-level domain, which never resolves (RFC 6761
/// section 6.4: resolvers answer at once, without a query).
fn is_invalid_tld(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "invalid" || host.ends_with(".invalid")
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
        (192, 88, 99) => "6to4 relay anycast",
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
        // IPv4-translated addresses (SIIT, `::ffff:0:a.b.c.d`) are never a target.
        [0, 0, 0, 0, 0xffff, 0, _, _] => "IPv4-translated",
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
            if is_invalid_tld(&host) {
                return Err(format!("`{host}` does not resolve (names under .invalid never do)").into());
            }
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
            ("192.88.99.1", "6to4 relay anycast"),
            ("::ffff:0:8.8.8.8", "IPv4-translated"),
            ("::ffff:0:127.0.0.1", "IPv4-translated"),
            ("::ffff:0:0:0", "IPv4-translated"),
            ("2002:c058:6301::", "6to4 relay anycast"),
        ] {
            assert_eq!(refused(ip), Some(kind), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.88.98.1",
            "192.88.100.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "::fffe:0:808:808",
        ] {
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

    #[test]
    fn a_user_or_password_in_the_url_is_refused_whatever_the_policy_and_not_repeated() {
        let open = TargetPolicy { allow_private: true, allowed_networks: Vec::new() };
        for url in ["http://user:hunter2@example.com/", "http://user@example.com/", "http://:hunter2@127.0.0.1/"] {
            let parsed = url::Url::parse(url).expect("url");
            let refusal = open.check_url(&parsed).expect_err(url);
            assert!(refusal.starts_with(REFUSED_PREFIX), "{refusal}");
            assert!(refusal.contains("user or password"), "{refusal}");
            assert!(!refusal.contains("hunter2"), "the password is repeated: {refusal}");
        }
        assert!(open.check_url(&url::Url::parse("http://127.0.0.1:8080/x").expect("url")).is_ok());
    }

    #[test]
    fn the_refusal_of_a_name_does_not_say_what_it_resolves_to() {
        let loopback = refused_name("db.internal", &[("127.0.0.1".parse().expect("ip"), "loopback")]);
        let private = refused_name("db.internal", &[("10.0.0.5".parse().expect("ip"), "private")]);
        assert_eq!(loopback, private);
        assert!(loopback.starts_with("target `db.internal` refused"), "{loopback}");
        for leak in ["loopback", "private", "127.0.0.1", "10.0.0.5"] {
            assert!(!loopback.contains(leak), "`{leak}` in {loopback}");
        }
    }

    #[test]
    fn names_under_invalid_are_recognised() {
        for host in ["nowhere.invalid", "a.b.INVALID", "invalid", "x.invalid."] {
            assert!(is_invalid_tld(host), "{host}");
        }
        for host in ["invalid.example.com", "notinvalid", "example.com", "élan.invalidx"] {
            assert!(!is_invalid_tld(host), "{host}");
        }
    }

    #[tokio::test]
    async fn a_name_under_invalid_fails_at_once_even_when_every_target_is_allowed() {
        let resolver = GuardedResolver { policy: Arc::new(TargetPolicy { allow_private: true, ..Default::default() }) };
        let name: Name = "hookline-test.invalid".parse().expect("a name");
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("a .invalid name resolved"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("does not resolve"), "{err}");
    }
}
