//! The SSRF guard: receivers may not be on loopback, private, link-local, shared (CGNAT),
//! multicast, reserved or documentation addresses, checked for literal URLs and for every
//! address a name resolves to at connect time (so DNS rebinding cannot slip past), unless an
//! allow-list admits them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// What the guard admits beyond public addresses.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    pub nets: Vec<IpNet>,
    /// Host names admitted whatever they resolve to (lower case).
    pub hosts: Vec<String>,
}

impl Allowlist {
    /// Parses `INCIDENTD_WEBHOOK_ALLOWLIST`: comma-separated CIDRs, addresses or host names.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let mut list = Allowlist::default();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if let Ok(net) = entry.parse::<IpNet>() {
                list.nets.push(net);
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                list.nets.push(IpNet::from(ip));
            } else if entry.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                list.hosts.push(entry.to_ascii_lowercase());
            } else {
                anyhow::bail!("INCIDENTD_WEBHOOK_ALLOWLIST: {entry:?} is not a CIDR, an address or a host name");
            }
        }
        Ok(list)
    }
}

/// Decides which addresses receivers may have.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Arc<Allowlist>,
}

impl Guard {
    pub fn new(allow: Allowlist) -> Self {
        Guard { allow: Arc::new(allow) }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow.hosts.contains(&host)
    }

    /// Why `ip` may not be connected to, if it may not.
    pub fn refuse_ip(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allow.nets.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        blocked(ip)
    }

    /// Why a URL's host may not be connected to, when the host alone shows it (a literal
    /// address, or `localhost`). Names are checked again, address by address, at connect time.
    pub fn refuse_host(&self, host: &url::Host<&str>) -> Option<String> {
        match host {
            url::Host::Ipv4(ip) => self.refuse_ip(IpAddr::V4(*ip)).map(|why| format!("{ip} is {why}")),
            url::Host::Ipv6(ip) => self.refuse_ip(IpAddr::V6(*ip)).map(|why| format!("{ip} is {why}")),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let local = name == "localhost" || name.ends_with(".localhost");
                (local && !self.host_allowed(&name)).then(|| format!("{name} is a loopback name"))
            }
        }
    }

    /// A resolver for the HTTP client that drops every refused address (and fails when none
    /// is left), so the check holds for the address actually connected to.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { guard: self.clone() })
    }
}

/// Why an address is not a public destination, if it is not.
pub fn blocked(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let why = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address (cloud metadata lives there)"
    } else if a == 100 && (b & 0xc0) == 64 {
        "a shared (CGNAT) address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() {
        "the broadcast address"
    } else if ip.is_documentation() {
        "a documentation address"
    } else if a == 0 {
        "an unspecified (0.0.0.0/8) address"
    } else if a == 198 && (b & 0xfe) == 18 {
        "a benchmarking address"
    } else if a == 192 && b == 0 && c == 0 {
        "an IETF protocol address"
    } else if a >= 240 {
        "a reserved address"
    } else {
        return None;
    };
    Some(why)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    let why = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "the unspecified address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "a unique local (private) address"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "a link-local address"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "a documentation address"
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64: the IPv4 address is in the last 32 bits.
        return blocked_v4(embedded_v4(s[6], s[7])).map(|_| "a NAT64 form of a refused IPv4 address");
    } else if s[0] == 0x2002 {
        // 6to4: the IPv4 address follows the prefix.
        return blocked_v4(embedded_v4(s[1], s[2])).map(|_| "a 6to4 form of a refused IPv4 address");
    } else {
        return None;
    };
    Some(why)
}

/// A DNS resolver that only returns addresses the guard admits.
#[derive(Debug)]
pub struct GuardedResolver {
    guard: Guard,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if guard.host_allowed(&host) {
                return Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs);
            }
            let admitted: Vec<SocketAddr> =
                addrs.iter().copied().filter(|a| guard.refuse_ip(a.ip()).is_none()).collect();
            if admitted.is_empty() {
                let why = addrs.first().and_then(|a| guard.refuse_ip(a.ip())).unwrap_or("unresolvable");
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("refused by the SSRF guard: {host} resolves to {why}").into();
                return Err(err);
            }
            Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_non_public_class_is_refused() {
        for addr in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "0.1.2.3",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "ff02::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(blocked(ip(addr)).is_some(), "{addr} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in
            ["93.184.216.34", "8.8.8.8", "100.128.0.1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
        {
            assert_eq!(blocked(ip(addr)), None, "{addr} is public");
        }
    }

    #[test]
    fn the_allowlist_admits_nets_addresses_and_names_and_refuses_garbage() {
        let list =
            Allowlist::parse(&["10.0.0.0/8".into(), "127.0.0.1".into(), " Hooks.Internal ".into(), "".into()]).unwrap();
        let guard = Guard::new(list);
        assert_eq!(guard.refuse_ip(ip("10.9.9.9")), None);
        assert_eq!(guard.refuse_ip(ip("127.0.0.1")), None);
        assert!(guard.refuse_ip(ip("127.0.0.2")).is_some());
        assert!(guard.host_allowed("hooks.internal."));
        assert!(Allowlist::parse(&["http://x".into()]).is_err());
    }

    #[test]
    fn literal_hosts_and_loopback_names_are_refused_before_connecting() {
        let guard = Guard::default();
        assert!(guard.refuse_host(&url::Host::Domain("LOCALHOST.")).is_some());
        assert!(guard.refuse_host(&url::Host::Domain("api.localhost")).is_some());
        assert_eq!(guard.refuse_host(&url::Host::Domain("example.com")), None);
        let why = guard.refuse_host(&url::Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1))).unwrap();
        assert_eq!(why, "10.0.0.1 is a private address");
    }
}
