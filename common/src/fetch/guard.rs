//! Which addresses a fetch may reach. The check runs on the URL's literal address and on every
//! address a host name resolves to, before a socket is opened, so a refused request never
//! sends a packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::FetchError;

/// What private addresses may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Public addresses only (the default).
    #[default]
    PublicOnly,
    /// Public addresses and exactly this one address and port, written as a literal address in
    /// the URL (local mode: `serve`'s own example WAF). A host name never gets the exception:
    /// the resolver sees no port.
    PublicAnd(SocketAddr),
    /// Everything, private ranges included (`SHEAF_ALLOW_PRIVATE_URLS=true`).
    AllowPrivate,
}

/// What a refusal tells the person who configured the URL.
const HOW_TO_ALLOW: &str = "SHEAF_ALLOW_PRIVATE_URLS=true allows private and loopback addresses";

fn v4_is_loopback(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
}

/// Private, link-local, shared, reserved or otherwise not a public unicast address.
fn v4_is_private(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

fn v6_is_private(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// Refuses `ip` under `policy`; `Ok` means it may be connected to.
pub fn check_ip(ip: IpAddr, policy: AddressPolicy) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let (loopback, private) = match ip {
        IpAddr::V4(v4) => (v4_is_loopback(v4), v4_is_private(v4)),
        IpAddr::V6(v6) => (v6.is_loopback(), v6_is_private(v6)),
    };
    let allowed = match policy {
        AddressPolicy::AllowPrivate => true,
        // The one exception is decided by `check_url`, which knows the port.
        AddressPolicy::PublicOnly | AddressPolicy::PublicAnd(_) => !private && !loopback,
    };
    if allowed {
        Ok(())
    } else if loopback {
        Err(format!("{ip} is a loopback address ({HOW_TO_ALLOW})"))
    } else {
        Err(format!(
            "{ip} is a private or link-local address ({HOW_TO_ALLOW})"
        ))
    }
}

/// The policy's one allowed address, when `ip` and `port` are it.
fn is_the_exception(ip: IpAddr, port: Option<u16>, policy: AddressPolicy) -> bool {
    matches!(policy, AddressPolicy::PublicAnd(allowed) if allowed.ip() == ip && Some(allowed.port()) == port)
}

/// Parses `url` and refuses other schemes and literal addresses the policy forbids. Host names
/// are checked again, address by address, when they are resolved.
pub fn check_url(url: &str, policy: AddressPolicy) -> Result<url::Url, FetchError> {
    let parsed = url::Url::parse(url).map_err(|e| FetchError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl {
            url: url.to_string(),
            reason: format!("scheme {} is not http or https", parsed.scheme()),
        });
    }
    let refuse = |reason: String| FetchError::Refused {
        url: url.to_string(),
        reason,
    };
    let port = parsed.port_or_known_default();
    let literal = |ip: IpAddr| {
        if is_the_exception(ip, port, policy) {
            Ok(())
        } else {
            check_ip(ip, policy).map_err(refuse)
        }
    };
    match parsed.host() {
        None => Err(FetchError::InvalidUrl {
            url: url.to_string(),
            reason: "no host".into(),
        }),
        Some(url::Host::Ipv4(ip)) => literal(IpAddr::V4(ip)).map(|_| parsed),
        Some(url::Host::Ipv6(ip)) => literal(IpAddr::V6(ip)).map(|_| parsed),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let local_name = name == "localhost" || name.ends_with(".localhost");
            if local_name && policy != AddressPolicy::AllowPrivate {
                Err(refuse(format!(
                    "{name} is a loopback name ({HOW_TO_ALLOW})"
                )))
            } else {
                Ok(parsed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_link_local_and_loopback_are_refused_by_default() {
        for url in [
            "http://10.0.0.1/waf/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://localhost/",
        ] {
            assert!(
                matches!(
                    check_url(url, AddressPolicy::PublicOnly),
                    Err(FetchError::Refused { .. })
                ),
                "{url} not refused"
            );
        }
        assert!(check_url("http://93.184.216.34/", AddressPolicy::PublicOnly).is_ok());
        assert!(check_url("https://example.org/waf/", AddressPolicy::PublicOnly).is_ok());
    }

    #[test]
    fn the_one_exception_is_exactly_its_address_and_port() {
        let example = AddressPolicy::PublicAnd("127.0.0.1:8765".parse().unwrap());
        assert!(check_url("http://127.0.0.1:8765/examples/waf/", example).is_ok());
        for url in [
            "http://127.0.0.1:8766/",
            "http://127.0.0.1/",
            "http://127.0.0.2:8765/",
            "http://localhost:8765/",
            "http://[::1]:8765/",
            "http://169.254.169.254/",
            "http://10.1.2.3:8765/",
        ] {
            let refused = check_url(url, example);
            assert!(
                matches!(&refused, Err(FetchError::Refused { reason, .. }) if reason.contains("SHEAF_ALLOW_PRIVATE_URLS")),
                "{url}: {refused:?}"
            );
        }
        assert!(check_url("https://example.org/waf/", example).is_ok());
        assert!(check_url("http://10.1.2.3/", AddressPolicy::AllowPrivate).is_ok());
        assert!(check_url("http://localhost:5432/", AddressPolicy::AllowPrivate).is_ok());
    }

    #[test]
    fn other_schemes_are_invalid() {
        for url in [
            "file:///etc/passwd",
            "ftp://example.org/",
            "gopher://x/",
            "not a url",
        ] {
            assert!(
                matches!(
                    check_url(url, AddressPolicy::AllowPrivate),
                    Err(FetchError::InvalidUrl { .. })
                ),
                "{url}"
            );
        }
    }
}
