//! Admission: the one rule set that the broker and every node evaluate.
//!
//! [`admit`] takes an endorsed query exactly as it travels (a `Signed` endorsement that
//! nests the investigator's `Signed` query) and returns either [`AdmissionDecision::Admitted`]
//! under a named agreement or [`AdmissionDecision::Refused`] with a stable reason code.
//! The broker calls it with the registry's agreements and the provider's state rules; the
//! node calls it again with its **own** copy of agreements and its **own** policy, so a
//! compromised broker cannot make a node answer.
//!
//! Order of checks: signatures and chains (endorser, then investigator) → claims agree →
//! expiry and clock skew → well-formed fields → replay → the node's own switches → state
//! rules on the requester → purpose → case number, reason, prohibited terms → agreement
//! (and the on-behalf-of agency's agreement) → retention and warrant look-back.

use alpr_pki::{Role, TrustStore, VerifiedIdentity};
use prost::Message;

use crate::agreement::{AgreementStatus, AgreementView};
use crate::envelope::{self, ENDORSEMENT, QUERY};
use crate::input;
use crate::pb::{Endorsement, Query, Signed};
use crate::purpose::{self, Purpose};
use crate::rules::StateRules;
use crate::{Error, RefusalReason};

/// Tolerated clock difference between parties, seconds.
pub const CLOCK_SKEW_SECS: i64 = 120;
/// Longest lifetime of a query (issued_at to expires_at), seconds.
pub const MAX_QUERY_TTL_SECS: i64 = 15 * 60;
/// Most targets one query may name.
pub const MAX_TARGETS: usize = 1000;
const DAY: i64 = 86_400;

/// The provider node's own policy, as far as admission needs it. The broker has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePolicy {
    /// The agency's admin has turned sharing on.
    pub sharing_enabled: bool,
    /// Refuse every inbound query.
    pub refuse_all: bool,
    /// ORIs whose queries are refused.
    pub refused_requesters: Vec<String>,
    /// Purpose codes this agency refuses beyond its state's rules.
    pub blocked_purposes: Vec<String>,
    /// Terms this agency refuses beyond its state's rules.
    pub blocked_terms: Vec<String>,
    /// Reads older than this many days are purged and never searched (0: state cap only).
    pub retention_days: u32,
    /// Windows reaching further back than this many days need a warrant (0: never).
    pub no_warrant_lookback_days: u32,
    /// Refuse queries that come in the clear (`SEAL_REQUIRED`).
    pub require_sealed: bool,
    /// Most agencies one query to this agency may name (0: the state's cap only).
    pub max_targets: u32,
    /// This very request carries an approval a named person at this agency recorded (for
    /// states that serve out-of-state requesters one request at a time).
    pub request_approved: bool,
    /// Answer wildcard-plate searches from partners whose agreement lists the shape.
    pub allow_wildcard: bool,
}

/// Records query ids; answers whether one is new.
pub trait ReplayGuard {
    /// Record `(query_id, provider)` until `expires_at`; false if it was already seen.
    fn first_sight(&self, query_id: &[u8], provider_ori: &str, expires_at: i64) -> bool;
}

/// Everything admission looks at besides the query itself.
pub struct AdmissionContext<'a> {
    /// Trust anchors and CRLs of this state.
    pub trust: &'a TrustStore,
    /// The agency whose data is asked for.
    pub provider_ori: &'a str,
    /// The provider's state rules.
    pub rules: &'a StateRules,
    /// The provider node's own policy (`None` at the broker).
    pub policy: Option<&'a NodePolicy>,
    /// Agreements known to the evaluating party (any set; filtered here).
    pub agreements: &'a [AgreementView],
    /// Replay memory of the evaluating party.
    pub replay: &'a dyn ReplayGuard,
    /// Current time, Unix seconds.
    pub now: i64,
    /// The provider node's system (product, version) as its newest published sealing key
    /// names it, for the broker (`("", "")` when it named none); `None` at the provider's
    /// own node, which checks the system it runs.
    pub provider_system: Option<(&'a str, &'a str)>,
}

/// What is known about a query once its signatures verified.
#[derive(Clone, Debug, Default)]
pub struct QueryFacts {
    /// The endorsing node, if its signature verified.
    pub endorser: Option<VerifiedIdentity>,
    /// The investigator, if their signature verified.
    pub investigator: Option<VerifiedIdentity>,
    /// The query, if it was authentic and decoded. For a sealed query not yet revealed,
    /// its routing copy (plate, plate state, case number, reason and warrant emptied).
    pub query: Option<Query>,
    /// The endorsement came in the sealed form.
    pub sealed: bool,
    /// A sealed query whose box this party opened and whose investigator signature and
    /// routing copy it checked ([`reveal`]): `investigator` and `query` are the real ones.
    pub revealed: bool,
    /// The sealed form's boxes, one per target (shared, not copied, by every target's
    /// admission).
    pub boxes: std::sync::Arc<Vec<crate::pb::SealedBox>>,
    /// The box tree, when every box came attached (as a requesting node sends them): built
    /// once while checking the signed root, so the broker proves each target's box from it
    /// without hashing the boxes again. `None` when boxes came with their proofs.
    pub box_tree: Option<std::sync::Arc<crate::merkle::Tree>>,
    /// The sealed form's one ciphertext of the query (`Endorsement.sealed_query`).
    pub sealed_query: std::sync::Arc<Vec<u8>>,
}

impl QueryFacts {
    /// Who asked: the investigator as their certificate says, or (a sealed query seen
    /// from outside) as the endorsing node's routing copy says.
    pub fn requester(&self) -> Option<String> {
        match (&self.investigator, &self.query, &self.endorser) {
            (Some(i), _, _) => Some(i.describe()),
            (None, Some(q), Some(_)) if self.sealed => Some(format!(
                "{}@{} (investigator, per its node's endorsement)",
                q.requester_user, q.requester_ori
            )),
            (None, _, Some(e)) => Some(e.describe()),
            _ => None,
        }
    }
}

/// An admitted query.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The endorsing node.
    pub endorser: VerifiedIdentity,
    /// The investigator (`None` only for a sealed query admitted from its routing copy,
    /// at the broker).
    pub investigator: Option<VerifiedIdentity>,
    /// The query (for a sealed query at the broker, its routing copy).
    pub query: Query,
    /// Everything known, as [`QueryFacts`].
    pub facts: QueryFacts,
    /// The agreement it is admitted under.
    pub agreement_id: String,
    /// State rule version applied.
    pub rule_version: String,
    /// Catch-all purpose: flagged for audit review.
    pub flagged_for_review: bool,
}

/// A refused query.
#[derive(Clone, Debug)]
pub struct Refused {
    /// Stable reason code.
    pub reason: RefusalReason,
    /// Human-readable detail.
    pub detail: String,
    /// What was learned before refusing.
    pub facts: QueryFacts,
    /// State rule version applied.
    pub rule_version: String,
}

/// The outcome of admission.
#[derive(Clone, Debug)]
pub enum AdmissionDecision {
    /// Admitted under an agreement.
    Admitted(Box<Admitted>),
    /// Refused with a reason.
    Refused(Box<Refused>),
}

impl AdmissionDecision {
    /// The refusal reason, if refused.
    pub fn reason(&self) -> Option<RefusalReason> {
        match self {
            Self::Admitted(_) => None,
            Self::Refused(r) => Some(r.reason),
        }
    }
}

/// Evaluate an endorsed query against the context. The one admission function:
/// [`open`] (signatures and chains) followed by [`admit_opened`] (everything else).
pub fn admit(ctx: &AdmissionContext<'_>, endorsed: &Signed) -> AdmissionDecision {
    admit_opened(ctx, &open(ctx.trust, endorsed, ctx.now))
}

/// An endorsed query after its signatures and certificate chains were checked: what was
/// learned, and the refusal if a check failed. Made only by [`open`], so holding one means
/// the cryptographic checks ran; a party that evaluates one query for several targets (the
/// broker) opens it once and calls [`admit_opened`] per target.
#[derive(Clone, Debug)]
pub struct OpenedQuery {
    facts: QueryFacts,
    refusal: Option<(RefusalReason, String)>,
    opened_at: i64,
    memo: Memo,
}

/// What admission learns of an opened query that does not depend on the target: worked
/// out at the first target and reused for the rest, so deciding a query for N targets is
/// O(N log N), not O(N²) (each target would otherwise re-check all N target names).
/// Cleared whenever the facts change ([`reveal`]).
#[derive(Clone, Debug, Default)]
struct Memo {
    /// The field checks at one instant: `(now, with the sealed fields, outcome)`.
    fields: std::sync::OnceLock<(i64, bool, FieldChecks)>,
    /// Indices into `query.targets`, ordered by name.
    targets: std::sync::OnceLock<Vec<u32>>,
    /// Indices into `boxes`, ordered by recipient.
    boxes: std::sync::OnceLock<Vec<u32>>,
}

/// The outcome of [`check_fields`], kept: the purpose, or the refusal's reason and detail.
type FieldChecks = Result<&'static Purpose, (RefusalReason, String)>;

impl Memo {
    /// [`check_fields`] of `query` at `now`, from the memo when it was made at `now`.
    fn fields(
        &self,
        query: &Query,
        now: i64,
        sealed_fields: bool,
    ) -> Result<&'static Purpose, Error> {
        let compute =
            || check_fields(query, now, sealed_fields).map_err(|e| (e.reason(), e.detail()));
        let (at, sealed, outcome) = self.fields.get_or_init(|| (now, sealed_fields, compute()));
        let fresh;
        let outcome = if (*at, *sealed) == (now, sealed_fields) {
            outcome
        } else {
            fresh = compute();
            &fresh
        };
        outcome
            .clone()
            .map_err(|(reason, detail)| Error::refused(reason, detail))
    }

    /// Whether `query` names `ori` among its targets.
    fn names(&self, query: &Query, ori: &str) -> bool {
        let order = self.targets.get_or_init(|| {
            let mut order: Vec<u32> = (0..query.targets.len() as u32).collect();
            order.sort_by(|a, b| query.targets[*a as usize].cmp(&query.targets[*b as usize]));
            order
        });
        order
            .binary_search_by(|i| query.targets[*i as usize].as_str().cmp(ori))
            .is_ok()
    }
}

impl OpenedQuery {
    /// What was learned: the endorser, investigator and query as far as they verified.
    pub fn facts(&self) -> &QueryFacts {
        &self.facts
    }

    /// The refusal found while opening, if any.
    pub fn refusal(&self) -> Option<Error> {
        self.refusal
            .as_ref()
            .map(|(reason, detail)| Error::refused(*reason, detail.clone()))
    }

    /// Whether the endorsement came in the sealed form.
    pub fn is_sealed(&self) -> bool {
        self.facts.sealed
    }

    /// The box addressed to `ori`, if the sealed form holds exactly one.
    pub fn box_for(&self, ori: &str) -> Option<&crate::pb::SealedBox> {
        self.box_index(ori).map(|i| &self.facts.boxes[i])
    }

    /// The position of the box addressed to `ori` among the sealed form's boxes (and its
    /// attached bytes), if the sealed form holds exactly one.
    pub fn box_index(&self, ori: &str) -> Option<usize> {
        let boxes = &self.facts.boxes;
        let order = self.memo.boxes.get_or_init(|| {
            let mut order: Vec<u32> = (0..boxes.len() as u32).collect();
            order.sort_by(|a, b| {
                boxes[*a as usize]
                    .recipient_ori
                    .cmp(&boxes[*b as usize].recipient_ori)
            });
            order
        });
        let first = order.partition_point(|i| boxes[*i as usize].recipient_ori.as_str() < ori);
        let mut named = order[first..]
            .iter()
            .take_while(|i| boxes[**i as usize].recipient_ori == ori);
        match (named.next(), named.next()) {
            (Some(i), None) => Some(*i as usize),
            _ => None,
        }
    }

    /// Record a refusal found outside admission (a box that does not open): admission
    /// then refuses with it, keeping what was learned.
    pub fn refuse(&mut self, e: &Error) {
        if self.refusal.is_none() {
            self.refusal = Some((e.reason(), e.detail()));
        }
    }
}

/// The sealed fields of a query emptied: what its routing copy must be.
pub fn routing_copy(query: &Query) -> Query {
    Query {
        plate: String::new(),
        plate_state: String::new(),
        case_number: String::new(),
        reason: String::new(),
        warrant_ref: String::new(),
        hotlist: None,
        ..query.clone()
    }
}

/// The sealing context of `query`'s box for `target_ori`.
pub fn box_context<'a>(
    query: &'a Query,
    target_ori: &'a str,
    requester: &'a str,
) -> crate::seal::Context<'a> {
    crate::seal::Context {
        purpose: "query",
        target_ori,
        query_id: &query.query_id,
        requester,
    }
}

/// `user@ORI` of a query's requester, as a box's context names it.
pub fn requester_label(query: &Query) -> String {
    format!("{}@{}", query.requester_user, query.requester_ori)
}

/// Reveal a sealed query from the plaintext of its box (the investigator's `Signed` query
/// envelope, encoded): verify the investigator's signature, chain and claims exactly as
/// for a clear query, and that the routing copy the broker decided on is this query with
/// its sealed fields emptied. On success `opened`'s facts hold the real investigator and
/// query; on failure the refusal is recorded in `opened` (see [`OpenedQuery::refuse`]).
pub fn reveal(trust: &TrustStore, opened: &mut OpenedQuery, plaintext: &[u8]) {
    if opened.refusal.is_some() || !opened.facts.sealed || opened.facts.revealed {
        return;
    }
    let now = opened.opened_at;
    let routing = opened.facts.query.clone();
    let Some(endorser) = opened.facts.endorser.clone() else {
        return;
    };
    let mut facts = opened.facts.clone();
    let result = open_nested(trust, &endorser, plaintext, now, &mut facts).and_then(|()| {
        match (&facts.query, &routing) {
            (Some(q), Some(r)) if routing_copy(q) == *r => Ok(()),
            _ => Err(Error::refused(
                RefusalReason::SealInvalid,
                "the sealed query differs from the routing copy its node endorsed",
            )),
        }
    });
    match result {
        Ok(()) => {
            facts.revealed = true;
            opened.facts = facts;
            opened.memo = Memo::default();
        }
        Err(e) => {
            // Keep the routing copy (what was endorsed) but name the investigator if their
            // signature verified.
            opened.facts.investigator = facts.investigator;
            opened.refuse(&e);
        }
    }
}

/// Verify an endorsed query's signatures and chains at `now` (see [`open_endorsed`]).
pub fn open(trust: &TrustStore, endorsed: &Signed, now: i64) -> OpenedQuery {
    let mut facts = QueryFacts::default();
    let refusal = open_endorsed(trust, endorsed, now, &mut facts)
        .err()
        .map(|e| (e.reason(), e.detail()));
    OpenedQuery {
        facts,
        refusal,
        opened_at: now,
        memo: Memo::default(),
    }
}

/// The decision of [`decide`]: [`AdmissionDecision`] without a copy of the facts, which
/// stay in the [`OpenedQuery`].
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Admitted under an agreement.
    Admitted {
        /// The agreement it is admitted under.
        agreement_id: String,
        /// State rule version applied.
        rule_version: String,
        /// Catch-all purpose: flagged for audit review.
        flagged_for_review: bool,
    },
    /// Refused with a reason.
    Refused {
        /// Stable reason code.
        reason: RefusalReason,
        /// Human-readable detail.
        detail: String,
        /// State rule version applied.
        rule_version: String,
    },
}

/// Evaluate an already opened query against the context: claims, times, replay, the
/// node's switches, state rules, purpose, agreement and look-back. `ctx.trust` is not used
/// again; the query must have been opened with the same trust store.
pub fn admit_opened(ctx: &AdmissionContext<'_>, opened: &OpenedQuery) -> AdmissionDecision {
    let facts = opened.facts.clone();
    match decide(ctx, opened) {
        Verdict::Admitted {
            agreement_id,
            rule_version,
            flagged_for_review,
        } => match (facts.endorser.clone(), facts.query.clone()) {
            // decide admits only when both are present.
            (Some(endorser), Some(query)) => AdmissionDecision::Admitted(Box::new(Admitted {
                endorser,
                investigator: facts.investigator.clone(),
                query,
                facts,
                agreement_id,
                rule_version,
                flagged_for_review,
            })),
            _ => AdmissionDecision::Refused(Box::new(Refused {
                reason: RefusalReason::InvalidInput,
                detail: "internal: incomplete facts".into(),
                facts,
                rule_version,
            })),
        },
        Verdict::Refused {
            reason,
            detail,
            rule_version,
        } => AdmissionDecision::Refused(Box::new(Refused {
            reason,
            detail,
            facts,
            rule_version,
        })),
    }
}

/// [`admit_opened`] without copying the facts into the decision: for a party that decides
/// one opened query for many targets (the broker), reading the facts from `opened`. What
/// does not depend on the target is checked once per query (see `Memo`).
pub fn decide(ctx: &AdmissionContext<'_>, opened: &OpenedQuery) -> Verdict {
    let facts = &opened.facts;
    let checked = match opened.refusal() {
        Some(e) => Err(e),
        // Signatures and revocation were checked at one instant; fail closed when that
        // instant is further from this decision than the clock-skew tolerance.
        None if (ctx.now - opened.opened_at).abs() > CLOCK_SKEW_SECS => Err(Error::refused(
            RefusalReason::QueryExpired,
            "signatures were checked too long before admission; open the query again",
        )),
        None => admit_checked(ctx, facts, &opened.memo),
    };
    let rule_version = ctx.rules.version.clone();
    match checked {
        // admit_checked returns Ok only when every fact is present.
        Ok((agreement_id, flagged))
            if facts.endorser.is_some()
                && facts.query.is_some()
                && (facts.investigator.is_some() || (facts.sealed && !facts.revealed)) =>
        {
            Verdict::Admitted {
                agreement_id,
                rule_version,
                flagged_for_review: flagged,
            }
        }
        Ok(_) => Verdict::Refused {
            reason: RefusalReason::InvalidInput,
            detail: "internal: incomplete facts".into(),
            rule_version,
        },
        Err(e) => Verdict::Refused {
            reason: e.reason(),
            detail: e.detail(),
            rule_version,
        },
    }
}

/// The query id an endorsed query claims, read WITHOUT verifying anything: only for
/// binding a refusal to the query it refuses when the query itself did not verify (empty
/// when even that cannot be decoded).
pub fn claimed_query_id(endorsed: &Signed) -> Vec<u8> {
    let Ok(e) = Endorsement::decode(endorsed.payload.as_slice()) else {
        return vec![];
    };
    if let Some(routing) = e.routing {
        return routing.query_id;
    }
    Signed::decode(e.signed_query.as_slice())
        .ok()
        .and_then(|q| Query::decode(q.payload.as_slice()).ok())
        .map(|q| q.query_id)
        .unwrap_or_default()
}

/// The boxes attached to a sealed endorsement, each one a leaf of the box tree the
/// endorsement signs (INVALID_INPUT otherwise): either every box, without proofs (the root
/// is recomputed from them), or some, each with its inclusion proof. A party may hold only
/// some of them: the broker forwards each target its own. Returns the decoded boxes and,
/// when every box came, the tree built to check the root.
fn attached_boxes(
    endorsed: &Signed,
    endorsement: &Endorsement,
) -> Result<(Vec<crate::pb::SealedBox>, Option<crate::merkle::Tree>), Error> {
    use crate::merkle;
    let invalid = |m: String| Error::refused(RefusalReason::InvalidInput, m);
    let count = endorsement.box_count;
    // No box at all is a query none of whose targets has a sealing key (each is refused
    // SEAL_REQUIRED); the root is then the empty tree's.
    if count as usize > MAX_TARGETS {
        return Err(invalid(format!(
            "a sealed endorsement's box tree holds at most {MAX_TARGETS} boxes, not {count}"
        )));
    }
    let root = merkle::hash_from_slice(&endorsement.boxes_root).map_err(|_| {
        invalid(format!(
            "a sealed endorsement's boxes_root is {} bytes, not a 32-byte tree root",
            endorsement.boxes_root.len()
        ))
    })?;
    let attached = &endorsed.sealed_boxes;
    let proofs = &endorsed.sealed_box_proofs;
    let mut whole = None;
    if proofs.is_empty() {
        let tree = (attached.len() == count as usize).then(|| crate::envelope::box_tree(attached));
        if tree.as_ref().map(merkle::Tree::root) != Some(root) {
            return Err(invalid(format!(
                "the {} attached boxes are not the {count} whose tree the endorsing node signed",
                attached.len()
            )));
        }
        whole = tree;
    } else {
        if proofs.len() != attached.len() {
            return Err(invalid(format!(
                "{} boxes are attached with {} proofs; each needs one",
                attached.len(),
                proofs.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (bytes, proof) in attached.iter().zip(proofs) {
            let path = proof
                .path
                .iter()
                .map(|h| merkle::hash_from_slice(h))
                .collect::<Result<Vec<_>, _>>();
            let fits = path.ok().is_some_and(|path| {
                merkle::verify_inclusion(
                    &merkle::leaf_hash(bytes),
                    proof.index,
                    u64::from(count),
                    &path,
                    &root,
                )
                .is_ok()
            });
            if !fits || !seen.insert(proof.index) {
                return Err(invalid(format!(
                    "an attached box is not leaf {} of the box tree the endorsing node signed",
                    proof.index
                )));
            }
        }
    }
    let boxes = attached
        .iter()
        .map(|bytes| {
            crate::pb::SealedBox::decode(bytes.as_slice())
                .map_err(|e| invalid(format!("an attached box does not decode: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((boxes, whole))
}

/// Verify an endorsement and the query nested in it; fill `facts` as each part verifies.
pub fn open_endorsed(
    trust: &TrustStore,
    endorsed: &Signed,
    now: i64,
    facts: &mut QueryFacts,
) -> Result<(), Error> {
    let (endorser, bytes) = envelope::open(trust, endorsed, ENDORSEMENT, now)?;
    if endorser.role != Role::Node {
        return Err(Error::refused(
            RefusalReason::CertInvalid,
            format!(
                "endorsement signed with {} certificate; only a node certificate may endorse",
                endorser.role.with_article()
            ),
        ));
    }
    let mut endorsement = Endorsement::decode(bytes).map_err(|e| {
        Error::refused(
            RefusalReason::InvalidInput,
            format!("endorsement does not decode: {e}"),
        )
    })?;
    facts.endorser = Some(endorser.clone());
    if Some(endorsement.node_ori.as_str()) != endorser.ori() {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            "endorsement names a different node than its signer",
        ));
    }
    if let Some(routing) = endorsement.routing.take() {
        // The sealed form: decide from the routing copy; the query itself is sealed.
        facts.sealed = true;
        if !endorsement.signed_query.is_empty() {
            return Err(Error::refused(
                RefusalReason::InvalidInput,
                "a sealed endorsement carries the query only sealed",
            ));
        }
        if routing_copy(&routing) != routing {
            return Err(Error::refused(
                RefusalReason::InvalidInput,
                "a sealed query's routing copy must not carry the plate, plate state, case number, reason or warrant",
            ));
        }
        facts.query = Some(routing.clone());
        if !endorsement.boxes.is_empty() || !endorsement.box_digests.is_empty() {
            return Err(Error::refused(
                RefusalReason::InvalidInput,
                "a sealed endorsement names its boxes by a tree root; the boxes travel attached",
            ));
        }
        let (boxes, tree) = attached_boxes(endorsed, &endorsement)?;
        facts.boxes = std::sync::Arc::new(boxes);
        facts.box_tree = tree.map(std::sync::Arc::new);
        if endorsement.sealed_query.is_empty() {
            return Err(Error::refused(
                RefusalReason::InvalidInput,
                "a sealed endorsement carries its query sealed (sealed_query is empty)",
            ));
        }
        facts.sealed_query = std::sync::Arc::new(endorsement.sealed_query);
        check_endorsed_at(endorsement.endorsed_at, &routing, now)?;
        if Some(routing.requester_ori.as_str()) != endorser.ori() {
            return Err(Error::refused(
                RefusalReason::ClaimMismatch,
                "a node may endorse only its own agency's investigators",
            ));
        }
        return Ok(());
    }
    if !endorsement.boxes.is_empty()
        || !endorsement.box_digests.is_empty()
        || !endorsement.sealed_query.is_empty()
        || !endorsement.boxes_root.is_empty()
        || endorsement.box_count != 0
        || !endorsed.sealed_boxes.is_empty()
        || !endorsed.sealed_box_proofs.is_empty()
    {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            "a clear endorsement carries no boxes",
        ));
    }
    open_nested(trust, &endorser, &endorsement.signed_query, now, facts)?;
    if let Some(q) = &facts.query {
        check_endorsed_at(endorsement.endorsed_at, q, now)?;
    }
    Ok(())
}

/// Verify the investigator's nested `Signed` query (encoded) endorsed by `endorser`; fill
/// `facts.investigator` and `facts.query` as they verify.
fn open_nested(
    trust: &TrustStore,
    endorser: &VerifiedIdentity,
    signed_query: &[u8],
    now: i64,
    facts: &mut QueryFacts,
) -> Result<(), Error> {
    let inner = Signed::decode(signed_query).map_err(|e| {
        Error::refused(
            RefusalReason::InvalidInput,
            format!("nested query envelope does not decode: {e}"),
        )
    })?;
    let (investigator, bytes) = envelope::open(trust, &inner, QUERY, now)?;
    if investigator.role != Role::Investigator {
        return Err(Error::refused(
            RefusalReason::CertInvalid,
            format!(
                "query signed with {} certificate; only an investigator may search",
                investigator.role.with_article()
            ),
        ));
    }
    facts.investigator = Some(investigator.clone());
    if investigator.ori() != endorser.ori() {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            "a node may endorse only its own agency's investigators",
        ));
    }
    let query = Query::decode(bytes).map_err(|e| {
        Error::refused(
            RefusalReason::InvalidInput,
            format!("query does not decode: {e}"),
        )
    })?;
    facts.query = Some(query.clone());
    if Some(query.requester_ori.as_str()) != investigator.ori()
        || Some(&query.requester_user) != investigator.user.as_ref()
    {
        return Err(Error::refused(
            RefusalReason::ClaimMismatch,
            "query names a requester other than the investigator who signed it",
        ));
    }
    Ok(())
}

/// The endorsement's own date: made now (within clock skew), and not before the query.
fn check_endorsed_at(endorsed_at: i64, query: &Query, now: i64) -> Result<(), Error> {
    if (endorsed_at - now).abs() > CLOCK_SKEW_SECS {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            format!(
                "endorsement dated {}s {} now, beyond the {CLOCK_SKEW_SECS}s clock-skew tolerance",
                (endorsed_at - now).abs(),
                if endorsed_at > now { "after" } else { "before" }
            ),
        ));
    }
    // (A query issued in the future is refused as such by `check_query`.)
    if query.issued_at <= now + CLOCK_SKEW_SECS && endorsed_at < query.issued_at - CLOCK_SKEW_SECS {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            format!(
                "endorsement dated {}s before the query was issued",
                query.issued_at - endorsed_at
            ),
        ));
    }
    Ok(())
}

/// Checks on the query's own fields and times, independent of who evaluates it. The
/// requesting node runs these before endorsing, so an investigator learns at once.
pub fn check_query(query: &Query, now: i64) -> Result<&'static Purpose, Error> {
    check_fields(query, now, true)
}

/// [`check_query`] on a sealed query's routing copy: every field but the sealed ones,
/// which the routing copy must leave empty.
pub fn check_routing(query: &Query, now: i64) -> Result<&'static Purpose, Error> {
    check_fields(query, now, false)
}

fn check_fields(query: &Query, now: i64, sealed_fields: bool) -> Result<&'static Purpose, Error> {
    let invalid = |m: String| Error::refused(RefusalReason::InvalidInput, m);
    for (field, text) in [
        ("requester_user", query.requester_user.as_str()),
        ("requester_ori", &query.requester_ori),
        ("plate", &query.plate),
        ("plate_state", &query.plate_state),
        ("purpose_code", &query.purpose_code),
        ("case number", &query.case_number),
        ("reason", &query.reason),
        ("warrant reference", &query.warrant_ref),
        ("on_behalf_of_ori", &query.on_behalf_of_ori),
    ]
    .into_iter()
    .chain(query.targets.iter().map(|t| ("target", t.as_str())))
    {
        input::check_text(field, text)?;
    }
    if query.expires_at <= now {
        return Err(Error::refused(
            RefusalReason::QueryExpired,
            "query has expired",
        ));
    }
    if query.issued_at > now + CLOCK_SKEW_SECS {
        return Err(Error::refused(
            RefusalReason::QueryExpired,
            format!(
                "query issued {}s in the future, beyond the {CLOCK_SKEW_SECS}s clock-skew tolerance",
                query.issued_at - now
            ),
        ));
    }
    if query.expires_at - query.issued_at > MAX_QUERY_TTL_SECS {
        return Err(invalid(format!(
            "query lifetime exceeds {MAX_QUERY_TTL_SECS}s"
        )));
    }
    if query.query_id.len() != 16 {
        return Err(invalid("query_id must be 16 random bytes".into()));
    }
    if query.targets.is_empty() {
        return Err(invalid(
            "a query must name its target agencies; there is no \"search everyone\"".into(),
        ));
    }
    if query.targets.len() > MAX_TARGETS {
        return Err(invalid(format!("at most {MAX_TARGETS} targets per query")));
    }
    for t in &query.targets {
        alpr_pki::claims::validate_ori(t).map_err(|e| invalid(e.to_string()))?;
    }
    let (wildcard, hotlist) = match query.shape.as_str() {
        "" => (false, false),
        input::SHAPE_WILDCARD => (true, false),
        crate::hotlist::SHAPE_HOTLIST => (false, true),
        other => {
            return Err(invalid(format!(
                "query shape {other:?} is not known (full plate: none; or \"wildcard\", \"hotlist\")"
            )));
        }
    };
    if query.hotlist.is_some() && !(hotlist && sealed_fields) {
        return Err(invalid(if hotlist {
            "a sealed query's routing copy holds no hot list".into()
        } else {
            "only a query of shape \"hotlist\" carries a hot list".into()
        }));
    }
    if wildcard && query.window_end - query.window_start > input::WILDCARD_MAX_WINDOW_DAYS * DAY {
        return Err(invalid(format!(
            "a wildcard search covers at most {} days",
            input::WILDCARD_MAX_WINDOW_DAYS
        )));
    }
    if hotlist {
        if !query.plate.is_empty() || !query.plate_state.is_empty() {
            return Err(invalid(
                "a hot-list share names its plates in the list: plate and plate_state are empty"
                    .into(),
            ));
        }
        if (query.window_start - query.issued_at).abs() > CLOCK_SKEW_SECS {
            return Err(invalid(
                "a hot list is in force from when it is shared: window_start is issued_at".into(),
            ));
        }
        if query.window_end > query.issued_at + crate::hotlist::MAX_DAYS * DAY {
            return Err(invalid(format!(
                "a shared hot list stays in force at most {} days (window_end is its expiry)",
                crate::hotlist::MAX_DAYS
            )));
        }
        if sealed_fields {
            match &query.hotlist {
                Some(share) => crate::hotlist::check_share(share)?,
                None => {
                    return Err(invalid(
                        "a query of shape \"hotlist\" carries no hot list".into(),
                    ));
                }
            }
        }
    } else if sealed_fields {
        let plate = if wildcard {
            input::normalize_wildcard_plate(&query.plate)?
        } else {
            input::normalize_plate(&query.plate)?
        };
        if plate != query.plate {
            return Err(invalid("plate is not normalized".into()));
        }
        let state = input::normalize_query_state(&query.plate_state)?;
        if state != query.plate_state {
            return Err(invalid("plate_state is not normalized (upper-case)".into()));
        }
    }
    if query.window_start < 0 {
        return Err(invalid(format!(
            "time window start {} is before 1970 (Unix seconds must not be negative)",
            query.window_start
        )));
    }
    if query.window_start >= query.window_end {
        return Err(invalid("time window start must be before its end".into()));
    }
    if !hotlist && query.window_end > now + CLOCK_SKEW_SECS + DAY {
        return Err(invalid("time window ends in the future".into()));
    }
    if query.incident_reported_at < 0 || query.incident_reported_at > now + CLOCK_SKEW_SECS {
        return Err(invalid(format!(
            "incident_reported_at {} is not a time in the past (Unix seconds; 0 = not given)",
            query.incident_reported_at
        )));
    }
    let purpose = purpose::lookup(&query.purpose_code)?;
    if !sealed_fields {
        return Ok(purpose);
    }
    input::check_case_number(&query.case_number)?;
    input::check_reason(&query.reason, purpose.needs_justification)?;
    if query.warrant_ref.chars().count() > 128 {
        return Err(invalid("warrant reference is malformed".into()));
    }
    Ok(purpose)
}

/// The provider's cap on how many agencies one query may name: its state's
/// (`max_targets` in the rules, applied by the broker and the node alike) and, at the node,
/// its own policy's; the smaller one that is set.
fn check_fan_out(ctx: &AdmissionContext<'_>, targets: usize) -> Result<(), Error> {
    let caps = [
        (ctx.rules.max_targets, ctx.rules.version.as_str()),
        (
            ctx.policy.map_or(0, |p| p.max_targets),
            "this agency's policy",
        ),
    ];
    if let Some((cap, by)) = caps
        .into_iter()
        .filter(|(c, _)| *c > 0)
        .min_by_key(|(c, _)| *c)
        && targets > cap as usize
    {
        return Err(Error::refused(
            RefusalReason::FanOutLimit,
            format!("this query names {targets} agencies; {by} lets one query name at most {cap}"),
        ));
    }
    Ok(())
}

fn admit_checked(
    ctx: &AdmissionContext<'_>,
    facts: &QueryFacts,
    memo: &Memo,
) -> Result<(String, bool), Error> {
    // A sealed query not (yet) revealed: the broker decides from its routing copy; a node
    // decides only after opening its box.
    let routing_only = facts.sealed && !facts.revealed;
    if routing_only && ctx.policy.is_some() {
        return Err(Error::refused(
            RefusalReason::SealRequired,
            "a sealed query is decided only once its box for this agency is open",
        ));
    }
    if !facts.sealed && ctx.policy.is_some_and(|p| p.require_sealed) {
        return Err(Error::refused(
            RefusalReason::SealRequired,
            format!(
                "{} answers only sealed queries; this one came in the clear",
                ctx.provider_ori
            ),
        ));
    }
    let signer = if routing_only {
        facts.endorser.as_ref()
    } else {
        facts.investigator.as_ref()
    };
    let (Some(query), Some(investigator)) = (facts.query.as_ref(), signer) else {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            "query not decoded",
        ));
    };
    // check_routing or check_query, once per query and instant.
    let purpose = memo.fields(query, ctx.now, !routing_only)?;
    if !memo.names(query, ctx.provider_ori) {
        return Err(Error::refused(
            RefusalReason::InvalidInput,
            format!("query is not addressed to {}", ctx.provider_ori),
        ));
    }
    if !ctx
        .replay
        .first_sight(&query.query_id, ctx.provider_ori, query.expires_at)
    {
        return Err(Error::refused(
            RefusalReason::Replay,
            "this query id was already presented",
        ));
    }
    let requester = investigator.agency.as_ref().ok_or_else(|| {
        Error::refused(
            RefusalReason::CertInvalid,
            "the requester's certificate has no agency",
        )
    })?;

    if let Some(p) = ctx.policy {
        if !p.sharing_enabled {
            return Err(Error::refused(
                RefusalReason::NodeRefusing,
                "this agency has not activated sharing",
            ));
        }
        if p.refuse_all {
            return Err(Error::refused(
                RefusalReason::NodeRefusing,
                "this agency is refusing all queries",
            ));
        }
        if p.refused_requesters.iter().any(|r| r == &requester.ori) {
            return Err(Error::refused(
                RefusalReason::NodeRefusing,
                format!("this agency refuses queries from {}", requester.ori),
            ));
        }
    }

    let (product, version) = ctx
        .provider_system
        .unwrap_or((crate::rules::SYSTEM_PRODUCT, crate::rules::SYSTEM_VERSION));
    ctx.rules.check_system(product, version)?;
    ctx.rules
        .check_requester(&requester.jurisdiction, requester.kind)?;
    check_fan_out(ctx, query.targets.len())?;
    ctx.rules.check_purpose(purpose)?;
    if let Some(p) = ctx.policy
        && p.blocked_purposes.iter().any(|b| b == &purpose.code)
    {
        return Err(Error::refused(
            RefusalReason::PurposeProhibited,
            format!("this agency refuses purpose {}", purpose.code),
        ));
    }
    // One request at a time from outside the state: the provider's node decides (it holds
    // the approvals); the broker lets such a query through to it.
    if let Some(p) = ctx.policy {
        ctx.rules
            .check_per_request(&requester.jurisdiction, p.request_approved)?;
    }
    if !routing_only {
        let mut terms = ctx.rules.prohibited_terms.clone();
        if let Some(p) = ctx.policy {
            terms.extend(p.blocked_terms.iter().cloned());
        }
        input::check_terms("reason", &query.reason, &terms)?;
        input::check_terms("case number", &query.case_number, &terms)?;
        if let Some(share) = &query.hotlist {
            crate::hotlist::check_terms(share, &terms)?;
        }
    }

    let wildcard = query.shape == input::SHAPE_WILDCARD;
    if wildcard
        && let Some(p) = ctx.policy
        && !p.allow_wildcard
    {
        return Err(Error::refused(
            RefusalReason::ShapeNotAllowed,
            format!(
                "{} answers full plates only (its policy allows no wildcard searches)",
                ctx.provider_ori
            ),
        ));
    }
    let agreement_id = find_agreement(
        ctx,
        &requester.ori,
        purpose,
        query.window_start,
        &query.shape,
    )?;
    if !query.on_behalf_of_ori.is_empty() {
        alpr_pki::claims::validate_ori(&query.on_behalf_of_ori)
            .map_err(|e| Error::refused(RefusalReason::InvalidInput, e.to_string()))?;
        find_agreement(
            ctx,
            &query.on_behalf_of_ori,
            purpose,
            query.window_start,
            &query.shape,
        )
        .map_err(|e| {
            Error::refused(
                e.reason(),
                format!(
                    "on-behalf-of agency {} is not eligible: {}",
                    query.on_behalf_of_ori,
                    e.detail()
                ),
            )
        })?;
    }

    let policy_retention = ctx.policy.map(|p| p.retention_days).unwrap_or(0);
    let retention = match (policy_retention, ctx.rules.retention_cap_days) {
        (0, 0) => None,
        (0, c) | (c, 0) => Some(c),
        (a, b) => Some(a.min(b)),
    };
    if let Some(days) = retention
        && query.window_start < ctx.now - i64::from(days) * DAY
    {
        return Err(Error::refused(
            RefusalReason::LookbackExceeded,
            format!("window reaches past the {days}-day retention period"),
        ));
    }
    if let Some(p) = ctx.policy {
        let limit = i64::from(p.no_warrant_lookback_days);
        if limit > 0
            && query.window_start < ctx.now - limit * DAY
            && query.warrant_ref.trim().is_empty()
        {
            return Err(Error::refused(
                RefusalReason::WarrantRequired,
                format!(
                    "window reaches back more than {limit} days; a warrant reference is required"
                ),
            ));
        }
    }
    // The state's warrant triggers need the warrant reference, which a sealed query's
    // routing copy does not show: decided by the node, and by the broker for clear queries.
    if !routing_only {
        ctx.rules
            .check_warrant(query, &requester.jurisdiction, ctx.now)?;
    }
    Ok((agreement_id, purpose.needs_justification))
}

/// Find an agreement in effect from the provider to `requester_ori` covering the purpose
/// and look-back; otherwise the refusal of the agreement that came closest.
fn find_agreement(
    ctx: &AdmissionContext<'_>,
    requester_ori: &str,
    purpose: &Purpose,
    window_start: i64,
    shape: &str,
) -> Result<String, Error> {
    let mut best: Option<(u8, Error)> = None;
    for a in ctx.agreements.iter().filter(|a| {
        a.terms.provider_ori == ctx.provider_ori && a.terms.requester_ori == requester_ori
    }) {
        match evaluate(a, purpose, window_start, ctx.now, shape) {
            Ok(()) => return Ok(a.id.clone()),
            Err((stage, e)) => {
                if best.as_ref().is_none_or(|(s, _)| stage > *s) {
                    best = Some((stage, e));
                }
            }
        }
    }
    Err(best.map(|(_, e)| e).unwrap_or_else(|| {
        Error::refused(
            RefusalReason::NoAgreement,
            format!("no agreement from {} to {requester_ori}", ctx.provider_ori),
        )
    }))
}

fn evaluate(
    a: &AgreementView,
    purpose: &Purpose,
    window_start: i64,
    now: i64,
    shape: &str,
) -> Result<(), (u8, Error)> {
    let r =
        |stage, reason, m: String| Err((stage, Error::refused(reason, format!("{}: {m}", a.id))));
    match a.status {
        AgreementStatus::Revoked => return r(0, RefusalReason::AgreementRevoked, "revoked".into()),
        AgreementStatus::Suspended => {
            return r(
                0,
                RefusalReason::AgreementSuspended,
                "suspended by a regulator".into(),
            );
        }
        AgreementStatus::Active => {}
    }
    if now >= a.terms.valid_until {
        return r(1, RefusalReason::AgreementExpired, "expired".into());
    }
    if now < a.terms.valid_from {
        return r(1, RefusalReason::NoAgreement, "not yet in effect".into());
    }
    // A hot-list share asks for the provider's cameras to watch for plates: the
    // "hotlists" data type; every other shape asks for reads.
    let data_type = if shape == crate::hotlist::SHAPE_HOTLIST {
        "hotlists"
    } else {
        "reads"
    };
    if !a.terms.data_types.iter().any(|d| d == data_type) {
        return r(
            2,
            RefusalReason::NoAgreement,
            format!("does not cover {data_type}"),
        );
    }
    if !a.terms.purposes.iter().any(|p| p == &purpose.code) {
        return r(
            3,
            RefusalReason::PurposeNotCovered,
            format!("does not cover purpose {}", purpose.code),
        );
    }
    if window_start < now - i64::from(a.terms.max_lookback_days) * DAY {
        return r(
            4,
            RefusalReason::LookbackExceeded,
            format!(
                "allows at most {} days of look-back",
                a.terms.max_lookback_days
            ),
        );
    }
    if shape == input::SHAPE_WILDCARD
        && !a
            .terms
            .query_shapes
            .iter()
            .any(|s| s == input::SHAPE_WILDCARD)
    {
        return r(
            5,
            RefusalReason::ShapeNotAllowed,
            "covers full plates only (no \"wildcard\" in its query shapes)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
