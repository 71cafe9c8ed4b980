//! Mutual TLS between the processes of `serve`. Every service holds a certificate from
//! the deployment's own CA (`payloom certs init`); its internal listener accepts only
//! clients that present one, and learns from it which service is calling. The calling
//! side presents its own certificate and trusts nothing but that CA.
//!
//! A service's identity is the DNS name `<service>.payment-network` in its certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The domain every service's identity name lives under, as in the origin's compose network.
pub const NETWORK_DOMAIN: &str = "payment-network";

/// How long a client may take to finish its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of one service's identity in a certificates folder.
pub fn files(dir: &Path, service: &str) -> [PathBuf; 3] {
    [
        dir.join("ca.pem"),
        dir.join(format!("{service}.pem")),
        dir.join(format!("{service}.key")),
    ]
}

/// One service's certificate and key, and the CA it trusts.
#[derive(Clone)]
pub struct ServiceIdentity {
    pub service: String,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl std::fmt::Debug for ServiceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIdentity")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ServiceIdentity {
    /// `service`'s identity from `dir`, as `payloom certs init` lays it out.
    pub fn load(dir: &Path, service: &str) -> anyhow::Result<Self> {
        let [ca, cert, key] = files(dir, service);
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| {
                format!(
                    "reading {} (create the certificates with `payloom certs init`)",
                    path.display()
                )
            })
        };
        let identity = Self {
            service: service.to_owned(),
            ca_pem: read(&ca)?,
            cert_pem: read(&cert)?,
            key_pem: read(&key)?,
        };
        let presented = identity_of(&identity.cert()?[0]);
        anyhow::ensure!(
            presented.as_deref() == Some(service),
            "{} names {presented:?}, not {service}",
            cert.display()
        );
        Ok(identity)
    }

    /// The deployment's CA certificate (PEM).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// Signs the events this service produces with its certificate's key.
    pub fn event_signer(&self) -> anyhow::Result<crate::provenance::EventSigner> {
        crate::provenance::EventSigner::from_pem(&self.service, &self.cert_pem, &self.key_pem)
    }

    fn cert(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("parsing the service certificate")
    }

    fn roots(&self) -> anyhow::Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots
                .add(ca.context("parsing the CA certificate")?)
                .context("adding the CA certificate")?;
        }
        Ok(roots)
    }

    /// A server that requires a client certificate from this deployment's CA.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .context("building the client certificate verifier")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).context("parsing the key")?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert()?, key)
            .context("the service certificate and key do not match")?;
        Ok(Arc::new(config))
    }

    /// An HTTP client that presents this identity and trusts only this deployment's CA.
    pub fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut pem = self.cert_pem.clone();
        pem.extend_from_slice(&self.key_pem);
        let identity = reqwest::Identity::from_pem(&pem).context("the service identity")?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .https_only(true)
            .identity(identity);
        for ca in reqwest::Certificate::from_pem_bundle(&self.ca_pem)? {
            builder = builder.add_root_certificate(ca);
        }
        Ok(builder)
    }
}

/// The service a certificate names: its `<service>.payment-network` DNS name.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<String> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    parsed.valid_dns_names().find_map(|name| {
        name.strip_suffix(NETWORK_DOMAIN)
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|service| !service.is_empty() && !service.contains('.'))
            .map(str::to_owned)
    })
}

/// Who is on the other end of an internal connection: its address and, from its
/// verified certificate, the service it is.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub service: Option<String>,
}

/// A listener whose connections have all completed a mutual TLS handshake. Handshakes
/// run concurrently, each with a deadline, so a slow client holds up no one else.
pub struct MtlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl MtlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (stream, addr) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        tracing::warn!(error = %err, "internal listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match shake.await {
                        Ok(Ok(tls)) => {
                            let service = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(identity_of);
                            let _ = tx.send((tls, Peer { addr, service })).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%addr, error = %err, "handshake refused"),
                        Err(_) => tracing::debug!(%addr, "handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for MtlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            service: None,
        })
    }
}

impl Connected<IncomingStream<'_, MtlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, MtlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}
