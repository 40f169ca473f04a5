//! `transport_url` as oslo.messaging's `TransportURL.parse` reads it:
//! `rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost?ssl=1`.

use percent_encoding::percent_decode_str;

use super::Secret;

/// One broker of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerHost {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (5672, or 5671 with TLS, when not given).
    pub port: u16,
    /// User name (`guest` when not given, as kombu does).
    pub username: String,
    /// Password.
    pub password: Secret,
}

/// The parsed URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportUrl {
    /// Brokers, tried in order (oslo's default `round-robin` failover).
    pub hosts: Vec<BrokerHost>,
    /// The virtual host; empty means the broker's default (`/`).
    pub vhost: String,
    /// TLS requested by the URL (`rabbit+ssl://`, `amqps://` or `?ssl=1`).
    pub tls: bool,
}

impl TransportUrl {
    /// Parses the URL; the error text never contains the password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("not a URL (expected rabbit://...)")?;
        let mut tls = match scheme {
            "rabbit" | "kombu" | "amqp" => false,
            "rabbit+ssl" | "kombu+ssl" | "amqps" => true,
            other => {
                return Err(format!(
                    "unsupported transport {other:?} (this agent speaks rabbit)"
                ))
            }
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == "ssl" {
                tls = matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on");
            }
        }
        let (netloc, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let vhost = percent_decode_str(vhost)
            .decode_utf8()
            .map_err(|_| "virtual host is not UTF-8")?
            .into_owned();
        let default_port = if tls { 5671 } else { 5672 };
        let mut hosts = Vec::new();
        for (i, part) in netloc.split(',').enumerate() {
            if part.is_empty() {
                continue;
            }
            let (userinfo, hostport) = match part.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, part),
            };
            let (username, password) = match userinfo {
                Some(u) => {
                    let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                    (decode(user, i, "user name")?, decode(pass, i, "password")?)
                }
                None => ("guest".to_owned(), "guest".to_owned()),
            };
            let (host, port) =
                split_host_port(hostport).map_err(|e| format!("broker #{}: {e}", i + 1))?;
            hosts.push(BrokerHost {
                host,
                port: port.unwrap_or(default_port),
                username,
                password: Secret::new(password),
            });
        }
        if hosts.is_empty() {
            return Err("no broker host in the URL".into());
        }
        Ok(Self { hosts, vhost, tls })
    }

    /// The URL with passwords masked, for logs and `--show-config`.
    pub fn masked(&self) -> String {
        let scheme = if self.tls { "rabbit+ssl" } else { "rabbit" };
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .map(|h| {
                let host = if h.host.contains(':') {
                    format!("[{}]", h.host)
                } else {
                    h.host.clone()
                };
                format!("{}:***@{}:{}", h.username, host, h.port)
            })
            .collect();
        format!("{scheme}://{}/{}", hosts.join(","), self.vhost)
    }
}

fn decode(text: &str, index: usize, what: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            format!(
                "broker #{}: {what} is not valid percent-encoded UTF-8",
                index + 1
            )
        })
}

fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
        (host, after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_brokers_with_credentials() {
        let u = TransportUrl::parse("rabbit://a:x@h1:5673,b:y@h2/vh").unwrap();
        assert_eq!(u.hosts.len(), 2);
        assert_eq!(
            (
                u.hosts[0].host.as_str(),
                u.hosts[0].port,
                u.hosts[0].username.as_str()
            ),
            ("h1", 5673, "a")
        );
        assert_eq!((u.hosts[1].host.as_str(), u.hosts[1].port), ("h2", 5672));
        assert_eq!(u.hosts[1].password.expose(), "y");
        assert_eq!(u.vhost, "vh");
        assert!(!u.tls);
    }

    #[test]
    fn tls_forms_and_default_port() {
        assert!(TransportUrl::parse("rabbit+ssl://u:p@h/").unwrap().tls);
        let u = TransportUrl::parse("rabbit://u:p@h/?ssl=1").unwrap();
        assert!(u.tls);
        assert_eq!(u.hosts[0].port, 5671);
    }

    #[test]
    fn ipv6_and_encoded_vhost() {
        let u = TransportUrl::parse("rabbit://u:p@[::1]:5672/%2F").unwrap();
        assert_eq!(u.hosts[0].host, "::1");
        assert_eq!(u.vhost, "/");
    }

    #[test]
    fn errors_never_show_the_password() {
        let err = TransportUrl::parse("rabbit://u:hunter2@h:notaport/").unwrap_err();
        assert!(err.contains("bad port"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(TransportUrl::parse("http://h/")
            .unwrap_err()
            .contains("unsupported transport"));
        assert!(TransportUrl::parse("rabbit:///").is_err());
    }

    #[test]
    fn masked_hides_passwords() {
        let u = TransportUrl::parse("rabbit://u:hunter2@h:5672/v").unwrap();
        assert_eq!(u.masked(), "rabbit://u:***@h:5672/v");
    }
}
