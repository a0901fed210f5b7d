//! The regulator's client: fetch the whole registry from the broker, verify it entirely
//! (every signature, the Merkle root, consistency with a saved head), then list, show,
//! export and report on it; suspend and lift agreements; cosign tree heads as a witness.

use std::collections::BTreeMap;
use std::path::Path;

use alpr_pki::{Signer, TrustStore};
use alpr_proto::agreement::AgreementStatus;
use alpr_proto::envelope;
use alpr_proto::merkle::{self, Hash};
use alpr_proto::pb::broker_client::BrokerClient;
use alpr_proto::pb::{
    AgreementAction, ConsistencyRequest, Cosignature, EntriesRequest, SignedTreeHead,
    TreeHeadRequest,
};
use alpr_proto::registry::{self, AgreementRecord, VerifiedHead};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::Error;

/// A head saved by a regulator (or anyone) to check later heads against.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedHead {
    /// Tree size.
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
}

impl SavedHead {
    /// Read from a JSON file; `None` if the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, Error> {
        match std::fs::read_to_string(path) {
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Write as JSON.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Usage(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    fn root_hash(&self) -> Result<Hash, Error> {
        let b = hex::decode(&self.root).map_err(|e| Error::Usage(format!("saved root: {e}")))?;
        merkle::hash_from_slice(&b).map_err(|e| Error::Usage(format!("saved root: {e}")))
    }
}

/// The registry as fetched and fully verified by a regulator.
pub struct RegistryView {
    /// The verified head.
    pub head: VerifiedHead,
    /// Every agreement's record, replayed and verified from the log.
    pub records: BTreeMap<String, AgreementRecord>,
    /// Every node's published sealing keys, verified, oldest first.
    pub sealing_keys: BTreeMap<String, Vec<registry::PublishedKey>>,
}

/// Fetch and verify everything. With `saved`, also prove the current log extends it.
pub async fn fetch_verified(
    client: &mut BrokerClient<Channel>,
    trust: &TrustStore,
    saved: Option<&SavedHead>,
) -> Result<RegistryView, Error> {
    let now = alpr_pki::now_unix();
    let sth = client
        .get_tree_head(TreeHeadRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let head = registry::verify_head(trust, &sth, now)?;
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    while (leaves.len() as u64) < head.size {
        let got = client
            .get_entries(EntriesRequest {
                start: leaves.len() as u64,
                end: head.size,
            })
            .await
            .map_err(status)?
            .into_inner()
            .leaves;
        if got.is_empty() {
            return Err(Error::Usage(format!(
                "broker stopped returning entries at {}",
                leaves.len()
            )));
        }
        leaves.extend(got);
    }
    leaves.truncate(head.size as usize);
    let hashes: Vec<Hash> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    if merkle::root(&hashes) != head.root {
        return Err(Error::Usage(
            "the registry entries do not hash to the broker's signed root".into(),
        ));
    }
    // The subjects index nodes sync by: recomputed from the whole log, it must be the one
    // the broker signed, or the broker could hide leaves from the nodes they concern.
    check_subjects_root(&head, &leaves)?;
    if let Some(s) = saved {
        let old_root = s.root_hash()?;
        let proof = client
            .get_consistency_proof(ConsistencyRequest {
                first: s.size,
                second: head.size,
            })
            .await
            .map_err(status)?
            .into_inner()
            .hashes;
        registry::check_consistency(
            (s.size, &old_root),
            (head.size, &head.root),
            &registry::proof_hashes(&proof)?,
        )?;
        if s.size <= head.size && merkle::root(&hashes[..s.size as usize]) != old_root {
            return Err(Error::Usage(format!(
                "the first {} entries are not the ones of the saved head",
                s.size
            )));
        }
    }
    let state = registry::replay(trust, &leaves)?;
    Ok(RegistryView {
        head,
        records: state.agreements,
        sealing_keys: state.sealing_keys,
    })
}

/// Check a verified head's subjects root against the index recomputed from the whole log
/// (`leaves`, the head's): a broker that signs another root could hide entries from the
/// nodes that sync by subject, so no regulator cosigns it.
///
/// # Errors
///
/// [`Error::Usage`] when they differ.
pub fn check_subjects_root(head: &VerifiedHead, leaves: &[Vec<u8>]) -> Result<(), Error> {
    if let Some(signed) = head.subjects_root
        && alpr_proto::subjects::root_of(leaves) != signed
    {
        return Err(Error::Usage(format!(
            "the broker's signed subjects root at size {} does not match the registry entries: it could hide entries from the nodes they concern; not cosigned",
            head.size
        )));
    }
    Ok(())
}

fn status(s: tonic::Status) -> Error {
    Error::Usage(format!("broker: {}", s.message()))
}

/// Check the new head is consistent with the last one this regulator cosigned
/// (`state_file`), cosign it, submit the cosignature, and save the new head.
pub async fn cosign(
    client: &mut BrokerClient<Channel>,
    trust: &TrustStore,
    me: &Signer,
    state_file: &Path,
) -> Result<SignedTreeHead, Error> {
    let saved = SavedHead::load(state_file)?;
    let view = fetch_verified(client, trust, saved.as_ref()).await?;
    let head = view
        .head
        .signed
        .head
        .clone()
        .ok_or_else(|| Error::Usage("no head".into()))?;
    let cs = Cosignature {
        tree_head: head.payload.clone(),
        cosigned_at: alpr_pki::now_unix(),
    };
    let signed = envelope::seal(me, registry::COSIGNATURE, &cs)?;
    let sth = client.cosign(signed).await.map_err(status)?.into_inner();
    SavedHead {
        size: view.head.size,
        root: hex::encode(view.head.root),
    }
    .save(state_file)?;
    Ok(sth)
}

/// The newest anchor the broker holds of `ori`'s audit log, unverified.
async fn newest_anchor(
    client: &mut BrokerClient<Channel>,
    ori: &str,
) -> Result<Option<alpr_proto::pb::AuditAnchor>, Error> {
    Ok(client
        .get_audit_anchor(alpr_proto::pb::AuditAnchorRequest {
            ori: ori.to_owned(),
        })
        .await
        .map_err(status)?
        .into_inner()
        .latest)
}

/// Check an agency's exported audit log (`alpr-node audit export --format log`) against the
/// newest anchor the broker holds for it: the chain holds from the first entry, and the
/// first entries are exactly the anchored ones (same tree root), so none was rewritten —
/// even re-signed with the node's key —, none deleted up to the anchor, and the file is
/// the log the broker saw and not a second one. Returns the verdict.
pub async fn verify_audit_log(
    client: &mut BrokerClient<Channel>,
    trust: &TrustStore,
    ori: &str,
    log: &Path,
    cosigned: Option<&Path>,
) -> Result<String, Error> {
    // The head this regulator cosigned for the agency, if it witnesses it: the log must
    // match it too, so a broker that swapped the agency's anchor cannot vouch for a
    // rewritten export.
    let witnessed = match cosigned {
        Some(dir) => SavedHead::load(&dir.join(format!("{ori}.json")))?
            .map(|s| s.root_hash().map(|r| (s.size, r)))
            .transpose()?,
        None => None,
    };
    let latest = newest_anchor(client, ori)
        .await?
        .ok_or_else(|| Error::Usage(format!("the broker holds no anchor of {ori}'s audit log")))?;
    let anchor = alpr_proto::auditlog::verify_anchor(trust, &latest, ori)?;
    let text = std::fs::read_to_string(log).map_err(|e| Error::io(log, e))?;
    let mut checker = alpr_proto::auditlog::LogChecker::new();
    let at = |line: usize, e: &dyn std::fmt::Display| {
        Error::Usage(format!("{}:{line}: {e}", log.display()))
    };
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let e: alpr_proto::auditlog::LoggedEntry = serde_json::from_str(line).map_err(|e| {
            at(
                i + 1,
                &format!("not an entry of an exported log (--format log): {e}"),
            )
        })?;
        checker.push(&e).map_err(|e| at(i + 1, &e))?;
        if checker.size() == anchor.head.size {
            checker.matches(&anchor.head).map_err(|e| at(i + 1, &e))?;
        }
        if let Some((size, root)) = witnessed
            && checker.size() == size
            && checker.root() != root
        {
            return Err(at(
                i + 1,
                &format!("the log's first {size} entries are not the ones you cosigned for {ori}"),
            ));
        }
    }
    if let Some((size, _)) = witnessed
        && checker.size() < size
    {
        return Err(Error::Usage(format!(
            "{}: the log has {} entries but you cosigned {size} of {ori}'s (entries deleted)",
            log.display(),
            checker.size()
        )));
    }
    checker
        .finish(&anchor.head)
        .map_err(|e| Error::Usage(format!("{}: {e}", log.display())))?;
    Ok(format!(
        "{ori}'s audit log verified: {} entries; the first {} are the ones its node signed on {} and the broker anchored on {}{}",
        checker.size(),
        anchor.head.size,
        alpr_pki::fmt_time(anchor.head.timestamp),
        alpr_pki::fmt_time(anchor.anchored_at),
        if checker.size() > anchor.head.size {
            format!(
                "; the {} after them are chained but not anchored yet",
                checker.size() - anchor.head.size
            )
        } else {
            String::new()
        }
    ))
}

/// Verify a proof bundle file from `alpr-node audit prove`; the verdict, or an error naming
/// what failed and in which file.
pub fn verify_proof_file(trust: &TrustStore, file: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let bundle: alpr_proto::auditlog::ProofBundle = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: not a proof bundle: {e}", file.display())))?;
    let p = alpr_proto::auditlog::verify_proof(trust, &bundle).map_err(|e| {
        Error::Usage(format!(
            "{}: the proof does not verify: {e}",
            file.display()
        ))
    })?;
    Ok(p.verdict(&bundle))
}

/// What a routing-log cosignature covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingCosigned {
    /// Rows of the routing log.
    pub size: u64,
    /// The size cosigned before (0: the first time).
    pub from: u64,
    /// Cosignatures the head now carries.
    pub cosignatures: usize,
}

/// Witness the broker's routing log: fetch a signed head of it with a consistency proof
/// from the last head this regulator cosigned (`state_file`), check the proof, cosign the
/// head, submit the cosignature and save the new head. A routing log that does not extend
/// the saved head (rewritten, truncated or forked) is refused, and the state kept.
pub async fn cosign_routing(
    client: &mut BrokerClient<Channel>,
    trust: &TrustStore,
    me: &Signer,
    state_file: &Path,
) -> Result<RoutingCosigned, Error> {
    let saved = SavedHead::load(state_file)?;
    let from = saved.as_ref().map_or(0, |s| s.size);
    let resp = client
        .get_routing_head(alpr_proto::pb::RoutingHeadRequest { from_size: from })
        .await
        .map_err(status)?
        .into_inner();
    let signed = resp
        .head
        .ok_or_else(|| Error::Usage("the broker sent no routing head".into()))?;
    let head = alpr_proto::auditlog::verify_routing_head(trust, &signed)?;
    if let Some(s) = &saved {
        alpr_proto::auditlog::check_extends(
            "the broker's routing log",
            (s.size, &s.root_hash()?),
            (head.size, &head.root),
            &resp.consistency,
        )
        .map_err(|e| {
            Error::Usage(format!(
                "{e}; the head you cosigned last is kept in {}",
                state_file.display()
            ))
        })?;
    }
    let cs = Cosignature {
        tree_head: signed.payload.clone(),
        cosigned_at: alpr_pki::now_unix(),
    };
    let cosig = envelope::seal(me, alpr_proto::auditlog::ROUTING_COSIGNATURE, &cs)?;
    let after = client
        .cosign_routing(cosig)
        .await
        .map_err(status)?
        .into_inner();
    SavedHead {
        size: head.size,
        root: hex::encode(head.root),
    }
    .save(state_file)?;
    Ok(RoutingCosigned {
        size: head.size,
        from,
        cosignatures: after.cosignatures.len(),
    })
}

/// What cosigning one agency's audit anchors did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditWitnessed {
    /// The agency has not anchored its log yet.
    NoAnchor,
    /// Nothing anchored since the head cosigned last.
    Unchanged {
        /// Entries.
        size: u64,
    },
    /// The newest anchor, checked link by link from the head cosigned last, now cosigned.
    Cosigned {
        /// Entries.
        size: u64,
        /// The size cosigned before (0: the first time).
        from: u64,
        /// Anchors checked on the way.
        links: usize,
    },
}

/// Witness one agency's audit anchors: fetch its anchors after the head this regulator
/// cosigned last (`state_dir/<ORI>.json`), check each is signed by the agency's node and
/// receipted by the broker and extends the one before (the node's consistency proof), then
/// cosign the newest and save it. An anchor that does not extend the saved head — a broker
/// that replaced an agency's anchor, alone or with the agency's insider — is refused and
/// the saved head kept.
pub async fn cosign_audit(
    client: &mut BrokerClient<Channel>,
    trust: &TrustStore,
    me: &Signer,
    state_dir: &Path,
    ori: &str,
) -> Result<AuditWitnessed, Error> {
    std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
    let state_file = state_dir.join(format!("{ori}.json"));
    let saved = SavedHead::load(&state_file)?;
    let mut prev: Option<(u64, Hash)> = match &saved {
        Some(s) => Some((s.size, s.root_hash()?)),
        None => None,
    };
    let mut last = None;
    let mut links = 0;
    loop {
        let after = prev.map_or(0, |p| p.0);
        let chain = client
            .get_audit_anchor_chain(alpr_proto::pb::AuditAnchorChainRequest {
                ori: ori.to_owned(),
                after_size: after,
            })
            .await
            .map_err(status)?
            .into_inner();
        if chain.links.is_empty() {
            break;
        }
        for link in chain.links {
            let anchor = link
                .anchor
                .ok_or_else(|| Error::Usage(format!("{ori}: an anchor link without an anchor")))?;
            let v = alpr_proto::auditlog::verify_anchor(trust, &anchor, ori)?;
            if v.head.size <= after || prev.is_some_and(|p| v.head.size <= p.0) {
                return Err(Error::Usage(format!(
                    "{ori}: the broker listed an anchor of {} entries after {} (anchors only grow)",
                    v.head.size,
                    prev.map_or(after, |p| p.0)
                )));
            }
            if let Some((size, root)) = prev {
                if link.from_size != size {
                    return Err(Error::Usage(format!(
                        "{ori}: the anchor of {} entries extends {} entries, not the {size} you cosigned or checked before (an anchor is missing or was replaced)",
                        v.head.size, link.from_size
                    )));
                }
                alpr_proto::auditlog::check_extends(
                    &format!("{ori}'s anchored audit log"),
                    (size, &root),
                    (v.head.size, &v.head.root),
                    &link.consistency,
                )
                .map_err(|e| {
                    Error::Usage(format!(
                        "{e}; the head you cosigned last is kept in {}",
                        state_file.display()
                    ))
                })?;
            }
            prev = Some((v.head.size, v.head.root));
            last = Some(anchor);
            links += 1;
        }
    }
    let Some(anchor) = last else {
        // Nothing new: the newest anchor must still be the one saved.
        return match (&saved, newest_anchor(client, ori).await?) {
            (None, None) => Ok(AuditWitnessed::NoAnchor),
            (Some(s), Some(a)) => {
                let v = alpr_proto::auditlog::verify_anchor(trust, &a, ori)?;
                if v.head.size != s.size || v.head.root != s.root_hash()? {
                    return Err(Error::Usage(format!(
                        "{ori}: the broker's newest anchor ({} entries) is not the head of {} entries you cosigned last",
                        v.head.size, s.size
                    )));
                }
                Ok(AuditWitnessed::Unchanged { size: s.size })
            }
            (Some(s), None) => Err(Error::Usage(format!(
                "{ori}: the broker no longer holds the anchor of {} entries you cosigned",
                s.size
            ))),
            (None, Some(_)) => Err(Error::Usage(format!(
                "{ori}: the broker lists no anchors but holds one"
            ))),
        };
    };
    let head = anchor
        .head
        .as_ref()
        .ok_or_else(|| Error::Usage(format!("{ori}: anchor without a head")))?;
    let cs = Cosignature {
        tree_head: head.payload.clone(),
        cosigned_at: alpr_pki::now_unix(),
    };
    let cosig = envelope::seal(me, alpr_proto::auditlog::AUDIT_COSIGNATURE, &cs)?;
    client.cosign_audit(cosig).await.map_err(status)?;
    let (size, root) = prev.unwrap_or((0, merkle::empty_root()));
    SavedHead {
        size,
        root: hex::encode(root),
    }
    .save(&state_file)?;
    Ok(AuditWitnessed::Cosigned {
        size,
        from: saved.map_or(0, |s| s.size),
        links,
    })
}

/// Sign and submit an action (suspend / lift as a regulator; revoke as a party's admin).
pub async fn act(
    client: &mut BrokerClient<Channel>,
    me: &Signer,
    agreement_id: &str,
    action: &str,
    reason: &str,
) -> Result<u64, Error> {
    let a = AgreementAction {
        agreement_id: agreement_id.into(),
        action: action.into(),
        reason: reason.into(),
        signed_at: alpr_pki::now_unix(),
    };
    let signed = envelope::seal(me, registry::ACTION, &a)?;
    Ok(client
        .act_on_agreement(signed)
        .await
        .map_err(status)?
        .into_inner()
        .index)
}

/// A row for listing and export.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Agreement id.
    pub id: String,
    /// Provider ORI.
    pub provider: String,
    /// Provider jurisdiction.
    pub provider_state: String,
    /// Provider agency's name (from its admin's certificate).
    pub provider_name: String,
    /// Requester agency's name (from its admin's certificate).
    pub requester_name: String,
    /// Requester ORI.
    pub requester: String,
    /// Requester jurisdiction.
    pub requester_state: String,
    /// Requester kind.
    pub requester_kind: String,
    /// Status, with `expired` when past valid_until.
    pub status: String,
    /// Purposes.
    pub purposes: String,
    /// Look-back days.
    pub lookback_days: u32,
    /// Valid until, Unix seconds.
    pub valid_until: i64,
    /// Justification.
    pub justification: String,
    /// Registry index of the registration.
    pub registered_index: u64,
}

/// Filters for listing.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Agreements where this ORI is a party.
    pub agency: Option<String>,
    /// Agreements whose provider or requester is in this jurisdiction.
    pub state: Option<String>,
    /// active, revoked, suspended, expired.
    pub status: Option<String>,
    /// Only agreements expiring within this many days.
    pub expiring_within_days: Option<i64>,
}

/// Flatten records into rows.
pub fn rows(view: &RegistryView, f: &ListFilter, now: i64) -> Vec<Row> {
    view.records
        .values()
        .map(|r| {
            let a = &r.agreement;
            let st = |id: &alpr_pki::VerifiedIdentity| {
                id.jurisdiction
                    .as_ref()
                    .map(|j| j.to_string())
                    .unwrap_or_default()
            };
            let status = if r.status == AgreementStatus::Active && a.terms.valid_until <= now {
                "expired".to_owned()
            } else {
                r.status.as_str().to_owned()
            };
            Row {
                id: a.id.clone(),
                provider: a.terms.provider_ori.clone(),
                provider_state: st(&a.provider_admin),
                provider_name: a
                    .provider_admin
                    .agency
                    .as_ref()
                    .map(|x| x.name.clone())
                    .unwrap_or_default(),
                requester_name: a
                    .requester_admin
                    .agency
                    .as_ref()
                    .map(|x| x.name.clone())
                    .unwrap_or_default(),
                requester: a.terms.requester_ori.clone(),
                requester_state: st(&a.requester_admin),
                requester_kind: a
                    .requester_admin
                    .agency
                    .as_ref()
                    .map(|x| x.kind.to_string())
                    .unwrap_or_default(),
                status,
                purposes: a.terms.purposes.join(" "),
                lookback_days: a.terms.max_lookback_days,
                valid_until: a.terms.valid_until,
                justification: a.terms.justification.clone(),
                registered_index: r.registered_index,
            }
        })
        .filter(|r| {
            f.agency
                .as_ref()
                .is_none_or(|o| &r.provider == o || &r.requester == o)
        })
        .filter(|r| {
            f.state
                .as_ref()
                .is_none_or(|s| &r.provider_state == s || &r.requester_state == s)
        })
        .filter(|r| f.status.as_ref().is_none_or(|s| &r.status == s))
        .filter(|r| {
            f.expiring_within_days
                .is_none_or(|d| r.status == "active" && r.valid_until <= now + d * 86_400)
        })
        .collect()
}

/// CSV of rows.
pub fn to_csv(rows: &[Row]) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = String::from(
        "id,provider,provider_state,requester,requester_state,requester_kind,status,purposes,lookback_days,valid_until,justification,registered_index\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.id,
            r.provider,
            r.provider_state,
            r.requester,
            r.requester_state,
            q(&r.requester_kind),
            r.status,
            q(&r.purposes),
            r.lookback_days,
            fmt_time(r.valid_until),
            q(&r.justification),
            r.registered_index
        ));
    }
    out
}

pub use alpr_pki::fmt_time;

/// The compliance report: agreements by state and partner, out-of-state and non-local
/// partners, agreements near expiry, and status counts. `refusals` (reason, target, count)
/// come from the broker's routing log when available.
pub fn report(view: &RegistryView, now: i64, refusals: &[(String, String, u64)]) -> String {
    let all = rows(view, &ListFilter::default(), now);
    let mut out = String::new();
    out.push_str(&format!(
        "Agreement registry: {} entries, root {} (verified; cosigned by {} regulator(s))\n",
        view.head.size,
        hex::encode(view.head.root),
        view.head.cosigners.len()
    ));
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &all {
        *by_status.entry(r.status.as_str()).or_default() += 1;
    }
    out.push_str(&format!(
        "Agreements: {} ({})\n",
        all.len(),
        by_status
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut by_state: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in all.iter().filter(|r| r.status == "active") {
        by_state
            .entry((r.provider_state.clone(), r.provider.clone()))
            .or_default()
            .push(r.requester.clone());
    }
    out.push_str("\nActive sharing by provider state and agency:\n");
    for ((state, p), partners) in &by_state {
        out.push_str(&format!(
            "  {state} {p} shares with {} partner(s): {}\n",
            partners.len(),
            partners.join(", ")
        ));
    }
    let oos: Vec<&Row> = all
        .iter()
        .filter(|r| r.status == "active" && r.provider_state != r.requester_state)
        .collect();
    out.push_str(&format!(
        "\nOut-of-state or federal partners: {}\n",
        oos.len()
    ));
    for r in oos {
        out.push_str(&format!(
            "  {} ({}) -> {} ({}, {})\n",
            r.provider, r.provider_state, r.requester, r.requester_state, r.requester_kind
        ));
    }
    let soon: Vec<&Row> = all
        .iter()
        .filter(|r| r.status == "active" && r.valid_until <= now + 30 * 86_400)
        .collect();
    out.push_str(&format!("\nExpiring within 30 days: {}\n", soon.len()));
    for r in soon {
        out.push_str(&format!(
            "  {} {} -> {} until {}\n",
            r.id,
            r.provider,
            r.requester,
            fmt_time(r.valid_until)
        ));
    }
    // Each node's system, as its newest published sealing key names it (what a state
    // that approves systems checks).
    out.push_str(&format!(
        "\nSystems in use (newest published key of each node): {}\n",
        view.sealing_keys.len()
    ));
    for (ori, keys) in &view.sealing_keys {
        if let Some(k) = keys.last() {
            out.push_str(&format!(
                "  {ori:<10} {} (published {})\n",
                if k.product.is_empty() {
                    "not stated".to_owned()
                } else {
                    format!("{} {}", k.product, k.product_version)
                },
                fmt_time(k.published_at)
            ));
        }
    }
    out.push_str("\nRefusals by reason and agency:\n");
    if refusals.is_empty() {
        out.push_str("  none recorded\n");
    }
    for (reason, target, n) in refusals {
        out.push_str(&format!("  {reason:<40} {target:<10} {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests;
