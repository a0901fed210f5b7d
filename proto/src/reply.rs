//! Verification of a target's reply: the one check that the broker, the requesting node
//! and every client run on a signed Answer or Refusal before calling it one.
//!
//! A reply is only what its signature proves. [`verify`] checks, in order: the envelope
//! signature and chain (unrevoked, to the state root); the signer is a node certificate of
//! the target agency; the reply names that agency as its provider; it is bound to this
//! query id, requester agency and requester user; and for an answer, every read is of the
//! queried plate (and its issuing state, unless the query asked for any state) inside the
//! query's window, and the answer is marked not for re-dissemination. Anything else is
//! refused with [`RefusalReason::BadReply`] and a detail that names the signer.

use alpr_pki::{Role, TrustStore, VerifiedIdentity};

use crate::envelope::{self, ANSWER, REFUSAL};
use crate::input::ANY_STATE;
use crate::pb::{Answer, Query, Refusal, Signed};
use crate::{Error, RefusalReason};

/// A reply that passed every check.
#[derive(Clone, Debug)]
pub enum VerifiedReply {
    /// Reads, signed by the target's node.
    Answer {
        /// The node that signed it (a node certificate of the target agency).
        signer: VerifiedIdentity,
        /// The answer.
        answer: Answer,
    },
    /// A refusal signed by the target's node.
    Refusal {
        /// The node that signed it.
        signer: VerifiedIdentity,
        /// The refusal.
        refusal: Refusal,
    },
}

impl VerifiedReply {
    /// The node that signed the reply.
    pub fn signer(&self) -> &VerifiedIdentity {
        match self {
            Self::Answer { signer, .. } | Self::Refusal { signer, .. } => signer,
        }
    }
}

/// The logged name of a target's outcome (`answered`, `refused`, `bad_reply`,
/// `unavailable`), the one spelling the broker's routing log and the requesting node's
/// audit log both use.
pub fn outcome(status: i32) -> &'static str {
    use crate::pb::TargetStatus;
    match TargetStatus::try_from(status) {
        Ok(TargetStatus::Answered) => "answered",
        Ok(TargetStatus::Refused) => "refused",
        Ok(TargetStatus::BadReply) => "bad_reply",
        _ => "unavailable",
    }
}

/// Verify `reply`, received for `query` as target `target_ori`'s reply, at `now`.
///
/// Errors are always [`RefusalReason::BadReply`]; the detail says which check failed and
/// who signed the reply (when its signature verified).
pub fn verify(
    trust: &TrustStore,
    target_ori: &str,
    reply: &Signed,
    query: &Query,
    now: i64,
) -> Result<VerifiedReply, Error> {
    let bad = |m: String| Error::refused(RefusalReason::BadReply, m);
    let signer_ok = |id: &VerifiedIdentity| -> Result<(), Error> {
        if id.role != Role::Node || id.ori() != Some(target_ori) {
            return Err(bad(format!(
                "reply for {target_ori} is signed by {}, not by {target_ori}'s node",
                id.describe()
            )));
        }
        Ok(())
    };
    match reply.payload_type.as_str() {
        ANSWER => {
            let (signer, answer): (_, Answer) = envelope::open_as(trust, reply, ANSWER, now)
                .map_err(|e| bad(format!("answer from {target_ori} does not verify: {e}")))?;
            signer_ok(&signer)?;
            let by = signer.describe();
            if answer.provider_ori != target_ori {
                return Err(bad(format!(
                    "answer signed by {by} claims to come from {:?}",
                    answer.provider_ori
                )));
            }
            if answer.query_id != query.query_id {
                return Err(bad(format!(
                    "answer signed by {by} is bound to another query"
                )));
            }
            if answer.requester_ori != query.requester_ori
                || answer.requester_user != query.requester_user
            {
                return Err(bad(format!(
                    "answer signed by {by} is bound to requester {}@{}, not {}@{}",
                    answer.requester_user,
                    answer.requester_ori,
                    query.requester_user,
                    query.requester_ori
                )));
            }
            if !answer.not_for_redissemination {
                return Err(bad(format!(
                    "answer signed by {by} is not marked not-for-redissemination"
                )));
            }
            // A hot-list share's answers (hit reports) hold reads of the list's entries.
            let list = (query.shape == crate::hotlist::SHAPE_HOTLIST).then(|| {
                crate::hotlist::Matcher::new(
                    query
                        .hotlist
                        .as_ref()
                        .map(|h| h.entries.clone())
                        .unwrap_or_default(),
                )
            });
            for (i, r) in answer.reads.iter().enumerate() {
                if let Some(list) = &list {
                    if list.find(r).is_none() {
                        return Err(bad(format!(
                            "answer signed by {by}: read {} ({} {:?}) matches no entry of the shared hot list",
                            i + 1,
                            r.plate,
                            r.plate_state
                        )));
                    }
                } else {
                    let matches = if query.shape == crate::input::SHAPE_WILDCARD {
                        crate::input::matches_wildcard(&query.plate, &r.plate)
                    } else {
                        r.plate == query.plate
                    };
                    if !matches {
                        return Err(bad(format!(
                            "answer signed by {by}: read {} is of plate {:?}, not the queried {:?}",
                            i + 1,
                            r.plate,
                            query.plate
                        )));
                    }
                    if query.plate_state != ANY_STATE && r.plate_state != query.plate_state {
                        return Err(bad(format!(
                            "answer signed by {by}: read {} is of a plate issued by {:?}, not the queried {:?}",
                            i + 1,
                            r.plate_state,
                            query.plate_state
                        )));
                    }
                }
                if r.captured_at < query.window_start || r.captured_at > query.window_end {
                    return Err(bad(format!(
                        "answer signed by {by}: read {} was captured outside the query's window",
                        i + 1
                    )));
                }
            }
            Ok(VerifiedReply::Answer { signer, answer })
        }
        REFUSAL => {
            let (signer, refusal): (_, Refusal) = envelope::open_as(trust, reply, REFUSAL, now)
                .map_err(|e| bad(format!("refusal from {target_ori} does not verify: {e}")))?;
            signer_ok(&signer)?;
            let by = signer.describe();
            if refusal.provider_ori != target_ori {
                return Err(bad(format!(
                    "refusal signed by {by} claims to come from {:?}",
                    refusal.provider_ori
                )));
            }
            if refusal.query_id != query.query_id {
                return Err(bad(format!(
                    "refusal signed by {by} is bound to another query"
                )));
            }
            Ok(VerifiedReply::Refusal { signer, refusal })
        }
        other => Err(bad(format!(
            "reply from {target_ori} has payload type {other:?}; expected {ANSWER:?} or {REFUSAL:?}"
        ))),
    }
}

#[cfg(test)]
mod tests;
