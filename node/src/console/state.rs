//! The console's state: the node, its settings, who is signed in, the tickets handed to
//! browsers, and searches waiting for a signature or kept for their page and export.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alpr_pki::{CertificateDer, Role};
use alpr_proto::pb::{Query, SignedAgreement, TargetResult};

use crate::Error;
use crate::config::ConsoleConfig;
use crate::node::Node;

/// The console's state: the node, its settings and who is signed in.
pub struct Console {
    pub(super) node: Arc<Node>,
    pub(super) cfg: ConsoleConfig,
    pub(super) sessions: Mutex<HashMap<String, Session>>,
    pub(super) challenges: Mutex<HashMap<String, Ticket>>,
    pub(super) setups: Mutex<HashMap<String, Ticket>>,
    pub(super) pending: Mutex<HashMap<String, Pending>>,
    pub(super) done: Mutex<HashMap<String, Done>>,
    /// Agreement work waiting for an admin's browser, by id: (admin, work, until).
    pub(super) agreements: Mutex<HashMap<String, (String, AgreementWork, i64)>>,
    /// The 30-second step of the last code each person used (a code is good once).
    pub(super) used_steps: Mutex<HashMap<String, u64>>,
}

/// A signed-in person.
#[derive(Clone, Debug)]
pub struct Session {
    /// Account.
    pub user: String,
    /// Certificate role.
    pub role: Role,
    /// The form token of this session.
    pub csrf: String,
    /// The person certificate chain (leaf, agency CA), verified again at each use.
    pub chain: Vec<CertificateDer<'static>>,
    /// Last request, Unix seconds.
    pub last_seen: i64,
}

/// A one-time token handed to one person's browser for a few minutes: a sign-in
/// challenge, or (their key proved) the page awaiting the first code from their secret.
#[derive(Debug)]
pub struct Ticket {
    pub(super) user: String,
    pub(super) expires: i64,
}

/// A reviewed query awaiting the browser's signature.
#[derive(Debug)]
pub struct Pending {
    pub(super) user: String,
    pub(super) payload: Vec<u8>,
    pub(super) expires: i64,
}

/// A finished search, for its page and its export.
#[derive(Debug)]
pub struct Done {
    pub(super) user: String,
    pub(super) query: Query,
    pub(super) results: Vec<TargetResult>,
    pub(super) at: i64,
}

/// `bytes` random bytes, hex: session tokens, challenges, form ids.
pub(super) fn random_token(bytes: usize) -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::Usage("no system randomness".into()))?;
    Ok(hex::encode(b))
}

/// What waits for the admin's browser to sign it.
#[derive(Debug)]
pub enum AgreementWork {
    /// An agreement (a draft, or a file from the other agency).
    Agreement(Box<SignedAgreement>),
    /// A revocation: the action's bytes.
    Revoke(Vec<u8>),
    /// A signed agreement file, to download.
    File(Vec<u8>),
    /// The requester admin's declaration for an agreement: the agreement and the
    /// declaration's bytes, to sign.
    Declaration(Box<SignedAgreement>, Vec<u8>),
}
