//! `http`: outbound requests to the manifest's allow-list only, with private networks
//! blocked on the resolved address, no redirects, timeouts and a response byte cap.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::bindings::imports::payloom::plugin::http::{self, Error, Request, Response};
use crate::bindings::imports::payloom::plugin::types::KeyValue;
use crate::state::CallState;

/// One allow-list entry: `scheme://host[:port]`; the host may start with `*.` and the
/// port may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: String,
    host: String,
    port: PortRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// No port given: the scheme's default only.
    Default,
    Exact(u16),
    Any,
}

impl AllowedHost {
    /// Parses an entry; only http and https are allowed schemes.
    pub fn parse(entry: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = entry.split_once("://").ok_or_else(|| {
            anyhow::anyhow!("allowed host {entry:?} must look like https://host[:port]")
        })?;
        anyhow::ensure!(
            matches!(scheme, "http" | "https"),
            "allowed host {entry:?}: scheme must be http or https"
        );
        anyhow::ensure!(
            !rest.contains('/'),
            "allowed host {entry:?} must not have a path"
        );
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, PortRule::Any),
            Some((host, port)) if !rest.starts_with('[') || host.ends_with(']') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| anyhow::anyhow!("allowed host {entry:?}: bad port"))?;
                (host, PortRule::Exact(port))
            }
            _ => (rest, PortRule::Default),
        };
        anyhow::ensure!(!host.is_empty(), "allowed host {entry:?} has no host");
        Ok(Self {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        };
        let port_ok = match self.port {
            PortRule::Exact(port) => url.port_or_known_default() == Some(port),
            PortRule::Default => url.port().is_none(),
            PortRule::Any => true,
        };
        url.scheme() == self.scheme && host_ok && port_ok
    }
}

/// What `http.send` may reach besides public addresses: loopback and private networks
/// together, when the operator allows them. Reserved blocks never. The classification is
/// [`payloom_egress::reach`], shared with webhook targets.
fn egress_policy(allow_private: bool) -> payloom_egress::Policy {
    payloom_egress::Policy {
        allow_loopback: allow_private,
        allow_private,
    }
}

/// Resolves names and drops private addresses, so DNS cannot point a plugin inward.
struct FilteringResolver {
    allow_private: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| egress_policy(allow_private).permits(a.ip()))
                .collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("{} resolves only to blocked addresses", name.as_str()).into();
                return Err(err);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Where `http.send` goes once the allow-list passed: the network, or recorded exchanges
/// in the plugin runner.
#[async_trait::async_trait]
pub trait Outbound: Send + Sync {
    /// Sends `req` (already allow-listed), finishing before `deadline`.
    async fn send(&self, req: Request, deadline: tokio::time::Instant) -> Result<Response, Error>;
}

/// Checks a request's URL against a plugin's allow-list.
pub fn check_allowed(url: &str, allowed: &[AllowedHost]) -> Result<Url, Error> {
    let url = Url::parse(url).map_err(|e| Error::InvalidRequest(format!("url: {e}")))?;
    if !allowed.iter().any(|a| a.matches(&url)) {
        return Err(Error::Denied(format!(
            "{} is not on the plugin's allow-list",
            origin(&url)
        )));
    }
    Ok(url)
}

/// The outbound client shared by every call.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    allow_private: bool,
    response_bytes_max: usize,
    request_bytes_max: usize,
}

impl HttpClient {
    /// A client; `allow_private` lets plugins reach loopback and private networks.
    pub fn new(
        allow_private: bool,
        request_bytes_max: usize,
        response_bytes_max: usize,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // A redirect could leave the allow-list; the plugin sees the 3xx instead.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself, past the resolver's check.
            .no_proxy()
            .dns_resolver(Arc::new(FilteringResolver { allow_private }))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            allow_private,
            response_bytes_max,
            request_bytes_max,
        })
    }

    fn check_address(&self, url: &Url) -> Result<(), Error> {
        // Literal addresses skip the resolver, so check them here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        match literal {
            Some(ip) if !egress_policy(self.allow_private).permits(ip) => Err(Error::Denied(
                format!("{ip} is a private, loopback or reserved address"),
            )),
            _ => Ok(()),
        }
    }

    /// A client with the limits and private-network setting of `config`.
    pub fn from_config(config: &crate::HostConfig) -> anyhow::Result<Self> {
        let bytes = &config.bytes;
        Self::new(
            config.http_allow_private,
            bytes.http_request_max,
            bytes.http_response_max,
        )
    }

    async fn send_checked(
        &self,
        req: Request,
        deadline: tokio::time::Instant,
    ) -> Result<Response, Error> {
        let url = Url::parse(&req.url).map_err(|e| Error::InvalidRequest(format!("url: {e}")))?;
        self.check_address(&url)?;
        if req.body.len() > self.request_bytes_max {
            return Err(Error::InvalidRequest(format!(
                "body exceeds {} bytes",
                self.request_bytes_max
            )));
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| Error::InvalidRequest(format!("method {:?}", req.method)))?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let timeout = req.timeout_ms.map_or(remaining, |ms| {
            remaining.min(Duration::from_millis(ms.into()))
        });
        let mut builder = self
            .client
            .request(method, url)
            .timeout(timeout)
            .body(req.body);
        for KeyValue { key, value } in req.headers {
            builder = builder.header(key, value);
        }
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect();
        let body = self.read_capped(response).await?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, Error> {
        if response
            .content_length()
            .is_some_and(|n| n > self.response_bytes_max as u64)
        {
            return Err(Error::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > self.response_bytes_max {
                return Err(Error::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[async_trait::async_trait]
impl Outbound for HttpClient {
    async fn send(&self, req: Request, deadline: tokio::time::Instant) -> Result<Response, Error> {
        self.send_checked(req, deadline).await
    }
}

fn origin(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""))
        + &url.port().map(|p| format!(":{p}")).unwrap_or_default()
}

fn transport_error(err: reqwest::Error) -> Error {
    if err.is_timeout() {
        return Error::Timeout;
    }
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        message = format!("{message}: {inner}");
        source = inner.source();
    }
    if message.contains("blocked addresses") {
        return Error::Denied(message);
    }
    Error::Transport(message)
}

impl http::Host for CallState {
    async fn send(&mut self, req: Request) -> Result<Response, Error> {
        check_allowed(&req.url, &self.plugin.allowed_hosts)?;
        match &self.ctx.outbound {
            Some(outbound) => outbound.send(req, self.deadline).await,
            None => self.services.http.send(req, self.deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_scheme_host_and_port() {
        let exact = AllowedHost::parse("https://api.psp.test").unwrap();
        let wild = AllowedHost::parse("http://*.psp.test:8080").unwrap();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(exact.matches(&url("https://api.psp.test/v1/pay")));
        assert!(exact.matches(&url("https://API.psp.test:443/")));
        assert!(!exact.matches(&url("http://api.psp.test/")));
        assert!(!exact.matches(&url("https://api.psp.test.evil/")));
        assert!(!exact.matches(&url("https://api.psp.test:8443/")));
        assert!(wild.matches(&url("http://a.psp.test:8080/")));
        assert!(!wild.matches(&url("http://psp.test:8080/")));
        assert!(!wild.matches(&url("http://a.psp.test/")));
        let any_port = AllowedHost::parse("http://127.0.0.1:*").unwrap();
        assert!(any_port.matches(&url("http://127.0.0.1:9/")));
        assert!(!any_port.matches(&url("https://127.0.0.1:9/")));
        assert!(AllowedHost::parse("ftp://x").is_err());
        assert!(AllowedHost::parse("https://x/path").is_err());
    }

    #[test]
    fn private_networks_open_only_when_allowed_and_reserved_blocks_never() {
        let closed = egress_policy(false);
        let open = egress_policy(true);
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "100.100.100.200",
            "198.18.0.1",
            "::1",
            "fd00:ec2::254",
            "64:ff9b::a00:5",
            "2002:a00:5::",
            "fec0::1",
        ] {
            let ip = ip.parse().unwrap();
            assert!(!closed.permits(ip) && open.permits(ip), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "192.0.2.1",
        ] {
            let ip = ip.parse().unwrap();
            assert!(!closed.permits(ip) && !open.permits(ip), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::808:808"] {
            let ip = ip.parse().unwrap();
            assert!(closed.permits(ip) && open.permits(ip), "{ip}");
        }
    }
}
