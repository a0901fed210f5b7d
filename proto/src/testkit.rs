//! In-memory PKI for unit tests.

use std::collections::HashMap;

use alpr_pki::issue::{self, Authority, LeafSpec};
use alpr_pki::{AgencyClaims, AgencyKind, CertificateDer, Role, Signer, TrustStore};
use rustls_pki_types::pem::PemObject;

pub struct Kit {
    pub trust: TrustStore,
    cas: HashMap<String, (Authority, AgencyClaims)>,
    pub root: Authority,
}

impl Kit {
    pub fn new() -> Self {
        let root = issue::new_root("Test Root", 10).unwrap();
        Self {
            trust: TrustStore::new(root.cert_der.clone(), vec![]),
            cas: HashMap::new(),
            root: Authority::from_issued(&root).unwrap(),
        }
    }

    pub fn agency(&mut self, ori: &str, j: &str, kind: AgencyKind) {
        let claims =
            AgencyClaims::new(ori, &format!("Agency {ori}"), j.parse().unwrap(), kind).unwrap();
        let ca = issue::new_agency_ca(&self.root, &claims, 10).unwrap();
        self.cas
            .insert(ori.into(), (Authority::from_issued(&ca).unwrap(), claims));
    }

    pub fn signer(&self, ori: &str, role: Role, user: Option<&str>) -> Signer {
        let (ca, claims) = &self.cas[ori];
        let spec = LeafSpec {
            role,
            user: user.map(Into::into),
            agency: Some(claims.clone()),
            jurisdiction: None,
            hosts: vec![],
            days: 10,
        };
        to_signer(&issue::new_leaf(ca, &spec).unwrap())
    }
}

pub fn to_signer(i: &issue::Issued) -> Signer {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(i.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(i.key_pem.as_bytes()).unwrap();
    Signer::new(chain, &key).unwrap()
}
