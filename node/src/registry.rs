//! The node's own view of the agreement registry.
//!
//! A node never takes the broker's word for an agreement: it syncs the registry log
//! itself, verifies the broker's signed tree head (and, if configured, a regulator's
//! cosignature), checks the head is consistent with the last one it saw, extends the tree
//! it verified with the new leaves (its right edge, kept in memory: a sync hashes only
//! what is new) and compares the root, and applies only the events whose signed contents
//! concern it. A rewritten or forked history is reported (`registry_fork` audit entry)
//! and the node stops advancing.

use std::sync::Arc;

use alpr_proto::agreement::{self, AgreementStatus};
use alpr_proto::merkle::{self, Hash};
use alpr_proto::pb::broker_client::BrokerClient;
use alpr_proto::pb::{
    Agreement, ConsistencyRequest, EntriesRequest, RegistryEvent, SubjectCursor, SubjectsRequest,
    TreeHeadRequest,
};
use alpr_proto::registry::{self, AgreementRecord, HistoryItem};
use alpr_proto::{registration, subjects};
use prost::Message;
use tonic::transport::Channel;

use crate::audit::AuditEntry;
use crate::audit::{Decision, Event};
use crate::node::Node;
use crate::{Error, store};

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Registry size before.
    pub from: u64,
    /// Registry size after.
    pub to: u64,
    /// Events that concerned this agency and were applied.
    pub applied: Vec<String>,
}

/// Registry entries fetched by one sync, to verify and apply.
struct Fetched<'a> {
    /// The registry size before.
    from: u64,
    /// `(index, encoded event)`, in index order.
    leaves: &'a [(u64, Vec<u8>)],
    /// Keep each leaf's hash (a full sync keeps the whole tree's).
    keep_hashes: bool,
    /// Entries below this index were applied by earlier full syncs (a node that changed
    /// to syncing by subject): counted, not applied again.
    applied_below: u64,
    /// What the node holds of each subject after (a sync by subject).
    subjects: &'a [(String, subjects::Record)],
}

/// The signing time of the newest registry head `db` keeps (0 if none).
pub fn stored_head_time(db: &store::Db) -> Result<i64, Error> {
    let Some((_, _, sth)) = store::maintenance::newest_registry_head(db)? else {
        return Ok(0);
    };
    let head = alpr_proto::pb::SignedTreeHead::decode(sth.as_slice())
        .map_err(|e| Error::corrupt("registry tree head", e))?;
    let th = head
        .head
        .map(|h| alpr_proto::pb::TreeHead::decode(h.payload.as_slice()))
        .transpose()
        .map_err(|e| Error::corrupt("registry tree head", e))?;
    Ok(th.map_or(0, |t| t.timestamp))
}

impl Node {
    /// Prove that agreement `id` is registered, from this node's own verified view of the
    /// registry: its registration entry (rebuilt from the stored agreement exactly as the
    /// broker logged it) and the entry's inclusion proof against the newest tree head this
    /// node verified. A node that keeps every leaf hash (full sync) proves it offline; one
    /// that syncs by subject asks the broker for the audit path and checks it against its
    /// own head, so a broker cannot make a false proof pass. The proof is checked before it
    /// is returned ([`registration::verify`]).
    pub async fn registration_proof(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<(registration::RegistrationProof, registration::Proven), Error> {
        let now = alpr_pki::now_unix();
        let (found, head, hashes) = {
            let db = self.db();
            let head = store::maintenance::newest_registry_head(&db)?;
            let hashes = match &head {
                Some((size, _, _)) if store::registry::leaf_count(&db)? >= *size as u64 => {
                    Some(store::registry::stored_hashes(&db)?)
                }
                _ => None,
            };
            (store::registration(&db, id)?, head, hashes)
        };
        let Some((sa, index, logged_at)) = found else {
            return Err(Error::Usage(format!(
                "agreement {id} is not registered in this node's view of the registry"
            )));
        };
        let Some((_, _, sth)) = head else {
            return Err(Error::Usage(
                "this node has accepted no registry head yet".into(),
            ));
        };
        let sth = alpr_proto::pb::SignedTreeHead::decode(sth.as_slice())
            .map_err(|e| Error::corrupt("registry tree head", e))?;
        let head = registry::verify_head(&self.trust(), &sth, now)?;
        let terms = Agreement::decode(
            sa.provider
                .as_ref()
                .map(|s| s.payload.as_slice())
                .unwrap_or_default(),
        )
        .map_err(|e| Error::corrupt(format!("agreement {id}"), e))?;
        let entry = RegistryEvent {
            kind: "register".into(),
            agreement_id: id.to_owned(),
            agreement: Some(sa),
            action: None,
            sealing_key: None,
            logged_at,
            provider_ori: terms.provider_ori,
            requester_ori: terms.requester_ori,
        }
        .encode_to_vec();
        let from_broker = hashes.is_none();
        let path = match hashes {
            Some(h) => {
                let kept = h.get(..head.size as usize).ok_or_else(|| {
                    Error::corrupt("registry leaf hashes", "fewer than the head's size")
                })?;
                merkle::inclusion_proof(kept, index)
                    .map_err(|e| Error::corrupt("registry leaf hashes", e))?
            }
            None => {
                let (mut client, _) = self.broker.clone().ok_or(Error::NoBroker)?;
                let p = client
                    .get_inclusion_proof(alpr_proto::pb::InclusionRequest {
                        index,
                        tree_size: head.size,
                    })
                    .await?
                    .into_inner();
                registry::proof_hashes(&p.hashes)?
            }
        };
        let proof = match registration::prove(&head, index, &entry, &path) {
            Ok(p) => p,
            Err(e) => {
                if from_broker {
                    // The broker's audit path does not lead to the head it signed: evidence
                    // against it, like a fork.
                    self.fork_alert(&format!(
                        "the broker's audit path for registry entry {index} ({id}) does not lead to the verified head of {} entries: {e}",
                        head.size
                    ))?;
                }
                return Err(e.into());
            }
        };
        let proven = registration::verify(&self.trust(), &proof, now)?;
        Ok((proof, proven))
    }

    /// Sync the registry from this node's configured broker.
    pub async fn sync_registry(self: &Arc<Self>) -> Result<SyncReport, Error> {
        let (client, _) = self.broker.clone().ok_or(Error::NoBroker)?;
        self.sync_registry_with(client).await
    }

    /// Sync the registry, then publish this node's current sealing key if its own verified
    /// view does not show it (first start, rotation, renewed certificate) and sync again so
    /// the publication is verified at once.
    pub async fn sync_registry_and_key(self: &Arc<Self>) -> Result<SyncReport, Error> {
        // Publication does not wait for a view that may not advance (a head awaiting the
        // regulator's cosignature): the key is published by this node's own record.
        let first = self.sync_registry().await;
        {
            // One publication at a time (the daemon's start and an operator's command).
            let _one = self.publish_lock.lock().await;
            if !self.needs_publication()? {
                return first;
            }
            self.publish_sealing_key().await?;
        }
        let mut report = first?;
        let again = self.sync_registry().await?;
        report.to = again.to;
        report.applied.extend(again.applied);
        Ok(report)
    }

    /// Sync the registry from a given broker connection.
    pub async fn sync_registry_with(
        self: &Arc<Self>,
        mut client: BrokerClient<Channel>,
    ) -> Result<SyncReport, Error> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let now = alpr_pki::now_unix();
        let sth = client.get_tree_head(TreeHeadRequest {}).await?.into_inner();
        let head = registry::verify_head(&self.trust(), &sth, now)?;
        self.check_witnessed(&head)?;
        if self.cfg.registry.sync == crate::config::SyncMode::Subjects {
            return self.sync_by_subjects(client, head, now).await;
        }
        // The tree this node verified so far: its right edge, kept between syncs (built
        // once from the stored leaf hashes), so a sync costs the new leaves only.
        let (last, frontier) = {
            let db = self.db();
            let count = store::registry::leaf_count(&db)?;
            let kept = self
                .registry_frontier
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(|f| f.size() == count);
            let frontier = match kept {
                Some(f) => f,
                None => {
                    let mut f = merkle::Frontier::new();
                    for h in store::registry::stored_hashes(&db)? {
                        f.push(h);
                    }
                    f
                }
            };
            (store::registry::last_head(&db)?, frontier)
        };
        let from = frontier.size();
        if let Some((size, root)) = &last
            && *size == head.size
            && *root == head.root
            && from == head.size
        {
            // Nothing new: no write, no reload (this runs every sync interval on every node);
            // only the view is current again (and a cosignature that came since is kept).
            self.keep_cosignatures(&head, now)?;
            self.note_head_time(head.timestamp);
            return Ok(SyncReport {
                from,
                to: head.size,
                applied: vec![],
            });
        }
        self.check_extends(&mut client, last.as_ref(), &head)
            .await?;
        // Fetch every new leaf; the verified tree extended by them must give the signed root.
        let mut leaves = Vec::new();
        while from + (leaves.len() as u64) < head.size {
            let start = from + leaves.len() as u64;
            let got = client
                .get_entries(EntriesRequest {
                    start,
                    end: head.size,
                })
                .await?
                .into_inner()
                .leaves;
            if got.is_empty() {
                return Err(Error::RegistryUntrusted(format!(
                    "broker returned no registry entries from {start}"
                )));
            }
            leaves.extend(got);
        }
        leaves.truncate((head.size - from) as usize);
        let mut grown = frontier;
        for l in &leaves {
            grown.push(merkle::leaf_hash(l));
        }
        if grown.root() != head.root {
            self.fork_alert(&format!(
                "entries {from}..{} do not hash to the signed root",
                head.size
            ))?;
            return Err(Error::RegistryUntrusted(
                "registry entries do not match the signed tree head".into(),
            ));
        }
        // Database writes and signature checks: on the blocking pool, not the async workers.
        let node = self.clone();
        let timestamp = head.timestamp;
        let report = tokio::task::spawn_blocking(move || {
            let leaves: Vec<(u64, Vec<u8>)> = leaves
                .into_iter()
                .enumerate()
                .map(|(i, l)| (from + i as u64, l))
                .collect();
            let fetched = Fetched {
                from,
                leaves: &leaves,
                keep_hashes: true,
                applied_below: 0,
                subjects: &[],
            };
            node.apply_events(fetched, &head.signed, head.size, &head.root, now)
        })
        .await??;
        *self
            .registry_frontier
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(grown);
        self.note_head_time(timestamp);
        Ok(report)
    }

    /// With `[registry] require_cosignature`, refuse a head no regulator of this agency's
    /// state cosigned.
    fn check_witnessed(&self, head: &registry::VerifiedHead) -> Result<(), Error> {
        if self.cfg.registry.require_cosignature
            && !head.cosigned_by(self.agency.jurisdiction.as_str())
        {
            return Err(Error::RegistryUntrusted(format!(
                "registry tree head of size {} carries no {} regulator cosignature; not trusted",
                head.size, self.agency.jurisdiction
            )));
        }
        Ok(())
    }

    /// Check `head` extends the last head this node accepted (a consistency proof from the
    /// broker); a fork or rewrite is a `registry_fork` alert.
    async fn check_extends(
        &self,
        client: &mut BrokerClient<Channel>,
        last: Option<&(u64, Hash)>,
        head: &registry::VerifiedHead,
    ) -> Result<(), Error> {
        let Some((size, root)) = last else {
            return Ok(());
        };
        let proof = if head.size > *size && *size > 0 {
            client
                .get_consistency_proof(ConsistencyRequest {
                    first: *size,
                    second: head.size,
                })
                .await?
                .into_inner()
                .hashes
        } else {
            vec![]
        };
        let proof = registry::proof_hashes(&proof)?;
        if let Err(e) = registry::check_consistency((*size, root), (head.size, &head.root), &proof)
        {
            self.fork_alert(&e.detail())?;
            return Err(Error::RegistryUntrusted(format!(
                "registry fork detected: {}",
                e.detail()
            )));
        }
        Ok(())
    }

    /// The broker signed the tree this node holds again, with more cosignatures than the
    /// head it kept (a regulator cosigned since): keep that head, so the node's status, its
    /// registration proofs and its restarts show the tree witnessed. One write per new
    /// cosignature, none per sync otherwise.
    fn keep_cosignatures(&self, head: &registry::VerifiedHead, now: i64) -> Result<(), Error> {
        if head.cosigners.is_empty() {
            return Ok(());
        }
        let who = |h: &registry::VerifiedHead| {
            h.cosigners
                .iter()
                .map(|c| c.describe())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let db = self.db();
        // The regulators whose cosignatures on the kept head verify (not a count: a broker
        // could pad a head with copies or junk).
        let kept = store::maintenance::newest_registry_head(&db)?
            .and_then(|(_, _, sth)| alpr_proto::pb::SignedTreeHead::decode(sth.as_slice()).ok())
            .and_then(|h| registry::verify_head(&self.trust(), &h, now).ok())
            .filter(|k| k.size == head.size && k.root == head.root)
            .map(|k| who(&k))
            .unwrap_or_default();
        let new = who(head);
        if new.is_superset(&kept) && new.len() > kept.len() {
            store::registry::put_head(
                &db,
                head.size,
                &head.root,
                &head.signed.encode_to_vec(),
                now,
            )?;
        }
        Ok(())
    }

    /// Record that a verified, consistent head signed at `timestamp` was seen.
    fn note_head_time(&self, timestamp: i64) {
        use std::sync::atomic::Ordering;
        let before = self.head_time.fetch_max(timestamp, Ordering::SeqCst);
        if timestamp > before && self.stale_alerted.swap(false, Ordering::SeqCst) {
            tracing::info!("registry view is current again; answering resumes");
        }
    }

    /// How old this node's view of the registry is at `now`, seconds, when that is past
    /// the bound (`[registry] max_head_age_secs`): the detail of a `REGISTRY_STALE`
    /// refusal. The first refusal of a stale episode is also an alert.
    pub(crate) fn stale_view(&self, now: i64) -> Option<String> {
        use std::sync::atomic::Ordering;
        let at = self.head_time.load(Ordering::SeqCst);
        let bound = self.cfg.registry.max_head_age_secs as i64;
        let age = now - at;
        if at > 0 && age <= bound {
            return None;
        }
        let detail = if at == 0 {
            "this node has no verified registry head yet; it answers once it has synced".to_owned()
        } else {
            format!(
                "this node's newest verified registry head was signed {age} s ago ({}), past its {bound} s bound; it answers again once a fresh, consistent head arrives",
                alpr_pki::fmt_time(at)
            )
        };
        // A node that never synced has nothing to lose track of: refused, not alerted.
        if at > 0 && !self.stale_alerted.swap(true, Ordering::SeqCst) {
            tracing::error!(%detail, "ALERT: registry view stale; refusing every inbound query");
            let alert = AuditEntry {
                detail: Some(detail.clone()),
                ..AuditEntry::new(now, Event::Alert, Decision::RegistryStale)
            };
            if let Err(e) = self.audit(&[alert]) {
                tracing::error!(error = %e, "could not log the stale-registry alert");
            }
        }
        Some(detail)
    }

    fn fork_alert(&self, detail: &str) -> Result<(), Error> {
        tracing::error!(detail, "ALERT: registry fork or rewrite detected");
        self.audit(&[AuditEntry {
            detail: Some(detail.to_owned()),
            ..AuditEntry::new(alpr_pki::now_unix(), Event::RegistryFork, Decision::Alert)
        }])
    }

    fn apply_events(
        &self,
        fetched: Fetched<'_>,
        sth: &alpr_proto::pb::SignedTreeHead,
        size: u64,
        root: &Hash,
        now: i64,
    ) -> Result<SyncReport, Error> {
        let _state = self.state_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut db = self.db();
        let mut applied = Vec::new();
        let mut entries: Vec<AuditEntry> = Vec::new();
        db.transaction(|tx| {
            for (index, leaf) in fetched.leaves {
                let index = *index;
                if fetched.keep_hashes {
                    store::registry::append_leaf(tx, index, &merkle::leaf_hash(leaf))?;
                }
                if index < fetched.applied_below {
                    // Applied already, by this node's earlier full syncs.
                    continue;
                }
                let Ok(ev) = RegistryEvent::decode(leaf.as_slice()) else {
                    continue;
                };
                let outcome = self.apply_event(tx, index, &ev);
                // Agreements are registry events; every node's key publications have
                // their own event, so an agency's registry history stays its own.
                let event = if ev.kind == registry::SEALING_KEY_KIND {
                    Event::SealingKey
                } else {
                    Event::RegistryEvent
                };
                match outcome {
                    Ok(Some((what, provider_side))) => {
                        entries.push(AuditEntry {
                            agreement_id: (!ev.agreement_id.is_empty())
                                .then(|| ev.agreement_id.clone()),
                            detail: Some(format!("registry entry {index}: {what}")),
                            ..AuditEntry::new(now, event, Decision::Applied)
                        });
                        if provider_side {
                            // Who may query this node changed: the admins hear of it.
                            entries.push(AuditEntry {
                                agreement_id: Some(ev.agreement_id.clone()),
                                detail: Some(format!("who may query this node changed: {what}")),
                                ..AuditEntry::new(now, Event::ScopeChange, Decision::Alert)
                            });
                        }
                        applied.push(what);
                    }
                    Ok(None) => {}
                    Err(e) => entries.push(AuditEntry {
                        agreement_id: (!ev.agreement_id.is_empty())
                            .then(|| ev.agreement_id.clone()),
                        detail: Some(format!(
                            "registry entry {index} concerns this agency but does not verify: {e}"
                        )),
                        ..AuditEntry::new(now, event, Decision::Rejected)
                    }),
                }
            }
            for (subject, held) in fetched.subjects {
                store::registry::put_subject(tx, subject, held)?;
            }
            store::registry::put_head(tx, size, root, &sth.encode_to_vec(), now)
        })?;
        self.reload_agreements(&db)?;
        if let Some(last) = entries.last_mut() {
            last.state_digest = Some(crate::state::digest(&db)?);
        }
        drop(db);
        self.load_sealing()?;
        if !entries.is_empty() {
            self.audit(&entries)?;
        }
        Ok(SyncReport {
            from: fetched.from,
            to: size,
            applied,
        })
    }

    /// Sync by subject (`[registry] sync = "subjects"`): fetch only the entries concerning
    /// this agency and the sealing keys of the agencies it holds agreements with, each
    /// proved against a verified head consistent with the last ([`subjects::verify_proof`]);
    /// anything that does not verify is a `registry_fork` alert and nothing is applied.
    async fn sync_by_subjects(
        self: &Arc<Self>,
        mut client: BrokerClient<Channel>,
        head: registry::VerifiedHead,
        now: i64,
    ) -> Result<SyncReport, Error> {
        let me = self.ori().to_owned();
        let (mut last, applied_below) = {
            let db = self.db();
            (
                store::registry::last_head(&db)?,
                store::registry::leaf_count(&db)?,
            )
        };
        let from = last.as_ref().map_or(0, |(size, _)| *size);
        if let Some((size, root)) = &last
            && *size == head.size
            && *root == head.root
        {
            self.keep_cosignatures(&head, now)?;
            self.note_head_time(head.timestamp);
            return Ok(SyncReport {
                from,
                to: head.size,
                applied: vec![],
            });
        }
        let mut report = SyncReport {
            from,
            to: from,
            applied: vec![],
        };
        // Each round proves every followed subject against one head; a round brings the
        // rest of a long history, or the keys of agencies an agreement just named.
        loop {
            let mut held: std::collections::BTreeMap<String, subjects::Record> = {
                let db = self.db();
                let mut held: std::collections::BTreeMap<_, _> =
                    store::registry::subjects(&db)?.into_iter().collect();
                let mut follow = vec![subjects::agency(&me), subjects::sealing_key(&me)];
                follow.extend(
                    store::registry::counterparts(&db, &me)?
                        .iter()
                        .map(|o| subjects::sealing_key(o)),
                );
                for f in follow {
                    held.entry(f).or_default();
                }
                held
            };
            let ask: Vec<SubjectCursor> = held
                .iter()
                .map(|(s, r)| SubjectCursor {
                    subject: s.clone(),
                    held: r.count,
                })
                .collect();
            let reply = client
                .get_subjects(SubjectsRequest {
                    subjects: ask.clone(),
                })
                .await?
                .into_inner();
            let sth = reply
                .head
                .ok_or_else(|| Error::RegistryUntrusted("subjects reply without a head".into()))?;
            let rhead = registry::verify_head(&self.trust(), &sth, alpr_pki::now_unix())?;
            self.check_witnessed(&rhead)?;
            let Some(sroot) = rhead.subjects_root else {
                return Err(Error::RegistryUntrusted(format!(
                    "the broker's tree head of size {} carries no subjects index; this broker cannot serve [registry] sync = \"subjects\" (use \"full\")",
                    rhead.size
                )));
            };
            self.check_extends(&mut client, last.as_ref(), &rhead)
                .await?;
            if reply.subjects.len() != ask.len()
                || reply
                    .subjects
                    .iter()
                    .zip(&ask)
                    .any(|(p, a)| p.subject != a.subject)
            {
                let detail = "the subjects reply does not answer the subjects asked for";
                self.fork_alert(detail)?;
                return Err(Error::RegistryUntrusted(detail.into()));
            }
            let mut leaves = Vec::new();
            let mut complete = true;
            let mut cursors = Vec::new();
            for p in &reply.subjects {
                let before = held.get(&p.subject).copied().unwrap_or_default();
                let v = match subjects::verify_proof((rhead.size, &rhead.root, &sroot), &before, p)
                {
                    Ok(v) => v,
                    Err(e) => {
                        self.fork_alert(&format!("registry subjects: {}", e.detail()))?;
                        return Err(Error::RegistryUntrusted(format!(
                            "the broker's subjects proof does not verify: {}",
                            e.detail()
                        )));
                    }
                };
                complete &= v.complete;
                leaves.extend(v.leaves);
                held.insert(p.subject.clone(), v.held);
                cursors.push((p.subject.clone(), v.held));
            }
            if leaves.is_empty() && !complete {
                let detail = "the broker's subjects reply brings no entry while some are missing";
                self.fork_alert(detail)?;
                return Err(Error::RegistryUntrusted(detail.into()));
            }
            leaves.sort_by_key(|(i, _)| *i);
            leaves.dedup_by_key(|(i, _)| *i);
            let node = self.clone();
            let size = rhead.size;
            let root = rhead.root;
            let timestamp = rhead.timestamp;
            let round = tokio::task::spawn_blocking(move || {
                let fetched = Fetched {
                    from,
                    leaves: &leaves,
                    keep_hashes: false,
                    applied_below,
                    subjects: &cursors,
                };
                node.apply_events(fetched, &sth, size, &root, now)
            })
            .await??;
            self.note_head_time(timestamp);
            report.to = round.to;
            report.applied.extend(round.applied);
            last = Some((size, root));
            // New agreements name agencies whose keys this node now follows.
            let follows_more = {
                let db = self.db();
                store::registry::counterparts(&db, &me)?
                    .iter()
                    .any(|o| !held.contains_key(&subjects::sealing_key(o)))
            };
            if complete && !follows_more {
                return Ok(report);
            }
        }
    }

    /// Apply one event if its signed contents concern this agency.
    fn apply_event(
        &self,
        conn: &store::Db,
        index: u64,
        ev: &RegistryEvent,
    ) -> Result<Option<(String, bool)>, Error> {
        let me = self.ori();
        match ev.kind.as_str() {
            registry::SEALING_KEY_KIND => {
                // Every node's key matters here: this node may seal to any of them.
                self.apply_sealing_key(conn, index, ev)
                    .map(|what| Some((what, false)))
            }
            "register" => {
                let Some(sa) = &ev.agreement else {
                    return Ok(None);
                };
                let payload = sa
                    .provider
                    .as_ref()
                    .map(|s| s.payload.as_slice())
                    .unwrap_or_default();
                let Ok(terms) = Agreement::decode(payload) else {
                    return Ok(None);
                };
                if terms.provider_ori != me && terms.requester_ori != me {
                    return Ok(None);
                }
                let v = agreement::verify(&self.trust(), sa, ev.logged_at)?;
                if terms.provider_ori == me {
                    // The owner applies its own state's rules to the registration itself.
                    self.rules.check_requester(
                        &v.requester_admin
                            .jurisdiction
                            .clone()
                            .ok_or_else(|| Error::Usage("requester has no jurisdiction".into()))?,
                        v.requester_admin
                            .agency
                            .as_ref()
                            .map(|a| a.kind)
                            .ok_or_else(|| Error::Usage("requester has no agency".into()))?,
                    )?;
                    agreement::check_declaration(&self.trust(), sa, &v, self.rules, ev.logged_at)?;
                }
                store::put_agreement(conn, &v.id, sa, &v.terms, ev.logged_at)?;
                store::set_registered(conn, &v.id, sa, index, ev.logged_at)?;
                Ok(Some((
                    format!(
                        "{} registered: {} shares with {}",
                        v.id, v.terms.provider_ori, v.terms.requester_ori
                    ),
                    v.terms.provider_ori == me,
                )))
            }
            _ => {
                let Some((sa, registered_at)) = store::signed_agreement(conn, &ev.agreement_id)?
                else {
                    return Ok(None);
                };
                let Some(action) = &ev.action else {
                    return Ok(None);
                };
                let at = registered_at.unwrap_or(ev.logged_at);
                let v = agreement::verify(&self.trust(), &sa, at)?;
                let provider_side = v.terms.provider_ori == me;
                let status = store::agreement_status(conn, &v.id)?
                    .and_then(|s| AgreementStatus::parse(&s))
                    .unwrap_or(AgreementStatus::Revoked);
                let record = AgreementRecord {
                    agreement: v,
                    registered_index: 0,
                    status,
                    history: Vec::<HistoryItem>::new(),
                };
                let (a, who, next) =
                    registry::verify_action(&self.trust(), action, &record, ev.logged_at)?;
                store::set_agreement_status(conn, &ev.agreement_id, next)?;
                Ok(Some((
                    format!(
                        "{} {} by {}: {}",
                        ev.agreement_id,
                        a.action,
                        who.describe(),
                        a.reason
                    ),
                    provider_side,
                )))
            }
        }
    }
}
