//! Where `alpr-pki` writes its files, so the node, broker, tests and demo can find them.

use std::path::{Path, PathBuf};

/// The directory layout of a PKI made by `alpr-pki`:
///
/// ```text
/// root.crt root.key root.crl              state root CA
/// broker.crt broker.key                   broker (chain: leaf, root)
/// regulators/<user>.crt .key              regulators
/// agencies/<ORI>/ca.crt ca.key ca.crl     agency CA
/// agencies/<ORI>/node.crt node.key        node (chain: leaf, agency CA)
/// agencies/<ORI>/people/<user>.crt .key   person certificates
/// ```
#[derive(Clone, Debug)]
pub struct PkiLayout {
    dir: PathBuf,
}

impl PkiLayout {
    /// A layout rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The top directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// State root certificate.
    pub fn root_cert(&self) -> PathBuf {
        self.dir.join("root.crt")
    }
    /// State root private key.
    pub fn root_key(&self) -> PathBuf {
        self.dir.join("root.key")
    }
    /// CRL issued by the root (revoked agency CAs, brokers, regulators).
    pub fn root_crl(&self) -> PathBuf {
        self.dir.join("root.crl")
    }
    /// An agency's directory.
    pub fn agency_dir(&self, ori: &str) -> PathBuf {
        self.dir.join("agencies").join(ori)
    }
    /// Agency CA certificate.
    pub fn agency_ca_cert(&self, ori: &str) -> PathBuf {
        self.agency_dir(ori).join("ca.crt")
    }
    /// Agency CA key.
    pub fn agency_ca_key(&self, ori: &str) -> PathBuf {
        self.agency_dir(ori).join("ca.key")
    }
    /// CRL issued by an agency CA.
    pub fn agency_crl(&self, ori: &str) -> PathBuf {
        self.agency_dir(ori).join("ca.crl")
    }
    /// Node certificate chain and key.
    pub fn node(&self, ori: &str) -> (PathBuf, PathBuf) {
        let d = self.agency_dir(ori);
        (d.join("node.crt"), d.join("node.key"))
    }
    /// A person's certificate chain and key.
    pub fn person(&self, ori: &str, user: &str) -> (PathBuf, PathBuf) {
        let d = self.agency_dir(ori).join("people");
        (d.join(format!("{user}.crt")), d.join(format!("{user}.key")))
    }
    /// Broker certificate chain and key.
    pub fn broker(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("broker.crt"), self.dir.join("broker.key"))
    }
    /// A regulator's certificate chain and key.
    pub fn regulator(&self, user: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("regulators");
        (d.join(format!("{user}.crt")), d.join(format!("{user}.key")))
    }
    /// Every CRL file that exists under this layout.
    pub fn all_crls(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self.root_crl().exists() {
            out.push(self.root_crl());
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("agencies")) {
            let mut dirs: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("ca.crl"))
                .collect();
            dirs.sort();
            out.extend(dirs.into_iter().filter(|p| p.exists()));
        }
        out
    }
}
