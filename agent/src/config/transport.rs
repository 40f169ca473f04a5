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

/// Why a `transport_url` is refused; the text never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://`.
    #[error("not a URL (expected rabbit://...)")]
    NotAUrl,
    /// Another transport than RabbitMQ's.
    #[error("unsupported transport {0:?} (this agent speaks rabbit)")]
    Unsupported(String),
    /// A virtual host that does not decode.
    #[error("virtual host is not UTF-8")]
    Vhost,
    /// One broker of the list (counted from 1).
    #[error("broker #{index}: {why}")]
    Broker {
        /// Its place in the list.
        index: usize,
        /// What is wrong with it.
        why: String,
    },
    /// An empty list.
    #[error("no broker host in the URL")]
    NoHost,
}

impl TransportUrl {
    /// Parses the URL; the error text never contains the password.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = text.split_once("://").ok_or(UrlError::NotAUrl)?;
        let mut tls = match scheme {
            "rabbit" | "kombu" | "amqp" => false,
            "rabbit+ssl" | "kombu+ssl" | "amqps" => true,
            other => return Err(UrlError::Unsupported(other.to_owned())),
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
            .map_err(|_| UrlError::Vhost)?
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
                split_host_port(hostport).map_err(|why| UrlError::Broker { index: i + 1, why })?;
            hosts.push(BrokerHost {
                host,
                port: port.unwrap_or(default_port),
                username,
                password: Secret::new(password),
            });
        }
        if hosts.is_empty() {
            return Err(UrlError::NoHost);
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

fn decode(text: &str, index: usize, what: &str) -> Result<String, UrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| UrlError::Broker {
            index: index + 1,
            why: format!("{what} is not valid percent-encoded UTF-8"),
        })
}

/// Host and port of one broker; the reason is a broker's, never with a
/// password (the user info is split off before).
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
        let err = TransportUrl::parse("rabbit://u:hunter2@h:notaport/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad port"), "{err}");
        assert!(!err.contains("hunter2"));
        assert_eq!(
            TransportUrl::parse("http://h/").unwrap_err(),
            UrlError::Unsupported("http".into())
        );
        assert!(TransportUrl::parse("rabbit:///").is_err());
    }

    #[test]
    fn masked_hides_passwords() {
        let u = TransportUrl::parse("rabbit://u:hunter2@h:5672/v").unwrap();
        assert_eq!(u.masked(), "rabbit://u:***@h:5672/v");
    }
}
