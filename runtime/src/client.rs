//! Connecting to a party over mTLS, and connection errors in an operator's words.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::Error;

/// Where and how to reach a server.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// The name the server's certificate must carry (`localhost`, a DNS name, or an IP).
    pub server_name: String,
}

/// A lazily connecting mTLS channel to `target`.
pub fn channel(
    target: &Target,
    cfg: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(format!("http://{}", target.addr))
        .map_err(|e| Error::Address {
            what: "address",
            value: target.addr.clone(),
            detail: e.to_string(),
        })?
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true);
    let server_name =
        ServerName::try_from(target.server_name.clone()).map_err(|e| Error::Address {
            what: "server name",
            value: target.server_name.clone(),
            detail: e.to_string(),
        })?;
    let addr = target.addr.clone();
    let connector = TlsConnector::from(cfg);
    let svc = tower::service_fn(move |_uri: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let addr = addr.clone();
        async move {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(svc))
}

/// A connection error in words an operator can act on, for the ones that rustls reports
/// in Rust's own terms: a server certificate issued for other names (the names it does
/// carry, without `DnsName(..)` wrappers), or one not from this state's root.
pub fn explain_connect_error(message: &str) -> String {
    if let Some(rest) = message.split("certificate not valid for name \"").nth(1) {
        let wanted = rest.split('"').next().unwrap_or("");
        let mut names = Vec::new();
        for part in rest.split(['(', ')']) {
            let p = part.trim_matches('"');
            let a_name = part.starts_with('"') || p.parse::<std::net::IpAddr>().is_ok();
            if a_name && !p.starts_with("urn:") && !p.is_empty() && p != wanted {
                names.push(p.to_owned());
            }
        }
        names.dedup();
        return format!(
            "the server's certificate is not issued for {wanted:?}; it names {} (give one of them as --server-name)",
            if names.is_empty() {
                "no host".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    if message.contains("UnknownIssuer") {
        return "the server's certificate is not from this state's root (check --root)".into();
    }
    if message.contains("invalid peer certificate: Revoked") {
        return "the server's certificate is revoked".into();
    }
    message.to_owned()
}

/// The command-line flags with which a person (investigator, admin, regulator) connects
/// to a party: the server's certificate name, the state root, and their own certificate
/// and key. Flattened into each tool's commands next to the flag naming the address.
#[derive(clap::Args, Clone, Debug)]
pub struct PersonTls {
    /// Name on the server's certificate.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// State root certificate.
    #[arg(long)]
    pub root: std::path::PathBuf,
    /// Your certificate chain.
    #[arg(long)]
    pub cert: std::path::PathBuf,
    /// Your private key.
    #[arg(long)]
    pub key: std::path::PathBuf,
}

/// What [`PersonTls::load`] read: the trust anchor, the person's signer and TLS identity.
pub struct Person {
    /// The state root (no CRLs: the server's CRLs are the server's business).
    pub trust: alpr_pki::TrustStore,
    /// Signs the person's queries and commands.
    pub signer: alpr_pki::Signer,
    /// Presented in the TLS handshake.
    pub tls: crate::tls::TlsIdentity,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Person")
    }
}

impl PersonTls {
    /// Load the root, certificate and key (the key must belong to the certificate).
    pub fn load(&self) -> Result<Person, Error> {
        Ok(Person {
            trust: alpr_pki::TrustStore::load(&self.root, &[] as &[std::path::PathBuf])?,
            signer: alpr_pki::Signer::load(&self.cert, &self.key)?,
            tls: crate::tls::TlsIdentity::load(&self.cert, &self.key)?,
        })
    }

    /// Where to reach `addr` under the name these flags give.
    pub fn target(&self, addr: &str) -> Target {
        Target {
            addr: addr.to_owned(),
            server_name: self.server_name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wrong_server_name_is_explained_without_rust_types() {
        let m = "invalid peer certificate: certificate not valid for name \"wrong.example\"; certificate is only valid for DnsName(\"localhost\"), IpAddress(127.0.0.1), UniformResourceIdentifier(\"urn:alpr:role:node\") or UniformResourceIdentifier(\"urn:alpr:kind:local\")";
        let e = super::explain_connect_error(m);
        assert_eq!(
            e,
            "the server's certificate is not issued for \"wrong.example\"; it names localhost, 127.0.0.1 (give one of them as --server-name)"
        );
        assert!(!e.contains("DnsName"));
        assert_eq!(super::explain_connect_error("other"), "other");
    }
}
