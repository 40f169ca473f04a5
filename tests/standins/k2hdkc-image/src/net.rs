//! This host's names, without DNS (a static binary in an image FROM
//! scratch has no NSS): `localhost`, loopback and bindable addresses, the
//! kernel host name, the primary address, and `/etc/hosts` entries that
//! point at this host. chmpx resolves names through the resolver; in tests
//! every node name is an address or in `/etc/hosts`, which is also what
//! CONTRACTS.md §6 asks of real clusters.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

/// The names and addresses that mean "this host".
#[derive(Clone, Debug)]
pub struct Local {
    names: BTreeSet<String>,
    primary: Option<String>,
    probe: bool,
}

/// The kernel's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The address this host uses to reach others (the source of a route to a
/// documentation address; no packet is sent).
pub fn primary_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Whether an address belongs to this host (it can be bound).
pub fn is_local_ip(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// `/etc/hosts` lines: address and names.
pub fn parse_hosts(text: &str) -> Vec<(IpAddr, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap_or("");
            let mut words = l.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some((ip, words.map(|w| w.to_ascii_lowercase()).collect()))
        })
        .collect()
}

/// An address for a node name: a literal, `localhost`, or `/etc/hosts`.
pub fn resolve(name: &str) -> Option<IpAddr> {
    if let Ok(ip) = name.parse() {
        return Some(ip);
    }
    let lower = name.to_ascii_lowercase();
    if lower == "localhost" {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    parse_hosts(&hosts).into_iter().find(|(_, names)| names.contains(&lower)).map(|(ip, _)| ip)
}

impl Local {
    /// This host, as seen from inside the container.
    pub fn detect() -> Local {
        let mut names: BTreeSet<String> = ["localhost", "localhost.localdomain", "ip6-localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let host = hostname();
        if !host.is_empty() {
            names.insert(host.to_ascii_lowercase());
        }
        let primary = primary_ip();
        if let Some(ip) = primary {
            names.insert(ip.to_string());
        }
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        for (ip, hnames) in parse_hosts(&hosts) {
            if is_local_ip(ip) {
                names.insert(ip.to_string());
                names.extend(hnames);
            }
        }
        Local {
            names,
            primary: primary.map(|ip| ip.to_string()),
            probe: true,
        }
    }

    /// A fixed set of names (tests): no probing of real addresses.
    pub fn fixed(names: &[&str], primary: Option<&str>) -> Local {
        Local {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            primary: primary.map(str::to_owned),
            probe: false,
        }
    }

    /// Whether `name` means this host.
    pub fn is_local(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.names.contains(&lower) || (self.probe && lower.parse::<IpAddr>().is_ok_and(is_local_ip))
    }

    /// The local names, for matching slave name patterns.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.names.iter()
    }

    /// chmpx's normalisation of a server name: `localhost` becomes this
    /// host's primary address (so `SERVICEOUT localhost:<port>` finds no
    /// server); other names stay as written.
    pub fn normalise(&self, name: &str) -> String {
        match (name.eq_ignore_ascii_case("localhost"), &self.primary) {
            (true, Some(p)) => p.clone(),
            _ => name.to_owned(),
        }
    }

    /// The name a slave shows for itself.
    pub fn display_name(&self) -> String {
        self.primary.clone().unwrap_or_else(|| "127.0.0.1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let l = Local::fixed(&["localhost", "127.0.0.1", "Node-A", "10.0.0.5"], Some("10.0.0.5"));
        assert!(l.is_local("node-a"));
        assert!(!l.is_local("10.0.0.6"));
        assert_eq!(l.normalise("LOCALHOST"), "10.0.0.5");
        assert_eq!(l.normalise("127.0.0.1"), "127.0.0.1");
        let hosts = parse_hosts("127.0.0.1 localhost\n# x\n10.0.0.5 node-a node-a.example # c\nbad line\n");
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].1, vec!["node-a", "node-a.example"]);
        assert!(is_local_ip("127.0.0.1".parse().unwrap()));
    }
}
