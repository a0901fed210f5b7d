//! Mutual TLS for every connection: rustls with the ring provider only, client
//! certificates required and verified against the state root and its CRLs, ALPN `h2`,
//! TLS 1.3 only. The trust store and server config are swapped together when CRL files
//! change ([`ReloadableTls`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alpr_pki::{CertificateDer, TrustStore};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::PrivateKeyDer;
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

/// Client config: TLS 1.3, presenting `id`, verifying the server against root + CRLs.
pub fn client_config(trust: &TrustStore, id: &TlsIdentity) -> Result<Arc<ClientConfig>, Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(trust)?, provider())
        .with_crls(trust.crls().iter().cloned())
        .build()
        .map_err(|source| Error::Verifier {
            what: "server verifier",
            source,
        })?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| Error::Tls {
            what: "protocol versions",
            source,
        })?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|source| Error::Tls {
            what: "client certificate",
            source,
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
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
}

impl ReloadableTls {
    /// Serve as `identity` under `trust`, whose CRLs were read from `crl_files`.
    pub fn new(
        trust: TrustStore,
        identity: TlsIdentity,
        crl_files: Vec<std::path::PathBuf>,
    ) -> Result<Self, Error> {
        let server = Arc::new(std::sync::RwLock::new(server_config(&trust, &identity)?));
        Ok(Self {
            identity,
            crl_files,
            trust: std::sync::RwLock::new(trust),
            server,
        })
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
        match self.trust.write() {
            Ok(mut t) => *t = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        match self.server.write() {
            Ok(mut c) => *c = server,
            Err(p) => *p.into_inner() = server,
        }
        tracing::info!("CRLs reloaded");
        Ok(true)
    }
}
