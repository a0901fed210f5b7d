//! People's browser keys for the web console: an admin or supervisor issues a one-time
//! enrollment code for an account (`user invite`, never logged); the browser enrolls its
//! key with it; a supervisor (never the person) approves the key, which certifies it under
//! the agency CA (`[console] person_ca_cert`) and makes the person's code secret.

use alpr_pki::issue::LeafSpec;
use alpr_pki::{Role, VerifiedIdentity};

use crate::Error;
use crate::node::Node;
use crate::store;

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Usage("no system randomness".into()))?;
    Ok(b)
}

/// How long an enrollment code stays valid, seconds.
pub const INVITE_SECS: i64 = 72 * 3600;

/// The stored form of an enrollment code (case and separators do not count).
pub(crate) fn code_hash(code: &str) -> Vec<u8> {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    ring::digest::digest(&ring::digest::SHA256, norm.as_bytes())
        .as_ref()
        .to_vec()
}

/// Issue a one-time enrollment code for `user` (by an admin or supervisor of this
/// agency): `(what is logged, the code)`. The code is never logged.
pub fn invite(
    db: &store::Db,
    by: &VerifiedIdentity,
    user: &str,
    now: i64,
) -> Result<(String, String), Error> {
    if !matches!(by.role, Role::Admin | Role::Supervisor) {
        return Err(Error::NotPermitted(
            "only an admin or supervisor issues enrollment codes".into(),
        ));
    }
    let refused = |m: String| -> Error {
        alpr_proto::Error::refused(alpr_proto::RefusalReason::InvalidInput, m).into()
    };
    let a = store::accounts::get(db, user)?.ok_or_else(|| refused(format!("no account {user}")))?;
    if a.disabled_at.is_some() {
        return Err(refused(format!("account {user} is disabled")));
    }
    // 60 bits from an alphabet without look-alikes, in groups of four.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let raw = random_bytes::<15>()?;
    let chars: Vec<char> = raw
        .iter()
        .take(12)
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    let code = chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    let expires = now + INVITE_SECS;
    store::console::invite(db, user, &code_hash(&code), expires, &by.describe())?;
    Ok((
        format!(
            "issued a console enrollment code for {user} (one use, valid until {})",
            alpr_pki::fmt_time(expires)
        ),
        code,
    ))
}

impl Node {
    /// Approve `user`'s enrolled browser key (by a supervisor of this agency, never the
    /// person): the person certificate for it under the agency CA, the code secret; the
    /// account is approved too if it was not. Returns what was done.
    pub fn approve_console_key(
        &self,
        db: &store::Db,
        by: &VerifiedIdentity,
        user: &str,
        now: i64,
    ) -> Result<String, Error> {
        let deny = |m: String| -> Error {
            alpr_proto::Error::refused(alpr_proto::RefusalReason::InvalidInput, m).into()
        };
        if by.role != Role::Supervisor {
            return Err(Error::NotPermitted(
                "only a supervisor approves browser keys".into(),
            ));
        }
        if by.user.as_deref() == Some(user) {
            return Err(Error::NotPermitted(
                "nobody approves their own browser key".into(),
            ));
        }
        let cfg = self
            .cfg
            .console
            .as_ref()
            .ok_or_else(|| deny("this node has no [console]".into()))?;
        let account =
            store::accounts::get(db, user)?.ok_or_else(|| deny(format!("no account {user}")))?;
        if account.disabled_at.is_some() {
            return Err(deny(format!("account {user} is disabled")));
        }
        let key = store::console::get_key(db, user)?
            .ok_or_else(|| deny(format!("{user} has enrolled no browser key")))?;
        if key.approved_at.is_some() {
            return Err(deny(format!("{user}'s browser key is approved already")));
        }
        let role = match account.role.as_str() {
            "investigator" => Role::Investigator,
            "supervisor" => Role::Supervisor,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            other => return Err(deny(format!("account role {other:?} has no console"))),
        };
        let ca = cfg.person_ca(self.ori())?;
        let spec = LeafSpec {
            role,
            user: Some(user.to_owned()),
            agency: ca.agency()?,
            jurisdiction: None,
            hosts: vec![],
            days: cfg.person_cert_days,
        };
        let issued = alpr_pki::issue::new_leaf_for_key(&ca, &spec, &key.spki)?;
        let secret = random_bytes::<20>()?.to_vec();
        let me = by.user.clone().unwrap_or_default();
        store::console::approve_key(db, user, &me, now, &issued.chain_pem, &secret)?;
        let mut done = format!(
            "approved {user}'s browser key: {role} certificate valid {} days",
            cfg.person_cert_days
        );
        if account.approved_at.is_none() {
            store::accounts::approve(db, user, &me, now)?;
            done.push_str(", account approved");
        }
        Ok(done)
    }
}
