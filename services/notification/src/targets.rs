//! Where webhooks may go. Under `serve`, loopback and private networks are refused unless
//! configured, so a merchant cannot point the platform at its own internals; `dev` allows
//! loopback so a merchant can receive webhooks on their own machine. The check runs on the
//! URL at registration and again on every resolved address at send time (a name that
//! later resolves inward is still refused).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Which non-public networks webhooks may reach; what counts as which is
/// [`payloom_egress::reach`], shared with plugins' outbound HTTP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TargetPolicy {
    /// 127.0.0.0/8 and ::1.
    pub allow_loopback: bool,
    /// RFC 1918, link-local, carrier-grade NAT, unique-local and other private ranges.
    /// Reserved blocks (documentation, multicast, unspecified, …) are never reachable.
    pub allow_private: bool,
}

/// Why a target is refused, in words that do not say where a name pointed: a merchant
/// must not learn the platform's internal addresses by registering names.
const REFUSED: &str = "url must point to a public address";

impl TargetPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        payloom_egress::Policy {
            allow_loopback: self.allow_loopback,
            allow_private: self.allow_private,
        }
        .permits(ip)
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
            Some(refused) => {
                // The operator may see where it pointed; the merchant may not.
                tracing::info!(host, address = %refused.ip(), "webhook target refused");
                Err(REFUSED.into())
            }
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
                // The attempt's error is shown with the delivery log; the address is not.
                tracing::info!(host, address = %refused.ip(), "webhook target refused");
                return Err(format!("{host} does not resolve to a public address").into());
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
            "64:ff9b::a00:5",
            "2002:a00:5::",
            "fec0::1",
            "::10.0.0.5",
            "198.18.0.1",
            "240.0.0.1",
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

    #[tokio::test]
    async fn a_refused_name_does_not_say_where_it_points() {
        let strict = TargetPolicy::default();
        let url = url::Url::parse("http://localhost:9/hook").unwrap();
        let refused = strict.check(&url).await.unwrap_err();
        assert_eq!(refused, REFUSED);
        let dev = TargetPolicy {
            allow_loopback: true,
            allow_private: false,
        };
        assert_eq!(dev.check(&url).await, Ok(()));
    }
}
