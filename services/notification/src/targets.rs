//! Where webhooks may go. Under `serve`, loopback and private networks are refused unless
//! configured, so a merchant cannot point the platform at its own internals; `dev` allows
//! loopback so a merchant can receive webhooks on their own machine. The check runs on the
//! URL at registration and again on every resolved address at send time (a name that
//! later resolves inward is still refused).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TargetPolicy {
    /// 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// RFC 1918, link-local, carrier-grade NAT, unique-local and other non-public ranges.
    pub allow_private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Loopback,
    Private,
    Public,
}

fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Reach::Loopback
            } else if v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
            {
                Reach::Private
            } else {
                Reach::Public
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reach(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Reach::Loopback
            } else if v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
            {
                Reach::Private
            } else {
                Reach::Public
            }
        }
    }
}

impl TargetPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        match reach(ip) {
            Reach::Public => true,
            Reach::Loopback => self.allow_loopback,
            Reach::Private => self.allow_private,
        }
    }

    /// A webhook URL's shape: http(s), a host, no credentials in it.
    pub fn parse(&self, text: &str) -> Result<url::Url, String> {
        if text.len() > 2048 {
            return Err("url must be at most 2048 characters".into());
        }
        let url = url::Url::parse(text).map_err(|e| format!("url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("url must be http or https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url must not carry credentials".into());
        }
        if url.host().is_none() {
            return Err("url needs a host".into());
        }
        Ok(url)
    }

    /// Resolves `url`'s host and refuses it when any address is not permitted.
    pub async fn check(&self, url: &url::Url) -> Result<(), String> {
        let host = url.host_str().ok_or("url needs a host")?;
        let port = url.port_or_known_default().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| format!("{host} does not resolve: {e}"))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(format!("{host} does not resolve"));
        }
        match addrs.iter().find(|a| !self.permits(a.ip())) {
            Some(refused) => Err(format!(
                "{host} resolves to {}, which webhooks may not reach",
                refused.ip()
            )),
            None => Ok(()),
        }
    }
}

/// The resolver of the delivery client: names resolving to a refused address fail to
/// connect, whatever they resolved to when the endpoint was registered.
pub struct GuardedResolver(pub TargetPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(refused) = addrs.iter().find(|a| !policy.permits(a.ip())) {
                let message = format!(
                    "{host} resolves to {}, which webhooks may not reach",
                    refused.ip()
                );
                return Err(message.into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_private_ranges_are_refused_unless_allowed() {
        let strict = TargetPolicy::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
        ] {
            assert!(!strict.permits(ip.parse().unwrap()), "{ip}");
        }
        assert!(strict.permits("93.184.216.34".parse().unwrap()));
        let dev = TargetPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert!(dev.permits("127.0.0.1".parse().unwrap()));
        assert!(!dev.permits("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        let p = TargetPolicy::default();
        assert!(p.parse("https://example.com/hook").is_ok());
        assert!(p.parse("ftp://example.com").is_err());
        assert!(p.parse("https://user:pw@example.com").is_err());
        assert!(p.parse("not a url").is_err());
    }
}
