//! The broker: verifies endorsed queries, runs admission per target against the
//! registry, forwards concurrently with deadlines, and logs every routing decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use alpr_pki::{Role, Signer, TrustStore, VerifiedIdentity};
use alpr_proto::RefusalReason;
use alpr_proto::admission::{self, AdmissionContext, OpenedQuery, Verdict};
use alpr_proto::agreement::{self, AgreementView};
use alpr_proto::pb::node_inbound_client::NodeInboundClient;
use alpr_proto::pb::{
    RegistryEvent, RouteResponse, Signed, SignedAgreement, SignedTreeHead, TargetResult,
    TargetStatus,
};
use alpr_proto::replay::ReplayMemory;
use alpr_proto::reply::VerifiedReply;
use alpr_proto::rules::StateRules;
use alpr_runtime::tls::TlsIdentity;
use alpr_runtime::wiretap::Tapped;
use prost::Message;
use tonic::transport::Channel;
use tracing::Instrument;

use crate::Error;
use crate::config::BrokerConfig;
use crate::registry::{self as reg, Registry};
use crate::store::{self, Db, LogEntry};
use crate::vocabulary::{Decision, Event};

/// The broker's shared state.
pub struct Broker {
    /// Trust store and TLS server config, reloaded when CRLs change.
    pub(crate) tls: alpr_runtime::tls::ReloadableTls,
    pub(crate) signer: Signer,
    db: Mutex<Db>,
    /// Group-commit writer of routing decisions and results.
    log_writer: store::LogWriter,
    /// gRPC health of the running server (set once it serves): NOT_SERVING while the
    /// routing log cannot be written.
    health: std::sync::OnceLock<alpr_runtime::server::Health>,
    /// Query ids already routed to each target, made durable by the routing log.
    replay: ReplayMemory,
    registry: RwLock<Registry>,
    /// The store is shared with other replicas (PostgreSQL): the registry is caught up
    /// before each decision.
    shared: bool,
    /// Agencies known from registrations, ORI to jurisdiction: read by every admission,
    /// so held in memory (reloaded when another replica's registrations are taken in).
    agencies: RwLock<HashMap<String, String>>,
    nodes: HashMap<String, NodeInboundClient<Tapped<Channel>>>,
    deadline: Duration,
    max_term_days: u32,
    /// Counters and latency histograms.
    pub metrics: Arc<crate::metrics::BrokerMetrics>,
}

/// The routing-log row of a registry request from `peer`: decided `ok` when `result` is,
/// else refused with its reason code and the error as detail.
fn request_entry<T>(
    now: i64,
    event: Event,
    ok: Decision,
    peer: &VerifiedIdentity,
    result: &Result<T, Error>,
) -> LogEntry {
    LogEntry {
        requester: Some(peer.describe()),
        reason_code: result.as_ref().err().map(|e| match e {
            Error::Refused(r) => r.reason().as_str_name().to_owned(),
            _ => "INVALID_INPUT".to_owned(),
        }),
        detail: result.as_ref().err().map(ToString::to_string),
        ..LogEntry::new(
            now,
            event,
            if result.is_ok() {
                ok
            } else {
                Decision::Refused
            },
        )
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

enum Plan {
    Forward { ori: String, agreement_id: String },
    Done(Box<TargetResult>),
}

impl Broker {
    /// Check everything a start checks short of opening the database, and say what was
    /// found, one line each.
    pub fn check_config(cfg: &BrokerConfig) -> Result<Vec<String>, Error> {
        let (_, _, _, me) = Self::identity(cfg)?;
        let mut out = vec![
            format!(
                "broker certificate {}: valid until {}",
                cfg.tls.cert.display(),
                alpr_pki::fmt_time(me.not_after)
            ),
            format!(
                "trust: root {} and {} CRL file(s), each parsed and current",
                cfg.tls.root.display(),
                cfg.tls.crls.len()
            ),
            format!("store: {} (not opened by this check)", cfg.store_location()),
            format!("{} node route(s):", cfg.nodes.len()),
        ];
        for n in &cfg.nodes {
            alpr_pki::claims::validate_ori(&n.ori)
                .map_err(|e| Error::Usage(format!("nodes: {e}")))?;
            out.push(format!(
                "   {} at {} (TLS name {})",
                n.ori, n.addr, n.server_name
            ));
        }
        Ok(out)
    }

    /// The trust store, TLS identity and signer a start loads, and the broker certificate
    /// verified (chain, revocation, role).
    fn identity(
        cfg: &BrokerConfig,
    ) -> Result<(TrustStore, TlsIdentity, Signer, VerifiedIdentity), Error> {
        let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
        let tls = TlsIdentity::load(&cfg.tls.cert, &cfg.tls.key)?;
        let signer = Signer::load(&cfg.tls.cert, &cfg.tls.key)?;
        let me = trust.verify(signer.chain(), alpr_pki::now_unix())?;
        if me.role != Role::Broker {
            return Err(Error::Usage(format!(
                "{} is {} certificate, not a broker certificate",
                cfg.tls.cert.display(),
                me.role.with_article()
            )));
        }
        Ok((trust, tls, signer, me))
    }

    /// Open the broker from its config.
    pub fn open(cfg: &BrokerConfig) -> Result<Arc<Self>, Error> {
        Self::open_tapped(cfg, None)
    }

    /// [`Broker::open`] with its channels to the nodes recorded through `tap` (tests that
    /// show what the broker can see; [`alpr_runtime::wiretap`]).
    pub fn open_tapped(
        cfg: &BrokerConfig,
        tap: Option<alpr_runtime::wiretap::Wiretap>,
    ) -> Result<Arc<Self>, Error> {
        let (trust, tls, signer, _) = Self::identity(cfg)?;
        let location = cfg.store_location();
        let db = Db::open_at(&location)?;
        let registry = Registry::load(&db, &trust)?;
        let agencies = RwLock::new(store::agencies(&db)?.into_iter().collect());
        let shared = db.is_shared();
        let replay = ReplayMemory::new();
        let since = alpr_pki::now_unix() - ReplayMemory::HORIZON_SECS;
        for (id, target, at) in store::routed_ids_since(&db, since)? {
            replay.remember(&id, &target, at);
        }
        let log_writer = store::LogWriter::open_at(&location)?;
        let deadline = Duration::from_millis(cfg.deadline_ms);
        let tls = alpr_runtime::tls::ReloadableTls::new(trust, tls, cfg.tls.crls.clone())?;
        // Its connections to the nodes check each node against the CRLs in force when
        // they are made (reloaded without a restart).
        let client_cfg = tls.client_config()?;
        let mut nodes = HashMap::new();
        for n in &cfg.nodes {
            let target = alpr_runtime::client::Target {
                addr: n.addr.clone(),
                server_name: n.server_name.clone(),
            };
            let ch = alpr_runtime::client::channel(&target, client_cfg.clone(), deadline)?;
            nodes.insert(
                n.ori.clone(),
                NodeInboundClient::new(Tapped::new(ch, tap.clone())),
            );
        }
        Ok(Arc::new(Self {
            tls,
            signer,
            db: Mutex::new(db),
            log_writer,
            health: std::sync::OnceLock::new(),
            replay,
            registry: RwLock::new(registry),
            shared,
            agencies,
            nodes,
            deadline,
            max_term_days: cfg.max_agreement_days,
            metrics: Arc::default(),
        }))
    }

    /// The trust store in force.
    pub fn trust(&self) -> TrustStore {
        self.tls.trust()
    }

    /// Re-read the CRL files and enforce them at once if they changed.
    pub fn reload_crls(&self) -> Result<bool, Error> {
        Ok(self.tls.reload()?)
    }

    /// Lock the database (a poisoned lock still holds a consistent database handle: every
    /// write is one transaction).
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// On a store shared with other replicas, take in the registry leaves they appended
    /// (verifying each) before anything is decided from the registry; a no-op on a store of
    /// this broker's own.
    pub fn sync_registry(&self) -> Result<(), Error> {
        if !self.shared {
            return Ok(());
        }
        let db = self.db();
        let mut reg = self.reg_mut();
        let size = reg.size();
        reg.catch_up(&db, &self.trust())?;
        if reg.size() != size {
            // Registrations at another replica: their agencies too.
            let known = store::agencies(&db)?.into_iter().collect();
            *self.agencies.write().unwrap_or_else(|p| p.into_inner()) = known;
        }
        Ok(())
    }

    fn reg(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn reg_mut(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Register an agreement both admins signed, if the provider's state rules allow it.
    pub fn register(
        &self,
        peer: &VerifiedIdentity,
        sa: &SignedAgreement,
    ) -> Result<(String, u64, SignedTreeHead), Error> {
        let now = alpr_pki::now_unix();
        self.sync_registry()?;
        let result = self.register_inner(sa, now);
        let mut db = self.db();
        let entry = LogEntry {
            agreement_id: result.as_ref().ok().map(|(id, _)| id.clone()),
            rule_version: result.as_ref().ok().map(|(_, v)| v.clone()),
            ..request_entry(now, Event::Register, Decision::Registered, peer, &result)
        };
        store::log(&mut db, &[entry])?;
        let (id, _) = result?;
        let v = agreement::verify(&self.trust(), sa, now)?;
        let leaf = RegistryEvent {
            kind: "register".into(),
            agreement_id: id.clone(),
            agreement: Some(sa.clone()),
            action: None,
            sealing_key: None,
            logged_at: now,
            provider_ori: v.terms.provider_ori.clone(),
            requester_ori: v.terms.requester_ori.clone(),
        }
        .encode_to_vec();
        // The agencies before the leaf: a replica that takes in the leaf finds them.
        for admin in [&v.provider_admin, &v.requester_admin] {
            if let Some(a) = &admin.agency {
                store::put_agency(&db, a)?;
                self.agencies
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(a.ori.clone(), a.jurisdiction.as_str().to_owned());
            }
        }
        let (index, head) =
            self.reg_mut()
                .append(&mut db, &self.trust(), &self.signer, leaf, now)?;
        Ok((id, index, head))
    }

    /// Revoke (a party's admin), suspend or lift (the provider state's regulator) an
    /// agreement: verify the signed action and append it to the registry.
    pub fn act(
        &self,
        peer: &VerifiedIdentity,
        action: &Signed,
    ) -> Result<(u64, SignedTreeHead), Error> {
        let now = alpr_pki::now_unix();
        let (_, a) = alpr_proto::envelope::open_as::<alpr_proto::pb::AgreementAction>(
            &self.trust(),
            action,
            alpr_proto::registry::ACTION,
            now,
        )?;
        self.sync_registry()?;
        let mut db = self.db();
        let result = {
            let reg = self.reg();
            match reg.records().get(&a.agreement_id) {
                None => Err(Error::Refused(alpr_proto::Error::refused(
                    RefusalReason::NoAgreement,
                    format!("no registered agreement {}", a.agreement_id),
                ))),
                Some(rec) => alpr_proto::registry::verify_action(&self.trust(), action, rec, now)
                    .map(|(_, _, _)| rec.agreement.terms.clone())
                    .map_err(Error::from),
            }
        };
        store::log(
            &mut db,
            &[LogEntry {
                detail: Some(match &result {
                    Ok(_) => a.reason.clone(),
                    Err(e) => e.to_string(),
                }),
                agreement_id: Some(a.agreement_id.clone()),
                ..request_entry(
                    now,
                    Event::of_action(&a.action),
                    Decision::Logged,
                    peer,
                    &result,
                )
            }],
        )?;
        let terms = result?;
        let leaf = RegistryEvent {
            kind: a.action.clone(),
            agreement_id: a.agreement_id.clone(),
            agreement: None,
            action: Some(action.clone()),
            sealing_key: None,
            logged_at: now,
            provider_ori: terms.provider_ori,
            requester_ori: terms.requester_ori,
        }
        .encode_to_vec();
        self.reg_mut()
            .append(&mut db, &self.trust(), &self.signer, leaf, now)
    }

    /// Append a node's signed sealing key to the registry: signed by a node certificate of
    /// the key's own agency (the connected node), suite known, key well formed, dated now.
    pub fn publish_sealing_key(
        &self,
        peer: &VerifiedIdentity,
        signed: &Signed,
    ) -> Result<(u64, SignedTreeHead), Error> {
        let now = alpr_pki::now_unix();
        let trust = self.trust();
        self.sync_registry()?;
        let result = alpr_proto::registry::verify_sealing_key(&trust, signed, 0, now)
            .map_err(Error::from)
            .and_then(|k| {
                if peer.role != Role::Node || peer.ori() != Some(k.ori.as_str()) {
                    return Err(alpr_proto::Error::refused(
                        RefusalReason::ClaimMismatch,
                        format!(
                            "a sealing key of {} is published by that agency's node; connection from {}",
                            k.ori,
                            peer.describe()
                        ),
                    )
                    .into());
                }
                if (k.published_at - now).abs() > alpr_proto::admission::CLOCK_SKEW_SECS {
                    return Err(alpr_proto::Error::refused(
                        RefusalReason::InvalidInput,
                        "a sealing key must be published as it is signed (published_at is not now)",
                    )
                    .into());
                }
                Ok(k)
            });
        let mut db = self.db();
        store::log(
            &mut db,
            &[LogEntry {
                detail: Some(match &result {
                    Ok(k) => format!("sealing key {} ({:?})", hex::encode(k.key_id), k.suite),
                    Err(e) => e.to_string(),
                }),
                ..request_entry(now, Event::SealingKey, Decision::Logged, peer, &result)
            }],
        )?;
        let k = result?;
        let leaf = RegistryEvent {
            kind: alpr_proto::registry::SEALING_KEY_KIND.into(),
            agreement_id: String::new(),
            agreement: None,
            action: None,
            sealing_key: Some(signed.clone()),
            logged_at: now,
            provider_ori: k.ori.clone(),
            requester_ori: String::new(),
        }
        .encode_to_vec();
        self.reg_mut()
            .append(&mut db, &trust, &self.signer, leaf, now)
    }

    /// Sign the current tree head again at `now` (same size and root, its cosignatures
    /// kept), so that nodes can tell a current view from a frozen one. Returns the new
    /// head's timestamp, or `None` while nothing is registered (the empty head is signed
    /// fresh on every request).
    pub fn refresh_head(&self, now: i64) -> Result<Option<i64>, Error> {
        let db = self.db();
        let Some(mut sth) = reg::latest_head(&db)? else {
            return Ok(None);
        };
        let th = signed_tree_head(&sth)?;
        // A head signed before the subjects index existed gets its root now (nodes that
        // sync by subject need it; regulators cosign the head again).
        let missing_index = th.subjects_root.is_empty();
        if th.timestamp >= now && !missing_index {
            return Ok(Some(th.timestamp));
        }
        let mut fresh = alpr_proto::pb::TreeHead {
            timestamp: now.max(th.timestamp),
            ..th
        };
        if missing_index {
            let mut reg = self.reg_mut();
            if reg.size() != fresh.size {
                // Another replica appended since: its head is the newest, not this one.
                return Ok(Some(th.timestamp));
            }
            fresh.subjects_root = reg.subjects_root().to_vec();
        }
        sth.head = Some(alpr_proto::envelope::seal(
            &self.signer,
            alpr_proto::registry::TREE_HEAD,
            &fresh,
        )?);
        reg::put_head(&db, fresh.size, &sth)?;
        Ok(Some(now))
    }

    /// The latest signed tree head (a signed empty head if nothing is registered yet).
    pub fn head(&self) -> Result<SignedTreeHead, Error> {
        if let Some(h) = reg::latest_head(&self.db())? {
            return Ok(h);
        }
        let th = alpr_proto::pb::TreeHead {
            size: 0,
            root: alpr_proto::merkle::empty_root().to_vec(),
            timestamp: alpr_pki::now_unix(),
            subjects_root: alpr_proto::subjects::EMPTY.to_vec(),
        };
        Ok(SignedTreeHead {
            head: Some(alpr_proto::envelope::seal(
                &self.signer,
                alpr_proto::registry::TREE_HEAD,
                &th,
            )?),
            cosignatures: vec![],
        })
    }

    /// The registry as a regulator sees it (head verified, records replayed).
    pub fn regulator_view(&self) -> Result<crate::regulator::RegistryView, Error> {
        self.sync_registry()?;
        let head =
            alpr_proto::registry::verify_head(&self.trust(), &self.head()?, alpr_pki::now_unix())?;
        let reg = self.reg();
        Ok(crate::regulator::RegistryView {
            head,
            records: reg.records().clone(),
            sealing_keys: reg.state().sealing_keys.clone(),
        })
    }

    /// Registry leaves `[start, end)` (at most 1000).
    pub fn entries(&self, start: u64, end: u64) -> Vec<Vec<u8>> {
        if let Err(e) = self.sync_registry() {
            tracing::error!(error = %e, "registry catch-up failed; serving the leaves held");
        }
        self.reg()
            .entries(start, end.min(start.saturating_add(1000)))
    }

    /// Inclusion proof.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<alpr_proto::merkle::Hash>, Error> {
        self.sync_registry()?;
        self.reg().inclusion(index, size)
    }

    /// Consistency proof.
    pub fn consistency(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<alpr_proto::merkle::Hash>, Error> {
        self.sync_registry()?;
        self.reg().consistency(first, second)
    }

    /// The leaves concerning each asked subject after those the asker holds, with their
    /// inclusion proofs and each subject's record (or absence) proved, all against the
    /// newest signed head; at most [`alpr_proto::subjects::MAX_ENTRIES_PER_REPLY`] leaves
    /// in all (the asker asks again from its new counts).
    pub fn subjects(
        &self,
        req: &alpr_proto::pb::SubjectsRequest,
    ) -> Result<alpr_proto::pb::Subjects, Error> {
        use alpr_proto::subjects::{MAX_ENTRIES_PER_REPLY, MAX_SUBJECTS_PER_REQUEST};
        if req.subjects.len() > MAX_SUBJECTS_PER_REQUEST {
            return Err(alpr_proto::Error::refused(
                RefusalReason::InvalidInput,
                format!(
                    "{} subjects asked for; at most {MAX_SUBJECTS_PER_REQUEST} in one request",
                    req.subjects.len()
                ),
            )
            .into());
        }
        self.sync_registry()?;
        let head = {
            let head = self.head()?;
            let size = head_size(&head)?;
            if size.1.is_empty() && size.0 > 0 {
                self.refresh_head(alpr_pki::now_unix())?;
                self.head()?
            } else {
                head
            }
        };
        let (size, subjects_root) = head_size(&head)?;
        let mut reg = self.reg_mut();
        if reg.size() != size || reg.subjects_root().as_slice() != subjects_root.as_slice() {
            return Err(Error::Unavailable(format!(
                "the registry moved while the proofs were made (head of size {size}, {} held); ask again",
                reg.size()
            )));
        }
        let mut budget = MAX_ENTRIES_PER_REPLY;
        let mut out = Vec::with_capacity(req.subjects.len());
        for c in &req.subjects {
            let p = reg.subject_proof(&c.subject, c.held, budget)?;
            budget -= p.entries.len();
            out.push(p);
        }
        Ok(alpr_proto::pb::Subjects {
            head: Some(head),
            subjects: out,
        })
    }

    /// Attach a regulator's cosignature to the tree head it names.
    pub fn cosign(&self, peer: &VerifiedIdentity, cosig: &Signed) -> Result<SignedTreeHead, Error> {
        let now = alpr_pki::now_unix();
        let (id, cs): (_, alpr_proto::pb::Cosignature) = alpr_proto::envelope::open_as(
            &self.trust(),
            cosig,
            alpr_proto::registry::COSIGNATURE,
            now,
        )?;
        if id.role != Role::Regulator || id.serial != peer.serial {
            return Err(alpr_proto::Error::refused(
                RefusalReason::CertInvalid,
                "cosignatures come from the connected regulator",
            )
            .into());
        }
        let th = alpr_proto::pb::TreeHead::decode(cs.tree_head.as_slice())
            .map_err(|e| Error::Usage(format!("cosigned tree head does not decode: {e}")))?;
        let db = self.db();
        let mut sth = reg::head_of_size(&db, th.size)?
            .ok_or_else(|| Error::Usage(format!("no tree head of size {}", th.size)))?;
        // The stored head of that size may have been signed again since (a fresher
        // timestamp); the cosignature vouches for the tree: the same size, root and
        // subjects root.
        let stored = sth
            .head
            .as_ref()
            .and_then(|h| alpr_proto::pb::TreeHead::decode(h.payload.as_slice()).ok());
        if stored.is_none_or(|s| s.root != th.root || s.subjects_root != th.subjects_root) {
            return Err(Error::Usage(
                "cosignature is over a tree head this broker did not sign".into(),
            ));
        }
        sth.cosignatures.retain(|c| {
            alpr_proto::envelope::open(&self.trust(), c, alpr_proto::registry::COSIGNATURE, now)
                .map(|(i, _)| i.serial != id.serial)
                .unwrap_or(false)
        });
        sth.cosignatures.push(cosig.clone());
        reg::put_head(&db, th.size, &sth)?;
        Ok(sth)
    }

    fn register_inner(&self, sa: &SignedAgreement, now: i64) -> Result<(String, String), Error> {
        let v = agreement::verify(&self.trust(), sa, now)?;
        if v.terms.valid_until <= now {
            return Err(alpr_proto::Error::refused(
                RefusalReason::AgreementExpired,
                "agreement has already expired",
            )
            .into());
        }
        let (Some(provider), Some(requester)) =
            (&v.provider_admin.agency, &v.requester_admin.agency)
        else {
            return Err(Error::Usage(
                "admin certificates carry no agency claims".into(),
            ));
        };
        let rules = StateRules::for_jurisdiction(&provider.jurisdiction)?;
        rules.check_requester(&requester.jurisdiction, requester.kind)?;
        agreement::check_declaration(&self.trust(), sa, &v, rules, now)?;
        if v.terms.valid_until - v.terms.valid_from > i64::from(self.max_term_days) * 86_400 {
            return Err(alpr_proto::Error::refused(
                RefusalReason::InvalidInput,
                format!("term longer than this registry's maximum of {} days; agreements must be renewed", self.max_term_days),
            )
            .into());
        }
        Ok((v.id, rules.version.clone()))
    }

    /// Registered agreements with status, optionally where `ori` is a party.
    pub fn list(&self, ori: Option<&str>) -> Result<Vec<(AgreementView, SignedAgreement)>, Error> {
        self.sync_registry()?;
        let reg = self.reg();
        Ok(reg
            .views()
            .into_iter()
            .filter(|v| ori.is_none_or(|o| v.terms.provider_ori == o || v.terms.requester_ori == o))
            .filter_map(|v| reg.signed(&v.id).map(|sa| (v, sa)))
            .collect())
    }

    /// Route an endorsed query from `peer` (the endorsing node's TLS identity).
    pub async fn route(
        self: &Arc<Self>,
        peer: Result<VerifiedIdentity, Error>,
        endorsed: Signed,
    ) -> Result<RouteResponse, Error> {
        let now = alpr_pki::now_unix();
        let started = tokio::time::Instant::now();
        // Signatures and chains are checked once here, off the async workers; admission
        // per target reuses the result.
        let opened = {
            let me = self.clone();
            let endorsed = endorsed.clone();
            tokio::task::spawn_blocking(move || admission::open(&me.trust(), &endorsed, now))
                .await?
        };
        let facts = opened.facts().clone();
        let size = alpr_proto::limits::check_size("the endorsed query", endorsed.encoded_len());
        let checked = peer.and_then(|p| match size.err().or_else(|| opened.refusal()) {
            Some(e) => Err(e.into()),
            None => Ok(p),
        });
        let peer = match checked {
            Ok(p) => p,
            Err(e) => {
                // Refused before any target was considered: log who and why.
                let (reason, detail) = match &e {
                    Error::Refused(r) => (r.reason().as_str_name().to_owned(), r.detail()),
                    other => ("CERT_INVALID".to_owned(), other.to_string()),
                };
                let logged = self
                    .log_writer
                    .append(vec![LogEntry {
                        query_id: facts.query.as_ref().map(|q| hex::encode(&q.query_id)),
                        requester: facts.requester(),
                        reason_code: Some(reason),
                        detail: Some(detail),
                        ..LogEntry::new(now, Event::Route, Decision::Refused)
                    }])
                    .await;
                self.note_log(logged)?;
                return Err(e);
            }
        };
        let (Some(endorser), Some(query)) = (facts.endorser.clone(), facts.query.clone()) else {
            return Err(Error::Usage("query not decoded".into()));
        };
        if peer.role != Role::Node || peer.ori() != endorser.ori() {
            let e = alpr_proto::Error::refused(
                RefusalReason::ClaimMismatch,
                format!(
                    "connection from {} carries an endorsement by {}",
                    peer.describe(),
                    endorser.describe()
                ),
            );
            return Err(self.refuse_whole(now, &query, &peer, e).await);
        }
        let mut targets = query.targets.clone();
        targets.dedup();
        if targets.len() != query.targets.len() || {
            let mut s = targets.clone();
            s.sort();
            s.dedup();
            s.len() != targets.len()
        } {
            let e =
                alpr_proto::Error::refused(RefusalReason::InvalidInput, "a target is named twice");
            return Err(self.refuse_whole(now, &query, &peer, e).await);
        }
        let requester = facts.requester();

        // Admission per target, logged before anything is forwarded.
        let me = self.clone();
        let (opened, mut plans, mut entries) = tokio::task::spawn_blocking(move || {
            me.plan(&opened, &targets, now)
                .map(|(plans, entries)| (opened, plans, entries))
        })
        .await??;
        // Nothing is forwarded before the routing decisions are durable, with the claims
        // that keep other replicas from routing the same query again.
        let claim = store::Claim {
            query_id: query.query_id.clone(),
            now,
        };
        let replays =
            self.note_log(self.log_writer.append_claimed(entries.clone(), claim).await)?;
        if !replays.is_empty() {
            store::mark_replays(&mut entries, &replays);
            Self::refuse_replays(&mut plans, &replays, &query.query_id);
        }
        self.count(&entries);

        let sealed = facts.sealed;
        // The deadline counts from when the query reached the broker, not from each
        // forward: every target's status is back within it, however long admission and
        // logging of a wide query took.
        let remaining = (query.expires_at - now).max(0) as u64;
        let budget = self.deadline.min(Duration::from_secs(remaining));
        let deadline = (started + budget, budget);
        // Each target gets the endorsement with only its own box attached and that box's
        // proof from the signed box tree: a query to N targets sends each one box and
        // log2(N) hashes, not N of either.
        let (bare, attached, proofs) = {
            let mut bare = endorsed;
            let attached = std::mem::take(&mut bare.sealed_boxes);
            let proofs = std::mem::take(&mut bare.sealed_box_proofs);
            (bare, attached, proofs)
        };
        // Every box came (a requesting node attaches them all): prove each from the tree
        // admission built while checking the signed root. Otherwise the boxes came with
        // their proofs, passed on as they are.
        let tree = facts.box_tree.clone();
        let query = Arc::new(query);
        let futures = plans.into_iter().map(|plan| {
            let me = self.clone();
            let endorsed = match &plan {
                Plan::Forward { ori, .. } => {
                    let own = opened
                        .box_index(ori)
                        .and_then(|i| attached.get(i).map(|bytes| (i, bytes)));
                    let (sealed_boxes, sealed_box_proofs) = match own {
                        Some((i, bytes)) => {
                            let proof = match &tree {
                                Some(t) => alpr_proto::envelope::box_proof(t, i).ok(),
                                None => proofs.get(i).cloned(),
                            };
                            (vec![bytes.clone()], proof.into_iter().collect())
                        }
                        None => (vec![], vec![]),
                    };
                    Signed {
                        sealed_boxes,
                        sealed_box_proofs,
                        ..bare.clone()
                    }
                }
                Plan::Done(_) => Signed::default(),
            };
            let query = query.clone();
            async move {
                match plan {
                    Plan::Done(r) => (*r, None),
                    Plan::Forward { ori, agreement_id } => {
                        let span = tracing::info_span!("forward", otel.name = "broker.forward", target = %ori);
                        let started = std::time::Instant::now();
                        let r = me.forward(&ori, endorsed, &query, sealed, deadline).instrument(span).await;
                        me.metrics.forward_seconds.observe(started.elapsed().as_secs_f64());
                        (r, Some(agreement_id))
                    }
                }
            }
        });
        let outcomes = futures::future::join_all(futures).await;
        let done = alpr_pki::now_unix();
        let entries: Vec<LogEntry> = outcomes
            .iter()
            .filter(|(_, a)| a.is_some())
            .map(|(r, a)| LogEntry {
                query_id: Some(hex::encode(&query.query_id)),
                requester: requester.clone(),
                target: Some(r.ori.clone()),
                reason_code: (r.status != TargetStatus::Answered as i32).then(|| {
                    RefusalReason::try_from(r.reason)
                        .map(|x| x.as_str_name().to_owned())
                        .unwrap_or_default()
                }),
                detail: (!r.detail.is_empty()).then(|| r.detail.clone()),
                agreement_id: a.clone(),
                ..LogEntry::new(
                    done,
                    Event::RouteResult,
                    Decision::of_target_status(r.status),
                )
            })
            .collect();
        // Outcomes are recorded after the fact: the decision to forward was durable before
        // anything left, and each target's signed answer or refusal is in its own audit log
        // and the requester's; waiting for this commit would add one fsync to every query.
        if !entries.is_empty() {
            self.log_writer.append_unawaited(entries);
        }
        Ok(RouteResponse {
            query_id: query.query_id.clone(),
            results: outcomes.into_iter().map(|(r, _)| r).collect(),
        })
    }

    /// Log the refusal of a whole query (before any target was considered) and return it.
    async fn refuse_whole(
        &self,
        now: i64,
        query: &alpr_proto::pb::Query,
        peer: &VerifiedIdentity,
        e: alpr_proto::Error,
    ) -> Error {
        let logged = self
            .log_writer
            .append(vec![LogEntry {
                query_id: Some(hex::encode(&query.query_id)),
                requester: Some(peer.describe()),
                reason_code: Some(e.reason().as_str_name().into()),
                detail: Some(e.detail()),
                ..LogEntry::new(now, Event::Route, Decision::Refused)
            }])
            .await;
        match self.note_log(logged) {
            Ok(()) => e.into(),
            Err(log_error) => log_error,
        }
    }

    /// Admission for each target, and the routing-log rows recording it.
    fn plan(
        &self,
        opened: &OpenedQuery,
        targets: &[String],
        now: i64,
    ) -> Result<(Vec<Plan>, Vec<LogEntry>), Error> {
        self.sync_registry()?;
        // Only the agreements this query can use: between its targets and its requester
        // (and the agency it is made on behalf of), through the registry's parties index.
        let agreements = match &opened.facts().query {
            Some(q) => {
                let mut requesters = vec![q.requester_ori.as_str()];
                if !q.on_behalf_of_ori.is_empty() {
                    requesters.push(q.on_behalf_of_ori.as_str());
                }
                self.reg().views_between(targets, &requesters)
            }
            None => Vec::new(),
        };
        let trust = self.trust();
        let mut plans = Vec::with_capacity(targets.len());
        let mut entries = Vec::with_capacity(targets.len());
        // The same for every target: admission decides from `opened`'s facts and leaves them.
        let query_id = opened
            .facts()
            .query
            .as_ref()
            .map(|q| hex::encode(&q.query_id));
        let requester = opened.facts().requester();
        for t in targets {
            let known = self
                .agencies
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(t)
                .cloned();
            if known.is_none() && !self.nodes.contains_key(t) {
                let detail = format!(
                    "no agency {t} is known to this broker (no route to it and no agreement with it registered); check the ORI"
                );
                entries.push(LogEntry {
                    target: Some(t.clone()),
                    query_id: query_id.clone(),
                    requester: requester.clone(),
                    reason_code: Some(RefusalReason::UnknownAgency.as_str_name().into()),
                    detail: Some(detail.clone()),
                    ..LogEntry::new(now, Event::Route, Decision::Refused)
                });
                plans.push(Plan::Done(Box::new(TargetResult {
                    ori: t.clone(),
                    status: TargetStatus::Refused as i32,
                    reason: RefusalReason::UnknownAgency as i32,
                    detail,
                    reply: None,
                    decided_by: "broker".into(),
                    sealed_reply: None,
                })));
                continue;
            }
            let rules = match known.and_then(|j| j.parse().ok()) {
                Some(j) => StateRules::for_jurisdiction(&j)?,
                None => {
                    StateRules::for_jurisdiction(&"US".parse().map_err(alpr_proto::Error::from)?)?
                }
            };
            // The provider's system as its node last published it (states that approve
            // systems are checked against it here; its node checks its own build too).
            let system = self
                .reg()
                .state()
                .sealing_keys
                .get(t)
                .and_then(|keys| keys.last())
                .map(|k| (k.product.clone(), k.product_version.clone()))
                .unwrap_or_default();
            let ctx = AdmissionContext {
                trust: &trust,
                provider_ori: t,
                rules,
                policy: None,
                agreements: &agreements,
                replay: &self.replay,
                now,
                provider_system: Some((system.0.as_str(), system.1.as_str())),
            };
            let mut entry = LogEntry {
                target: Some(t.clone()),
                query_id: query_id.clone(),
                requester: requester.clone(),
                ..LogEntry::new(now, Event::Route, Decision::Refused)
            };
            match admission::decide(&ctx, opened) {
                Verdict::Admitted {
                    agreement_id,
                    rule_version,
                    ..
                } => {
                    entry.decision = Decision::Forwarded;
                    entry.agreement_id = Some(agreement_id.clone());
                    entry.rule_version = Some(rule_version);
                    if opened.is_sealed() && opened.box_for(t).is_none() {
                        let detail =
                            format!("the requesting node sealed no box (or more than one) for {t}");
                        entry.decision = Decision::Refused;
                        entry.reason_code = Some(RefusalReason::SealRequired.as_str_name().into());
                        entry.detail = Some(detail.clone());
                        plans.push(Plan::Done(Box::new(TargetResult {
                            ori: t.clone(),
                            status: TargetStatus::Refused as i32,
                            reason: RefusalReason::SealRequired as i32,
                            detail,
                            reply: None,
                            decided_by: "broker".into(),
                            sealed_reply: None,
                        })));
                    } else if !self.nodes.contains_key(t) {
                        entry.decision = Decision::Unavailable;
                        entry.detail = Some("no route to this agency's node".into());
                        plans.push(Plan::Done(Box::new(TargetResult {
                            ori: t.clone(),
                            status: TargetStatus::Unavailable as i32,
                            reason: RefusalReason::Unavailable as i32,
                            detail: "no route to this agency's node".into(),
                            reply: None,
                            decided_by: "broker".into(),
                            sealed_reply: None,
                        })));
                    } else {
                        plans.push(Plan::Forward {
                            ori: t.clone(),
                            agreement_id,
                        });
                    }
                }
                Verdict::Refused {
                    reason,
                    detail,
                    rule_version,
                } => {
                    entry.decision = Decision::Refused;
                    entry.reason_code = Some(reason.as_str_name().into());
                    entry.detail = Some(detail.clone());
                    entry.rule_version = Some(rule_version);
                    plans.push(Plan::Done(Box::new(TargetResult {
                        ori: t.clone(),
                        status: TargetStatus::Refused as i32,
                        reason: reason as i32,
                        detail,
                        reply: None,
                        decided_by: "broker".into(),
                        sealed_reply: None,
                    })));
                }
            }
            entries.push(entry);
        }
        Ok((plans, entries))
    }

    /// Count the routing decisions as they were made durable.
    fn count(&self, entries: &[LogEntry]) {
        for e in entries {
            self.metrics
                .routing_decisions
                .get_or_create(&crate::metrics::DecisionReason {
                    decision: e.decision.to_string(),
                    reason: e.reason_code.clone().unwrap_or_default(),
                })
                .inc();
        }
    }

    /// The targets another replica had routed this query to, refused here as replays: their
    /// rows were written as refusals (with the claims of the rest, in one transaction).
    fn refuse_replays(plans: &mut [Plan], replays: &[String], query_id: &[u8]) {
        for plan in plans.iter_mut() {
            let Plan::Forward { ori, .. } = plan else {
                continue;
            };
            if !replays.contains(ori) {
                continue;
            }
            *plan = Plan::Done(Box::new(TargetResult {
                ori: ori.clone(),
                status: TargetStatus::Refused as i32,
                reason: RefusalReason::Replay as i32,
                detail: store::replay_detail(&hex::encode(query_id), ori),
                reply: None,
                decided_by: "broker".into(),
                sealed_reply: None,
            }));
        }
    }

    /// Forward to `ori`'s node and check its reply; unavailable when there is no reply by
    /// `deadline` (`budget` after the query reached the broker).
    async fn forward(
        &self,
        ori: &str,
        endorsed: Signed,
        query: &alpr_proto::pb::Query,
        sealed: bool,
        (deadline, budget): (tokio::time::Instant, Duration),
    ) -> TargetResult {
        let unavailable = |detail: String| TargetResult {
            ori: ori.to_owned(),
            status: TargetStatus::Unavailable as i32,
            reason: RefusalReason::Unavailable as i32,
            detail,
            reply: None,
            decided_by: "broker".into(),
            sealed_reply: None,
        };
        let Some(client) = self.nodes.get(ori) else {
            return unavailable("no route".into());
        };
        let late = || unavailable(format!("no answer within {} ms", budget.as_millis()));
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return late();
        }
        let mut req = tonic::Request::new(endorsed);
        req.set_timeout(left);
        alpr_runtime::telemetry::inject_current(req.metadata_mut());
        let mut client = client.clone();
        if sealed {
            let reply = match tokio::time::timeout_at(deadline, client.answer_sealed(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => return unavailable(format!("node error: {}", status.message())),
                Err(_) => return late(),
            };
            return self.check_sealed_reply(ori, reply, query);
        }
        let reply = match tokio::time::timeout_at(deadline, client.answer_query(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return unavailable(format!("node error: {}", status.message())),
            Err(_) => return late(),
        };
        let now = alpr_pki::now_unix();
        // The reply must pass the one reply check (alpr_proto::reply) before it is relayed
        // as an answer or a refusal; otherwise the target is reported as a bad reply.
        match alpr_proto::reply::verify(&self.trust(), ori, &reply, query, now) {
            Ok(VerifiedReply::Answer { .. }) => TargetResult {
                ori: ori.to_owned(),
                status: TargetStatus::Answered as i32,
                reason: 0,
                detail: String::new(),
                reply: Some(reply),
                decided_by: ori.to_owned(),
                sealed_reply: None,
            },
            Ok(VerifiedReply::Refusal { refusal, .. }) => TargetResult {
                ori: ori.to_owned(),
                status: TargetStatus::Refused as i32,
                reason: refusal.reason,
                detail: refusal.detail,
                reply: Some(reply),
                decided_by: ori.to_owned(),
                sealed_reply: None,
            },
            Err(e) => TargetResult {
                ori: ori.to_owned(),
                status: TargetStatus::BadReply as i32,
                reason: RefusalReason::BadReply as i32,
                detail: e.detail(),
                reply: None,
                decided_by: "broker".into(),
                sealed_reply: None,
            },
        }
    }

    /// Relay a hit report of a shared hot list from the node whose camera read the plate to
    /// the list's owner. The sender must be `provider_ori`'s node (its TLS certificate) and
    /// an agreement from it to `owner_ori` covering hot lists must be in force; the report
    /// itself is sealed to the owner, who verifies and logs it. Each decision and outcome is
    /// a routing-log row (`hit_report`), durable before the report goes on.
    pub async fn report_hit(
        self: &Arc<Self>,
        peer: Result<VerifiedIdentity, Error>,
        report: alpr_proto::pb::HitReport,
    ) -> Result<alpr_proto::pb::HitReceipt, Error> {
        use alpr_proto::pb::HitReceipt;
        let now = alpr_pki::now_unix();
        let refuse = |reason: RefusalReason, detail: String| HitReceipt {
            accepted: false,
            reason: reason as i32,
            detail,
            decided_by: "broker".into(),
        };
        let decision = match &peer {
            Ok(p)
                if p.role == alpr_pki::Role::Node
                    && p.ori() == Some(report.provider_ori.as_str()) =>
            {
                let in_force = self
                    .reg()
                    .views_between(
                        std::slice::from_ref(&report.provider_ori),
                        &[report.owner_ori.as_str()],
                    )
                    .into_iter()
                    .find(|a| {
                        a.status == alpr_proto::agreement::AgreementStatus::Active
                            && a.terms.valid_from <= now
                            && now < a.terms.valid_until
                            && a.terms.data_types.iter().any(|d| d == "hotlists")
                    });
                match in_force {
                    Some(a) => Ok(a.id),
                    None => Err(refuse(
                        RefusalReason::NoAgreement,
                        format!(
                            "no agreement from {} to {} covering hot lists is in force",
                            report.provider_ori, report.owner_ori
                        ),
                    )),
                }
            }
            Ok(p) => Err(refuse(
                RefusalReason::CertInvalid,
                format!(
                    "a hit report of {} must come from its node; peer is {}",
                    report.provider_ori,
                    p.describe()
                ),
            )),
            Err(e) => Err(refuse(RefusalReason::CertInvalid, e.to_string())),
        };
        let mut row = LogEntry {
            query_id: Some(hex::encode(&report.share_id)),
            requester: Some(format!("node@{}", report.provider_ori)),
            target: Some(report.owner_ori.clone()),
            ..LogEntry::new(now, Event::HitReport, Decision::Forwarded)
        };
        let agreement = match decision {
            Ok(id) => id,
            Err(receipt) => {
                row.decision = Decision::Refused;
                row.reason_code = RefusalReason::try_from(receipt.reason)
                    .ok()
                    .map(|r| r.as_str_name().to_owned());
                row.detail = Some(receipt.detail.clone());
                self.note_log(self.log_writer.append(vec![row]).await)?;
                return Ok(receipt);
            }
        };
        row.agreement_id = Some(agreement);
        self.note_log(self.log_writer.append(vec![row.clone()]).await)?;
        let deadline = self.deadline;
        let receipt = match self.nodes.get(&report.owner_ori) {
            None => refuse(RefusalReason::Unavailable, "no route".into()),
            Some(client) => {
                let mut req = tonic::Request::new(report);
                req.set_timeout(deadline);
                match tokio::time::timeout(deadline, client.clone().receive_hit(req)).await {
                    Ok(Ok(r)) => r.into_inner(),
                    Ok(Err(status)) => refuse(
                        RefusalReason::Unavailable,
                        format!("node error: {}", status.message()),
                    ),
                    Err(_) => refuse(
                        RefusalReason::Unavailable,
                        format!("no answer within {} ms", deadline.as_millis()),
                    ),
                }
            }
        };
        row.at = alpr_pki::now_unix();
        row.event = Event::RouteResult;
        row.decision = if receipt.accepted {
            Decision::Answered
        } else if receipt.reason == RefusalReason::Unavailable as i32 {
            Decision::Unavailable
        } else {
            Decision::Refused
        };
        row.reason_code = (!receipt.accepted)
            .then(|| RefusalReason::try_from(receipt.reason).ok())
            .flatten()
            .map(|r| r.as_str_name().to_owned());
        row.detail = (!receipt.accepted).then(|| receipt.detail.clone());
        self.note_log(self.log_writer.append(vec![row]).await)?;
        Ok(receipt)
    }

    /// A target's reply to a sealed query, as far as the broker can judge it: it came from
    /// the target's node over mTLS, names this query and that target, and says answered or
    /// refused (with a reason). What it holds the broker cannot read; the requesting node
    /// opens and verifies it. A clear refusal (the target could not open its box) is
    /// verified like any refusal.
    fn check_sealed_reply(
        &self,
        ori: &str,
        reply: alpr_proto::pb::SealedReply,
        query: &alpr_proto::pb::Query,
    ) -> TargetResult {
        let bad = |detail: String| TargetResult {
            ori: ori.to_owned(),
            status: TargetStatus::BadReply as i32,
            reason: RefusalReason::BadReply as i32,
            detail,
            reply: None,
            decided_by: "broker".into(),
            sealed_reply: None,
        };
        if reply.provider_ori != ori || reply.query_id != query.query_id {
            return bad(format!(
                "sealed reply from {ori}'s node names provider {:?} or another query",
                reply.provider_ori
            ));
        }
        let status = TargetStatus::try_from(reply.status).unwrap_or(TargetStatus::Unspecified);
        if let Some(clear) = &reply.clear_refusal {
            let now = alpr_pki::now_unix();
            return match alpr_proto::reply::verify(&self.trust(), ori, clear, query, now) {
                Ok(VerifiedReply::Refusal { refusal, .. }) => TargetResult {
                    ori: ori.to_owned(),
                    status: TargetStatus::Refused as i32,
                    reason: refusal.reason,
                    detail: refusal.detail,
                    reply: Some(clear.clone()),
                    decided_by: ori.to_owned(),
                    sealed_reply: None,
                },
                Ok(VerifiedReply::Answer { .. }) => bad(format!(
                    "{ori} sent an answer in the clear to a sealed query"
                )),
                Err(e) => bad(e.detail()),
            };
        }
        match status {
            TargetStatus::Answered | TargetStatus::Refused if !reply.ciphertext.is_empty() => {
                TargetResult {
                    ori: ori.to_owned(),
                    status: status as i32,
                    reason: if status == TargetStatus::Refused {
                        reply.reason
                    } else {
                        0
                    },
                    detail: String::new(),
                    reply: None,
                    decided_by: ori.to_owned(),
                    sealed_reply: Some(reply),
                }
            }
            _ => bad(format!(
                "sealed reply from {ori} says {} and carries {} bytes",
                status.as_str_name(),
                reply.ciphertext.len()
            )),
        }
    }

    /// Log a request the transport could not decode (refused with `INVALID_INPUT`).
    pub async fn log_undecodable(&self, u: alpr_runtime::undecodable::Undecodable) {
        let now = alpr_pki::now_unix();
        let requester = match &u.peer_certs {
            Some(c) => self
                .trust()
                .verify(c, now)
                .map(|id| id.describe())
                .unwrap_or_else(|e| format!("unverified peer ({e})")),
            None => "unauthenticated peer".into(),
        };
        let entry = LogEntry {
            requester: Some(requester),
            reason_code: Some(RefusalReason::InvalidInput.as_str_name().into()),
            detail: Some(u.detail),
            ..LogEntry::new(
                now,
                if u.method.ends_with("/RouteQuery") {
                    Event::Route
                } else {
                    Event::Request
                },
                Decision::Refused,
            )
        };
        if let Err(e) = self.note_log(self.log_writer.append(vec![entry]).await) {
            tracing::error!(error = %e, "ALERT: could not log an undecodable request");
        }
    }

    /// Report through `health` (the server's gRPC health): NOT_SERVING while routing-log
    /// rows cannot be made durable (every query is refused then: nothing is forwarded
    /// before its decision is durable), SERVING again after the next durable append.
    pub fn set_health(&self, health: alpr_runtime::server::Health) {
        let _ = self.health.set(health);
    }

    /// While reporting NOT_SERVING, try the routing log (an empty durable append): back to
    /// SERVING as soon as it can be written again. A no-op while serving.
    pub async fn probe_log(&self) {
        if self.health.get().is_some_and(|h| !h.is_serving()) {
            let _ = self.note_log(self.log_writer.flush().await);
        }
    }

    /// Health follows the outcome `r` of a routing-log append.
    fn note_log<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        if let Some(h) = self.health.get() {
            if r.is_err() && h.is_serving() {
                tracing::error!("ALERT: the routing log cannot be written; reporting NOT_SERVING");
            }
            h.set_serving(r.is_ok());
        }
        r
    }

    /// Append `entries` to the routing log and wait until they are durable (the regulator
    /// page's sign-ins).
    pub async fn record(&self, entries: Vec<LogEntry>) -> Result<(), Error> {
        self.note_log(self.log_writer.append(entries).await)
    }

    /// Wait until every routing-log row queued so far is durable (at shutdown).
    pub async fn flush_log(&self) -> Result<(), Error> {
        self.log_writer.flush().await
    }

    /// The routing log.
    pub fn log(&self) -> Result<Vec<LogEntry>, Error> {
        store::read_log(&self.db())
    }
}

/// The tree head a stored signed head carries.
fn signed_tree_head(sth: &SignedTreeHead) -> Result<alpr_proto::pb::TreeHead, Error> {
    sth.head
        .as_ref()
        .map(|h| alpr_proto::pb::TreeHead::decode(h.payload.as_slice()))
        .transpose()
        .map_err(|e| Error::Corrupt {
            what: "stored tree head".into(),
            detail: e.to_string(),
        })?
        .ok_or_else(|| Error::Corrupt {
            what: "stored tree head".into(),
            detail: "no signed head".into(),
        })
}

/// A signed head's size and subjects root (as signed; empty before the index existed).
fn head_size(sth: &SignedTreeHead) -> Result<(u64, Vec<u8>), Error> {
    let th = signed_tree_head(sth)?;
    Ok((th.size, th.subjects_root))
}
