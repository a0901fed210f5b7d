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
