//! Where webhooks may send: the SSRF guard, in one place for both sides. The API checks a
//! webhook's URL when it is created ([`check_url`]: scheme, credentials, and the host as
//! written — a literal address or a name, without DNS, which a Wasm component cannot do); the
//! workflows check the host name again and every address it resolves to, right before
//! connecting ([`check_name`], [`check_ip`]). No I/O here.
//!
//! Refused unless an operator allows them: loopback, private (RFC 1918), shared address space
//! (CGNAT, 100.64/10), link-local, unique-local IPv6, multicast, unspecified, broadcast,
//! documentation and other reserved ranges, IPv4 embedded in IPv6 (mapped, NAT64, 6to4) when
//! the IPv4 address is refused, and names that only mean something inside a network
//! (`localhost`, `*.localhost`, `*.local`, `*.internal`, `*.home.arpa`, `*.localdomain`,
//! single-label names). Cloud metadata endpoints (169.254.169.254, fd00:ec2::254,
//! metadata.google.internal …) are refused even when allowed: no webhook has a reason to reach
//! them.
//!
//! The allow list ([`AllowList`]) is one format on both sides: a comma list of host names
//! (exact, case-insensitive) and addresses or CIDRs (`127.0.0.1`, `10.0.0.0/8`, `fd00::/8`).
//! An allowed name is trusted with whatever it resolves to; an allowed CIDR admits the
//! addresses inside it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why an address or a name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    Loopback,
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT).
    SharedAddressSpace,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Unspecified,
    Broadcast,
    Documentation,
    Reserved,
    /// A cloud provider's instance metadata service: never allowed.
    CloudMetadata,
    /// A name that only resolves inside a network (`localhost`, `*.internal`, single labels …).
    LocalName,
}

impl Blocked {
    pub fn describe(self) -> &'static str {
        match self {
            Blocked::Loopback => "a loopback address",
            Blocked::Private => "a private address",
            Blocked::SharedAddressSpace => "a shared (CGNAT, 100.64.0.0/10) address",
            Blocked::LinkLocal => "a link-local address",
            Blocked::UniqueLocal => "a unique-local IPv6 address",
            Blocked::Multicast => "a multicast address",
            Blocked::Unspecified => "an unspecified address",
            Blocked::Broadcast => "the broadcast address",
            Blocked::Documentation => "a documentation address",
            Blocked::Reserved => "a reserved address",
            Blocked::CloudMetadata => "a cloud metadata endpoint",
            Blocked::LocalName => "a name local to a network",
        }
    }
}

/// A refused host or address, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The URL's host as written.
    pub host: String,
    /// The refused address, when the host is a name that resolved to it.
    pub resolved: Option<IpAddr>,
    pub why: Blocked,
}

impl Refused {
    /// The refusal and, unless nothing can allow it, the setting that would (its name differs
    /// between the API's Spin variable and the workflows' environment variable).
    pub fn message(&self, setting: &str) -> String {
        let advice = if self.why == Blocked::CloudMetadata {
            String::new()
        } else {
            format!(" (an operator may allow it in {setting})")
        };
        format!("{self}{advice}")
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resolved {
            Some(ip) => write!(
                f,
                "host {} resolves to {ip}, {}, which webhooks may not reach",
                self.host,
                self.why.describe()
            ),
            None => write!(
                f,
                "host {} is {}, which webhooks may not reach",
                self.host,
                self.why.describe()
            ),
        }
    }
}

impl std::error::Error for Refused {}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, len: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
    ))
}

/// Cloud metadata endpoints: AWS, GCP, Azure, DigitalOcean, OpenStack (169.254.169.254), AWS
/// ECS task metadata (169.254.170.2), Alibaba (100.100.100.200), AWS over IPv6 (fd00:ec2::254).
const METADATA_ADDRESSES: &[IpNet] = &[
    v4(169, 254, 169, 254, 32),
    v4(169, 254, 170, 2, 32),
    v4(100, 100, 100, 200, 32),
    v6(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254, 128),
];

/// Metadata services by name (GCP's two, AWS's).
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "instance-data.ec2.internal",
];

/// Address ranges refused unless allowed, with why (IANA special-purpose registries).
const BLOCKED: &[(IpNet, Blocked)] = &[
    (v4(0, 0, 0, 0, 8), Blocked::Unspecified),
    (v4(10, 0, 0, 0, 8), Blocked::Private),
    (v4(100, 64, 0, 0, 10), Blocked::SharedAddressSpace),
    (v4(127, 0, 0, 0, 8), Blocked::Loopback),
    (v4(169, 254, 0, 0, 16), Blocked::LinkLocal),
    (v4(172, 16, 0, 0, 12), Blocked::Private),
    (v4(192, 0, 0, 0, 24), Blocked::Reserved),
    (v4(192, 0, 2, 0, 24), Blocked::Documentation),
    (v4(192, 88, 99, 0, 24), Blocked::Reserved),
    (v4(192, 168, 0, 0, 16), Blocked::Private),
    (v4(198, 18, 0, 0, 15), Blocked::Reserved),
    (v4(198, 51, 100, 0, 24), Blocked::Documentation),
    (v4(203, 0, 113, 0, 24), Blocked::Documentation),
    (v4(224, 0, 0, 0, 4), Blocked::Multicast),
    (v4(255, 255, 255, 255, 32), Blocked::Broadcast),
    (v4(240, 0, 0, 0, 4), Blocked::Reserved),
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 128), Blocked::Unspecified),
    (v6(0, 0, 0, 0, 0, 0, 0, 1, 128), Blocked::Loopback),
    (v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48), Blocked::Private),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64), Blocked::Reserved),
    // Teredo hides the addresses it tunnels to.
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32), Blocked::Reserved),
    (
        v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32),
        Blocked::Documentation,
    ),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20), Blocked::Documentation),
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7), Blocked::UniqueLocal),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10), Blocked::LinkLocal),
    (v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10), Blocked::Reserved),
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8), Blocked::Multicast),
];

/// Name suffixes that only resolve inside a network (RFC 6761, RFC 6762, RFC 8375, ICANN's
/// `.internal`), and `localhost` itself.
const LOCAL_SUFFIXES: &[&str] = &[
    ".localhost",
    ".local",
    ".internal",
    ".home.arpa",
    ".localdomain",
];

/// Hosts and networks an operator lets webhooks reach despite the guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    names: Vec<String>,
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Parses `"127.0.0.1, hooks.corp.example, 10.0.0.0/8"`: host names, addresses and CIDRs,
    /// comma-separated; blanks are ignored. A malformed entry is an error naming it.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allow = AllowList::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<IpNet>() {
                allow.nets.push(net.trunc());
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                allow.nets.push(IpNet::from(ip));
            } else if is_host_name(entry) {
                allow.names.push(normalise_name(entry));
            } else {
                return Err(format!(
                    "'{entry}' is neither a host name nor an address or CIDR"
                ));
            }
        }
        Ok(allow)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.nets.is_empty()
    }

    /// Whether this host name is allowed by name.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = normalise_name(name);
        self.names.contains(&name)
    }

    /// Whether this address is inside an allowed network.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

impl std::str::FromStr for AllowList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AllowList::parse(s)
    }
}

fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Letters, digits, `-` and `.` (the url crate has already turned international names into
/// their ASCII form).
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.starts_with(['.', '-'])
}

/// An IPv4 address carried in an IPv6 one, as mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(low) > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// The address to judge: an IPv4 address mapped into IPv6 is judged as IPv4 (what the socket
/// actually reaches).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why this address is refused, if it is (the allow list aside).
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    let ip = canonical(ip);
    if METADATA_ADDRESSES.iter().any(|n| n.contains(&ip)) {
        return Some(Blocked::CloudMetadata);
    }
    if let Some(b) = BLOCKED
        .iter()
        .find(|(n, _)| n.contains(&ip))
        .map(|(_, b)| *b)
    {
        return Some(b);
    }
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).and_then(|v4| classify(IpAddr::V4(v4))),
        IpAddr::V4(_) => None,
    }
}

/// An address (a URL's literal host, or what a name resolved to): refused unless it is public
/// or allowed. `host` is the URL's host, for the message.
pub fn check_ip(host: &str, ip: IpAddr, resolved: bool, allow: &AllowList) -> Result<(), Refused> {
    match classify(ip) {
        None => Ok(()),
        Some(b) if b != Blocked::CloudMetadata && allow.allows_ip(ip) => Ok(()),
        Some(why) => Err(Refused {
            host: host.to_owned(),
            resolved: resolved.then_some(ip),
            why,
        }),
    }
}

/// What to do with a host name after its own check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameCheck {
    /// Allowed by name: trust whatever it resolves to.
    Trusted,
    /// Resolve it and check every address ([`check_ip`]).
    CheckAddresses,
}

/// A host name, before any DNS: metadata names are refused, names local to a network are
/// refused unless allowed by name.
pub fn check_name(name: &str, allow: &AllowList) -> Result<NameCheck, Refused> {
    let n = normalise_name(name);
    let refused = |why| Refused {
        host: name.to_owned(),
        resolved: None,
        why,
    };
    if METADATA_NAMES.contains(&n.as_str()) {
        return Err(refused(Blocked::CloudMetadata));
    }
    if allow.allows_name(&n) {
        return Ok(NameCheck::Trusted);
    }
    if n == "localhost" {
        return Err(refused(Blocked::Loopback));
    }
    if !n.contains('.') || LOCAL_SUFFIXES.iter().any(|s| n.ends_with(s)) {
        return Err(refused(Blocked::LocalName));
    }
    Ok(NameCheck::CheckAddresses)
}

/// A URL's host, as the url crate parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

/// Why a webhook URL is refused (the API answers it as a 400 on `url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    Malformed(String),
    Scheme(String),
    Credentials,
    Refused(Refused),
}

impl UrlError {
    /// The message, naming `setting` where the allow list could help.
    pub fn message(&self, setting: &str) -> String {
        match self {
            UrlError::Malformed(e) => format!("is not a valid URL: {e}"),
            UrlError::Scheme(s) => format!("scheme '{s}' is not allowed: use http or https"),
            UrlError::Credentials => {
                "must not carry credentials (user:password@): they would be shown in listings"
                    .into()
            }
            UrlError::Refused(r) => r.message(setting),
        }
    }
}

/// Parses a webhook URL and checks what can be checked without DNS: http or https, no
/// credentials, and its host ([`check_ip`] for a literal address, [`check_name`] for a name).
/// Returns the host to connect to.
pub fn check_url(url: &str, allow: &AllowList) -> Result<Host, UrlError> {
    let u = url::Url::parse(url).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(u.scheme().to_owned()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = url_host(&u).ok_or_else(|| UrlError::Malformed("no host".into()))?;
    match &host {
        Host::Ip(ip) => check_ip(&ip.to_string(), *ip, false, allow),
        Host::Name(n) => check_name(n, allow).map(drop),
    }
    .map_err(UrlError::Refused)?;
    Ok(host)
}

/// The host of a parsed URL (the url crate normalises numeric IPv4 forms such as
/// `http://2130706433/` to `127.0.0.1`).
pub fn url_host(u: &url::Url) -> Option<Host> {
    Some(match u.host()? {
        url::Host::Domain(d) => Host::Name(d.to_owned()),
        url::Host::Ipv4(ip) => Host::Ip(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Host::Ip(IpAddr::V6(ip)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified() {
        use Blocked::*;
        for (addr, want) in [
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("2606:4700:4700::1111", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.0.0.2", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("100.128.0.1", None),
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(CloudMetadata)),
            ("169.254.170.2", Some(CloudMetadata)),
            ("100.100.100.200", Some(CloudMetadata)),
            ("0.0.0.0", Some(Unspecified)),
            ("224.0.0.1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("192.0.2.10", Some(Documentation)),
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(CloudMetadata)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            // IPv4 inside IPv6 is judged as the IPv4 address it reaches.
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(CloudMetadata)),
            ("::ffff:8.8.8.8", None),
            ("::10.0.0.1", Some(Private)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:c0a8:0101::1", Some(Private)),
            ("2002:0808:0808::1", None),
        ] {
            assert_eq!(classify(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn the_allow_list_admits_what_it_names_but_never_metadata() {
        let allow = AllowList::parse(" 127.0.0.1 , hooks.Corp.example., 10.0.0.0/8,[::1],fd00::/8")
            .unwrap();
        let ok = |a: &str| check_ip("h", ip(a), true, &allow).is_ok();
        assert!(ok("127.0.0.1") && ok("::ffff:127.0.0.1") && ok("10.9.8.7") && ok("::1"));
        assert!(!ok("127.0.0.2"), "only the allowed address of 127/8");
        assert!(!ok("192.168.0.1"));
        assert!(
            !ok("fd00:ec2::254"),
            "metadata stays refused inside an allowed CIDR"
        );
        assert!(ok("8.8.8.8"));
        assert_eq!(
            check_name("HOOKS.corp.example", &allow),
            Ok(NameCheck::Trusted)
        );
        assert_eq!(
            check_name("example.com", &allow),
            Ok(NameCheck::CheckAddresses)
        );
        assert!(AllowList::parse("").unwrap().is_empty());
        for bad in ["not a host", "10.0.0.0/33", "http://x"] {
            let e = AllowList::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn names_local_to_a_network_are_refused_without_dns() {
        let none = AllowList::default();
        for (name, why) in [
            ("localhost", Blocked::Loopback),
            ("LOCALHOST.", Blocked::Loopback),
            ("api.localhost", Blocked::LocalName),
            ("printer.local", Blocked::LocalName),
            ("db.internal", Blocked::LocalName),
            ("router.home.arpa", Blocked::LocalName),
            ("redis", Blocked::LocalName),
            ("metadata.google.internal", Blocked::CloudMetadata),
            ("metadata.goog", Blocked::CloudMetadata),
        ] {
            assert_eq!(
                check_name(name, &none).map_err(|r| r.why),
                Err(why),
                "{name}"
            );
        }
        let allow = AllowList::parse("redis, metadata.google.internal").unwrap();
        assert_eq!(check_name("redis", &allow), Ok(NameCheck::Trusted));
        assert_eq!(
            check_name("metadata.google.internal", &allow).map_err(|r| r.why),
            Err(Blocked::CloudMetadata)
        );
    }

    #[test]
    fn urls_are_checked_as_written() {
        let allow = AllowList::parse("127.0.0.1").unwrap();
        let refused = |u: &str| match check_url(u, &allow) {
            Err(UrlError::Refused(r)) => Some(r.why),
            Err(e) => panic!("{u}: {e:?}"),
            Ok(_) => None,
        };
        assert_eq!(refused("https://hooks.example.com/x?y=1"), None);
        assert_eq!(refused("http://127.0.0.1:8080/hook"), None);
        assert_eq!(
            refused("http://127.0.0.2:8080/hook"),
            Some(Blocked::Loopback)
        );
        assert_eq!(
            refused("http://169.254.169.254/latest/meta-data/"),
            Some(Blocked::CloudMetadata)
        );
        assert_eq!(
            refused("http://[fd00:ec2::254]/"),
            Some(Blocked::CloudMetadata)
        );
        assert_eq!(
            refused("http://metadata.google.internal/"),
            Some(Blocked::CloudMetadata)
        );
        assert_eq!(refused("http://10.0.0.1/"), Some(Blocked::Private));
        assert_eq!(refused("http://[::ffff:10.0.0.1]/"), Some(Blocked::Private));
        // Numeric forms of an IPv4 host are normalised before the check.
        assert_eq!(refused("http://2130706434/"), Some(Blocked::Loopback));
        assert_eq!(refused("http://0x7f.0.0.2/"), Some(Blocked::Loopback));
        assert_eq!(refused("http://localhost:3000/"), Some(Blocked::Loopback));
        assert!(matches!(
            check_url("ftp://example.com/", &allow),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("file:///etc/passwd", &allow),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            check_url("https://u:p@example.com/", &allow),
            Err(UrlError::Credentials)
        ));
        assert!(matches!(
            check_url("not a url", &allow),
            Err(UrlError::Malformed(_))
        ));
        let m = check_url("http://10.0.0.1/", &allow)
            .unwrap_err()
            .message("webhook_allow_hosts");
        assert!(
            m.contains("10.0.0.1") && m.contains("private") && m.contains("webhook_allow_hosts"),
            "{m}"
        );
    }
}
