//! Mutual TLS for every connection: rustls with the ring provider only, client
//! certificates required and verified against the state root and its CRLs, ALPN `h2`,
//! TLS 1.3 only. The trust store, the server config and the verifier of the daemon's own
//! outgoing connections are swapped together when CRL files change ([`ReloadableTls`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alpr_pki::{CertificateDer, TrustStore};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::Error;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon's or person's TLS identity: certificate chain and key.
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Load a certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, alpr_pki::Error> {
        // The key must belong to the certificate: say so, naming both files, rather than
        // fail later inside TLS with "keys may not be consistent".
        alpr_pki::Signer::load(cert, key)?;
        Ok(Self {
            chain: alpr_pki::read_cert_chain(cert)?,
            key: alpr_pki::read_private_key(key)?,
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(trust: &TrustStore) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    roots
        .add(trust.root().clone())
        .map_err(|source| Error::Tls {
            what: "root certificate",
            source,
        })?;
    Ok(Arc::new(roots))
}

/// Server config: TLS 1.3, client certificate required and checked against root + CRLs.
pub fn server_config(trust: &TrustStore, id: &TlsIdentity) -> Result<Arc<ServerConfig>, Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(trust)?, provider())
        .with_crls(trust.crls().iter().cloned())
        .build()
        .map_err(|source| Error::Verifier {
            what: "client verifier",
            source,
        })?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| Error::Tls {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|source| Error::Tls {
            what: "server certificate",
            source,
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Server config for browsers (the node's web console): no client certificate (people
/// sign in with their browser's key and a code instead), TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`.
pub fn web_server_config(id: &TlsIdentity) -> Result<Arc<ServerConfig>, Error> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| Error::Tls {
            what: "protocol versions",
            source,
        })?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|source| Error::Tls {
            what: "web certificate",
            source,
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The server-certificate verifier of `trust`: root + CRLs.
fn server_verifier(trust: &TrustStore) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(roots(trust)?, provider())
        .with_crls(trust.crls().iter().cloned())
        .build()
        .map_err(|source| Error::Verifier {
            what: "server verifier",
            source,
        })
}

/// Client config: TLS 1.3, presenting `id`, verifying the server against root + CRLs.
/// (A daemon's own outgoing connections use [`ReloadableTls::client_config`], whose CRLs
/// follow each reload.)
pub fn client_config(trust: &TrustStore, id: &TlsIdentity) -> Result<Arc<ClientConfig>, Error> {
    client_config_with(ClientVerifier::Fixed(server_verifier(trust)?), id)
}

/// How a client config verifies servers.
enum ClientVerifier {
    Fixed(Arc<WebPkiServerVerifier>),
    Reloading(Arc<ReloadingServerVerifier>),
}

fn client_config_with(
    verifier: ClientVerifier,
    id: &TlsIdentity,
) -> Result<Arc<ClientConfig>, Error> {
    let versions = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| Error::Tls {
            what: "protocol versions",
            source,
        })?;
    let builder = match verifier {
        ClientVerifier::Fixed(v) => versions.with_webpki_verifier(v),
        // The same WebPKI verification, through a handle whose CRLs can be swapped.
        ClientVerifier::Reloading(v) => versions.dangerous().with_custom_certificate_verifier(v),
    };
    let mut cfg = builder
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|source| Error::Tls {
            what: "client certificate",
            source,
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// A WebPKI server verifier whose root and CRLs are swapped at each CRL reload: a
/// daemon's outgoing connections made after a reload (new channels, reconnections) refuse
/// a server whose certificate the new CRLs revoke. It delegates every check to
/// [`WebPkiServerVerifier`].
#[derive(Debug)]
struct ReloadingServerVerifier(std::sync::RwLock<Arc<WebPkiServerVerifier>>);

impl ReloadingServerVerifier {
    fn current(&self) -> Arc<WebPkiServerVerifier> {
        self.0
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set(&self, v: Arc<WebPkiServerVerifier>) {
        match self.0.write() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }
}

impl ServerCertVerifier for ReloadingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.current().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A server config that can be swapped while serving (CRL reload without restart).
pub type SharedServerConfig = Arc<std::sync::RwLock<Arc<ServerConfig>>>;

/// The trust store and TLS server config in force, swapped together when the CRL files
/// change, so a revocation takes effect without a restart for new handshakes and for
/// signature checks alike.
pub struct ReloadableTls {
    identity: TlsIdentity,
    crl_files: Vec<std::path::PathBuf>,
    trust: std::sync::RwLock<TrustStore>,
    server: SharedServerConfig,
    /// Verifies the servers this daemon connects to ([`Self::client_config`]).
    outgoing: Arc<ReloadingServerVerifier>,
}

impl ReloadableTls {
    /// Serve as `identity` under `trust`, whose CRLs were read from `crl_files`.
    pub fn new(
        trust: TrustStore,
        identity: TlsIdentity,
        crl_files: Vec<std::path::PathBuf>,
    ) -> Result<Self, Error> {
        let server = Arc::new(std::sync::RwLock::new(server_config(&trust, &identity)?));
        let outgoing = Arc::new(ReloadingServerVerifier(std::sync::RwLock::new(
            server_verifier(&trust)?,
        )));
        Ok(Self {
            identity,
            crl_files,
            trust: std::sync::RwLock::new(trust),
            server,
            outgoing,
        })
    }

    /// The client config of this daemon's own outgoing connections (node to broker, broker
    /// to nodes), presenting its identity and verifying each server against the root and
    /// the CRLs in force at that handshake: a reload applies to every connection made
    /// after it. (A connection already open is not re-checked; the signatures on what
    /// travels over it are, against the CRLs in force.)
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        client_config_with(
            ClientVerifier::Reloading(self.outgoing.clone()),
            &self.identity,
        )
    }

    /// The trust store in force.
    pub fn trust(&self) -> TrustStore {
        self.trust
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The server config in force, shared with the accept loop.
    pub fn server_config(&self) -> SharedServerConfig {
        self.server.clone()
    }

    /// Re-read the CRL files; if they changed, swap in the new trust store and server
    /// config. Returns whether anything changed.
    pub fn reload(&self) -> Result<bool, Error> {
        let mut crls = Vec::new();
        let now = alpr_pki::now_unix();
        let current = self.trust();
        for f in &self.crl_files {
            crls.extend(alpr_pki::load_crl_file(f, current.root(), now)?);
        }
        if current.crls() == crls.as_slice() {
            return Ok(false);
        }
        let fresh = current.with_crls(crls);
        let server = server_config(&fresh, &self.identity)?;
        let outgoing = server_verifier(&fresh)?;
        match self.trust.write() {
            Ok(mut t) => *t = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        match self.server.write() {
            Ok(mut c) => *c = server,
            Err(p) => *p.into_inner() = server,
        }
        self.outgoing.set(outgoing);
        tracing::info!("CRLs reloaded");
        Ok(true)
    }
}
