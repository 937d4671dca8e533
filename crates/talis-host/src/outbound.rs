//! `allowed_outbound_hosts`: which URLs a component may call, with Spin's syntax
//! `<scheme>://<host>[:<port>]` where scheme, host and port may be `*`, the host may be
//! `*.domain`, the port a range `a..b`, and a missing port means the scheme's default.

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Any,
    /// `*.example.com` → ".example.com"
    Subdomain(String),
    /// `self`: relative requests to the app itself (service chaining; not served here).
    ToSelf,
    Literal(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Port {
    Any,
    One(u16),
    Range(u16, u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: Host,
    port: Port,
}

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "rediss" => Some(6380),
        _ => None,
    }
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(match url {
                "*" | "" => format!(
                    "{url:?} is not an allowed outbound host; use <scheme>://<host>[:<port>] ('*://*:*' allows everything)"
                ),
                _ => format!("{url:?} does not contain a scheme (e.g. 'http://' or '*://')"),
            });
        };
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal without a port ends in ']'.
            Some((h, p)) if !p.contains(']') => (h, p),
            _ => (rest, ""),
        };
        let port = match port.split_once('/') {
            Some((p, "")) => p,
            Some(_) => return Err(format!("{url:?} has a path but is not allowed to")),
            None => port,
        };
        let host = host.trim_end_matches('/');
        if host.contains('/') {
            return Err(format!("{url:?} has a path but is not allowed to"));
        }
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_string()),
            s => return Err(format!("invalid scheme {s:?} in {url:?}")),
        };
        let port = match port {
            "" => match scheme.as_deref().and_then(well_known_port) {
                Some(p) => Port::One(p),
                None => {
                    return Err(format!(
                        "{url:?} has no port and its scheme has no default port"
                    ));
                }
            },
            "*" => Port::Any,
            p => match p.split_once("..") {
                Some((a, b)) => {
                    let a = a.parse().map_err(|_| format!("invalid port range {p:?}"))?;
                    let b = b.parse().map_err(|_| format!("invalid port range {p:?}"))?;
                    Port::Range(a, b)
                }
                None => Port::One(p.parse().map_err(|_| format!("invalid port {p:?}"))?),
            },
        };
        let host = match host {
            "*" => Host::Any,
            "self" | "self.alt" => Host::ToSelf,
            h => {
                if let Some(domain) = h.strip_prefix("*.") {
                    if domain.contains('*') {
                        return Err(format!("{url:?}: wildcards are allowed only as prefixes"));
                    }
                    Host::Subdomain(format!(".{}", domain.to_ascii_lowercase()))
                } else if h.contains('*') {
                    return Err(format!("{url:?}: wildcards are allowed only as subdomains"));
                } else if h.is_empty() {
                    return Err(format!("{url:?} has no host"));
                } else {
                    Host::Literal(h.to_ascii_lowercase())
                }
            }
        };
        Ok(Self { scheme, host, port })
    }

    fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            Host::Any => true,
            Host::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            Host::ToSelf => false,
            Host::Literal(h) => *h == host,
        };
        let port = port.or_else(|| well_known_port(scheme));
        let port_ok = match (&self.port, port) {
            (Port::Any, _) => true,
            (Port::One(p), Some(got)) => *p == got,
            (Port::Range(a, b), Some(got)) => (*a..*b).contains(&got),
            (_, None) => false,
        };
        scheme_ok && host_ok && port_ok
    }
}

/// A component's resolved allow list.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

impl AllowedHosts {
    pub fn new(hosts: Vec<AllowedHost>) -> Self {
        Self { hosts }
    }

    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        self.hosts
            .iter()
            .any(|h| h.allows(scheme, host, uri.port_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], url: &str) -> bool {
        let hosts = entries
            .iter()
            .map(|e| AllowedHost::parse(e).unwrap())
            .collect();
        AllowedHosts::new(hosts).allows_uri(&url.parse().unwrap())
    }

    #[test]
    fn matching() {
        assert!(allows(
            &["http://127.0.0.1:8080"],
            "http://127.0.0.1:8080/x"
        ));
        assert!(!allows(
            &["http://127.0.0.1:8080"],
            "http://127.0.0.1:8081/x"
        ));
        assert!(!allows(
            &["http://127.0.0.1:8080"],
            "https://127.0.0.1:8080/x"
        ));
        assert!(allows(
            &["https://api.example.com"],
            "https://API.example.com/v2"
        ));
        assert!(!allows(
            &["https://api.example.com"],
            "https://api.example.com:8443/"
        ));
        assert!(allows(
            &["https://*.example.com"],
            "https://a.b.example.com/"
        ));
        assert!(!allows(&["https://*.example.com"], "https://example.com/"));
        assert!(allows(&["*://*:*"], "http://anything:1/"));
        assert!(allows(
            &["http://localhost:3000..3010"],
            "http://localhost:3005/"
        ));
        assert!(!allows(
            &["http://localhost:3000..3010"],
            "http://localhost:3010/"
        ));
        assert!(allows(
            &["http://localhost:8080/"],
            "http://localhost:8080/"
        ));
        assert!(!allows(&[], "http://localhost/"));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "*",
            "example.com",
            "http://a.com/path",
            "ftp://a.com",
            "http://a*.com",
            "1http://x",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad}");
        }
    }
}
