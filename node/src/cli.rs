//! The `alpr-node` command line.

use std::path::PathBuf;
use std::time::Duration;

use alpr_pki::{Signer, TrustStore};
use alpr_proto::pb::{Agreement, SignedAgreement, TargetStatus};
use alpr_runtime::client::{Person, PersonTls, Target};
use alpr_runtime::tls::TlsIdentity;
use clap::{Args, Parser, Subcommand};
use prost::Message;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::Decision;
use crate::client::{self, Reply, SearchParams};
use crate::settings::Switch;
use crate::{Error, Node, NodeConfig, audit, ingest, store};

mod audit_log;
mod keys;
mod seal_key;

/// An agency's ALPR node: serve it, load reads, search other agencies, manage agreements,
/// and read the audit log.
#[derive(Parser, Debug)]
#[command(name = "alpr-node", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `alpr-node` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node daemon (inbound queries from the broker; local searches and ingest).
    Serve {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List the purpose codes a query or agreement may name (NIBRS offenses and the listed
    /// non-crime purposes), with their names; with --state, which that state's rules refuse.
    Purposes {
        /// A state (ISO 3166-2, e.g. US-CA) whose rules to apply.
        #[arg(long)]
        state: Option<String>,
    },
    /// Check everything a start would (config, certificates, key, CRLs, state rules),
    /// print what was found, and exit: 0 if the node would start.
    CheckConfig {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show the node's switches, registry head and cosignature state, agreements in
    /// effect, reads held, audit head and recent alerts.
    Status {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Leave the federation (the daemon stopped): revoke every active agreement in the
    /// registry, export everything the agency owns into a new directory with a signed
    /// manifest, destroy the data key (crypto-shredding), log a certificate of destruction
    /// and anchor the final audit head. Cannot be undone: needs --yes.
    Decommission {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The new export directory.
        #[arg(long)]
        out: PathBuf,
        /// The agency admin's certificate (signs the revocations).
        #[arg(long)]
        cert: PathBuf,
        /// The admin's private key.
        #[arg(long)]
        key: PathBuf,
        /// Confirm: the node's data is destroyed once exported.
        #[arg(long)]
        yes: bool,
    },
    /// Publish the public report of other agencies' searches of this agency's data for one
    /// calendar period: signed JSON, its signature and an HTML page, never overwritten,
    /// logged. The daemon does this itself on the schedule the state's rules set.
    Publish {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The period: YYYY, YYYY-Qn or YYYY-MM (default: the last complete one of the
        /// state's schedule, or the last complete quarter).
        #[arg(long)]
        period: Option<String>,
        /// Where to write (default: data_dir/reports).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a published report: the signature (a node of the agency it names) and that
    /// the JSON is exactly what was signed.
    VerifyReport {
        /// The report's JSON file (its `.signed` file beside it).
        json: PathBuf,
        /// The federation's root certificate.
        #[arg(long)]
        root: PathBuf,
        /// CRL files.
        #[arg(long)]
        crls: Vec<PathBuf>,
    },
    /// Answer a registered owner's request for the data held about their vehicle (where the
    /// state's rules grant it, or `[policy] owner_requests`): every read held of the plate
    /// and every search of it by another agency, as JSON; logged and counted in the
    /// transparency report. Verify the requester's ownership first.
    OwnerRequest {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The plate.
        #[arg(long)]
        plate: String,
        /// Its issuing state (NCIC code, e.g. CA).
        #[arg(long)]
        state: String,
        /// Who verified the requester owns the vehicle.
        #[arg(long)]
        verified_by: String,
        /// How (registration and ID seen, ...).
        #[arg(long)]
        verification: String,
        /// Write the answer here (JSON); never overwrites.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the hot-list hits on this agency's cameras (its own lists and lists other
    /// agencies shared) with what came of each, newest first; `--open` only those without a
    /// recorded outcome (record one with `admin … hit-outcome`).
    Hits {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Only hits without a recorded outcome.
        #[arg(long)]
        open: bool,
    },
    /// List the out-of-state requests queued for a named person's decision (states that
    /// serve such requesters one request at a time), with their state: pending, approved,
    /// denied or used.
    Approvals {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Verify a decommission export on any machine: the manifest's signature (a node of the
    /// agency), every file's digest, and the audit log against its anchor.
    VerifyExport {
        /// The export directory.
        dir: PathBuf,
        /// The federation's root certificate.
        #[arg(long)]
        root: PathBuf,
        /// CRL files to check certificates against.
        #[arg(long)]
        crls: Vec<PathBuf>,
    },
    /// Back up node.db and audit.db online into a new directory, verify the copies and
    /// write a manifest (restore: see docs/DEPLOYMENT.md).
    Backup {
        /// Node config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The new backup directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load reads from a CSV file: plate,captured_at (RFC 3339),camera_id,latitude,longitude.
    /// Bad rows are reported with their line numbers; good rows are kept.
    Ingest {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// CSV file.
        file: PathBuf,
        /// Write rejected rows (line,reason) to this CSV file.
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Search other agencies' reads as an investigator, through your own node.
    Query(QueryArgs),
    /// Share a hot list with other agencies as an investigator, through your own node:
    /// each target keeps it only under an agreement covering hot lists, logs every hit on
    /// its cameras and reports it to your node (a `hotlist_hit` alert here).
    ShareHotlist(ShareArgs),
    /// Withdraw a hot list you shared (by its name), before its expiry, through your own
    /// node: each target that confirms stops watching for it at once and reports no more
    /// hits. (To change a list, share it again under the same name: the new one replaces
    /// it.) Exit 0 only when every target confirmed; send it again to the others.
    WithdrawShare(WithdrawShareArgs),
    /// Draft, sign, import, submit and list sharing agreements.
    #[command(subcommand)]
    Agreement(AgreementCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// This node's sealing key: queries reach it, and answers leave it, sealed so that the
    /// broker cannot read them. Create, show, publish, rotate.
    #[command(subcommand)]
    SealKey(seal_key::SealKeyCmd),
    /// Encryption at rest: make a key-encryption key (KEK), show the keyring, rotate the
    /// KEK.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Administer a running node as an admin or supervisor (authenticated by your certificate; logged).
    Admin {
        /// Who you are and where the node is.
        #[command(flatten)]
        person: PersonArgs,
        /// The command.
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Reports from the audit log.
    Report {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Which report.
        #[arg(value_enum)]
        kind: ReportKind,
        /// For `sample`: how many searches to draw.
        #[arg(long, default_value_t = 10)]
        size: usize,
    },
    /// Load a hot list (CSV: plate,note) with its source, topic and mandatory expiry;
    /// lists whose topic the state rules prohibit are refused. Ingested reads that match an
    /// active list raise `hotlist_hit` alerts in the audit log.
    Hotlist {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// List name.
        #[arg(long)]
        name: String,
        /// Where it comes from (e.g. "NCIC stolen vehicles").
        #[arg(long)]
        source: String,
        /// Topic (e.g. stolen-vehicle, wanted-person, amber-alert).
        #[arg(long)]
        topic: String,
        /// When the list lapses (RFC 3339).
        #[arg(long)]
        expires: String,
        /// The CSV file.
        file: PathBuf,
        /// Who loads it (recorded in the log).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// List this agency's hot lists: number, name, source, topic, plates, loaded, until.
    Hotlists {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Withdraw one of this agency's hot lists before its expiry (a recovered car, a list
    /// sent in error): it lapses at once and its plates are deleted. Logged with the reason.
    HotlistWithdraw {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The list's number (`alpr-node hotlists`).
        #[arg(long)]
        id: i64,
        /// Why it is withdrawn (logged).
        #[arg(long)]
        reason: String,
        /// Who withdraws it (recorded in the log).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// List evidence holds and how many reads each keeps.
    Holds {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Drop every day of reads older than retention now (the daemon also does this on a schedule).
    Purge {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List the accounts of this node.
    Users {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// A person connecting to their node.
#[derive(Args, Debug)]
pub struct PersonArgs {
    /// Your node's address (host:port).
    #[arg(long)]
    pub node: String,
    /// Certificates.
    #[command(flatten)]
    pub tls: PersonTls,
}

/// Administrative commands.
#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Turn sharing on or off (on requires the complete SB 34 usage and privacy policy). Admin only.
    Sharing {
        /// on or off.
        state: OnOff,
    },
    /// Refuse every inbound query (emergency stop), or resume. Admin only.
    RefuseAll {
        /// on or off.
        state: OnOff,
    },
    /// Refuse every query from one agency. Admin only.
    Refuse {
        /// The requester ORI.
        ori: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Stop refusing an agency. Admin only.
    Allow {
        /// The requester ORI.
        ori: String,
    },
    /// Accept the node's current switches, accounts and agreement states after the node
    /// found them changed outside its logged admin path (admin). Check them first
    /// (`alpr-node status`, `alpr-node users`, `alpr-node agreement list`); sharing resumes.
    AcknowledgeState {
        /// What was checked, and why the state is right.
        #[arg(long)]
        note: String,
    },
    /// Add an account (admin): investigator, supervisor or auditor.
    AddUser {
        /// User id (the user claim of their certificate).
        user: String,
        /// Role.
        #[arg(long, default_value = "investigator")]
        role: String,
    },
    /// Issue a one-time code with which the person enrolls their browser in the web
    /// console (admin or supervisor; valid 72 hours; printed once, never logged).
    Invite {
        /// User id.
        user: String,
    },
    /// Approve a person's enrolled browser key (supervisor; never your own): issues their
    /// certificate under the agency CA of `[console]` and approves the account if needed.
    ApproveKey {
        /// User id.
        user: String,
    },
    /// Approve an account (supervisor; never your own).
    Approve {
        /// User id.
        user: String,
    },
    /// Record completed training (supervisor or admin).
    Training {
        /// User id.
        user: String,
        /// When completed (RFC 3339); default now.
        #[arg(long)]
        date: Option<String>,
    },
    /// Place an evidence hold (supervisor): keep one plate's reads in a window past
    /// retention, for a case, until the hold expires.
    Hold {
        /// Case number.
        #[arg(long)]
        case: String,
        /// Plate.
        #[arg(long)]
        plate: String,
        /// Window start (RFC 3339).
        #[arg(long)]
        from: String,
        /// Window end (RFC 3339).
        #[arg(long)]
        to: String,
        /// When the hold lapses (RFC 3339).
        #[arg(long)]
        until: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Approve or deny one queued out-of-state request (supervisor or admin), where the
    /// state serves such requesters one request at a time (`alpr-node approvals` lists them).
    Request {
        /// The request's number.
        id: u64,
        /// `approve` or `deny`.
        #[arg(value_parser = ["approve", "deny"])]
        decision: String,
        /// Why (mandatory, logged).
        #[arg(long)]
        note: String,
    },
    /// Record what came of one hot-list hit (supervisor or admin): `--stopped` with
    /// `--outcome arrest|citation|warning|released|misread`, or `--outcome no_stop`.
    HitOutcome {
        /// The hit's audit entry number (`alpr-node hits` lists them).
        seq: u64,
        /// The hit led to a traffic stop.
        #[arg(long)]
        stopped: bool,
        /// What came of it.
        #[arg(long, value_parser = ["arrest", "citation", "warning", "released", "misread", "no_stop"])]
        outcome: String,
        /// What happened, in words (mandatory, logged).
        #[arg(long)]
        note: String,
    },
    /// Record your review of one logged search (supervisor).
    Review {
        /// The audit entry number (from `alpr-node report sample`).
        seq: i64,
        /// The search was justified.
        #[arg(long, conflicts_with = "not_justified")]
        justified: bool,
        /// The search was not justified.
        #[arg(long)]
        not_justified: bool,
        /// Notes.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Disable an account at once (supervisor or admin), including for queries in flight.
    /// With --revoke-cert, also revoke the person's certificate at the agency CA in the same
    /// command (for a separated employee); nodes and the broker pick up the new CRL without
    /// a restart.
    Disable {
        /// User id.
        user: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        /// The person's certificate to revoke.
        #[arg(long, requires = "pki_dir")]
        revoke_cert: Option<PathBuf>,
        /// The agency's PKI directory (where its CA key and CRL live).
        #[arg(long)]
        pki_dir: Option<PathBuf>,
    },
}

/// Report kinds.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ReportKind {
    /// The agency's public transparency report.
    Transparency,
    /// How far back searches reached (the State Auditor's Table 2).
    SearchAge,
    /// Inbound queries by requester and purpose.
    Inbound,
    /// Repeated plates per user, vague reasons, unusual hours.
    Anomalies,
    /// A random sample of searches for supervisor review (`alpr-node admin review`).
    Sample,
}

/// on / off.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// An investigator's search.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// Your node's address (host:port).
    #[arg(long)]
    pub node: String,
    /// Certificates.
    #[command(flatten)]
    pub tls: PersonTls,
    /// Plate (spaces and dashes are removed; no wildcards).
    #[arg(long)]
    pub plate: String,
    /// The plate's issuing state as NCIC codes it (CA, NV, TX, DC, PR, ON, US, ...), or ANY
    /// to search plates of every state (logged and shown as such).
    #[arg(long)]
    pub state: String,
    /// Window start (RFC 3339).
    #[arg(long)]
    pub from: String,
    /// Window end (RFC 3339); default now.
    #[arg(long)]
    pub to: Option<String>,
    /// Purpose code (NIBRS offense code or X-MISSING, X-AMBER, X-SILVER, X-HOTLIST, X-WARRANT).
    #[arg(long)]
    pub purpose: String,
    /// Case number (mandatory).
    #[arg(long)]
    pub case: String,
    /// Specific reason: what happened and why this plate.
    #[arg(long)]
    pub reason: String,
    /// Warrant reference, needed for windows beyond the owner's no-warrant limit.
    #[arg(long, default_value = "")]
    pub warrant: String,
    /// ORI of an agency this search is made on behalf of.
    #[arg(long, default_value = "")]
    pub on_behalf_of: String,
    /// When the incident was reported to your agency (RFC 3339). Some states need a warrant
    /// once a number of days have passed since then (or when it is not given).
    #[arg(long)]
    pub incident_date: Option<String>,
    /// The plate is partial: `?` for each unknown character (at most 2, at least 5 known;
    /// a window of at most 7 days). Answered only by agencies whose agreement and policy
    /// allow wildcard searches.
    #[arg(long)]
    pub wildcard: bool,
    /// Target agency ORI (repeat for several; there is no "search everyone").
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
}

/// An investigator's hot-list share.
#[derive(Args, Debug)]
pub struct ShareArgs {
    /// Your node's address (host:port).
    #[arg(long)]
    pub node: String,
    /// Certificates.
    #[command(flatten)]
    pub tls: PersonTls,
    /// The list: CSV `plate,state,note` per line (state empty for any state; `?` in a plate
    /// for one unknown character, at most 5 such entries).
    #[arg(long)]
    pub file: PathBuf,
    /// The list's name.
    #[arg(long)]
    pub name: String,
    /// Where the list comes from.
    #[arg(long)]
    pub source: String,
    /// What the list is about.
    #[arg(long)]
    pub topic: String,
    /// When the share ends (RFC 3339): at most 30 days from now.
    #[arg(long)]
    pub expires: String,
    /// Purpose code (NIBRS offense code or X-...); the agreement must cover it.
    #[arg(long)]
    pub purpose: String,
    /// Case number (mandatory).
    #[arg(long)]
    pub case: String,
    /// Specific reason: why these plates, and why these agencies' cameras.
    #[arg(long)]
    pub reason: String,
    /// Warrant reference, where the target's state needs one.
    #[arg(long, default_value = "")]
    pub warrant: String,
    /// Target agency ORI (repeat for several).
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
}

/// `withdraw-share` arguments.
#[derive(Args, Debug)]
pub struct WithdrawShareArgs {
    /// Your node's address (host:port).
    #[arg(long)]
    pub node: String,
    /// Certificates.
    #[command(flatten)]
    pub tls: PersonTls,
    /// The shared list's name.
    #[arg(long)]
    pub name: String,
    /// Purpose code the list was shared under (the agreement must still cover it).
    #[arg(long)]
    pub purpose: String,
    /// Case number.
    #[arg(long)]
    pub case: String,
    /// Why it is withdrawn (e.g. the vehicle was recovered).
    #[arg(long)]
    pub reason: String,
    /// Warrant reference, where the target's state needs one.
    #[arg(long, default_value = "")]
    pub warrant: String,
    /// Target agency ORI (repeat for several).
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
}

/// Agreement commands.
#[derive(Subcommand, Debug)]
pub enum AgreementCmd {
    /// Write an unsigned agreement draft (provider shares with requester).
    Draft {
        /// Provider (data owner) ORI.
        #[arg(long)]
        provider: String,
        /// Requester ORI.
        #[arg(long)]
        requester: String,
        /// Allowed purpose code (repeat).
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// Maximum look-back, days.
        #[arg(long, default_value_t = 90)]
        lookback_days: u32,
        /// Validity from now, days (mandatory expiry; at most 366).
        #[arg(long, default_value_t = 180)]
        valid_days: i64,
        /// The requester's right and need to know.
        #[arg(long)]
        justification: String,
        /// Also answer wildcard-plate searches (`?` for up to 2 unknown characters, at most
        /// 7 days), if the provider's policy allows them too. Off: full plates only.
        #[arg(long)]
        wildcard: bool,
        /// Also let the requester share hot lists with the provider (data type
        /// `hotlists`): the provider's cameras watch for the listed plates and report hits.
        #[arg(long)]
        hotlists: bool,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print an agreement file's terms exactly as they are (or will be) signed.
    Show {
        /// Agreement file.
        file: PathBuf,
    },
    /// Sign an agreement file in place with an admin certificate (provider or requester
    /// side). Prints the terms and asks for confirmation first.
    Sign {
        /// Agreement file.
        file: PathBuf,
        /// Sign without asking (for scripts; the terms are still printed).
        #[arg(long)]
        yes: bool,
        /// State root certificate.
        #[arg(long)]
        root: PathBuf,
        /// Admin certificate chain.
        #[arg(long)]
        cert: PathBuf,
        /// Admin key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Attach the requester admin's signed written declaration (required by some states,
    /// e.g. Illinois, from out-of-state requesters).
    Declare {
        /// Agreement file.
        file: PathBuf,
        /// The declaration's text.
        #[arg(long)]
        text: String,
        /// Requester admin certificate chain.
        #[arg(long)]
        cert: PathBuf,
        /// Requester admin key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify a doubly signed agreement and keep this node's own copy (it takes effect
    /// only once the node has seen it in the registry log).
    Import {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Agreement file.
        file: PathBuf,
    },
    /// Register a doubly signed agreement at the broker.
    Submit {
        /// Node config file (its [broker] section and node certificate are used).
        #[arg(long, short)]
        config: PathBuf,
        /// Agreement file.
        file: PathBuf,
    },
    /// List this node's agreements.
    List {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Prove that an agreement is registered: its registration entry and the entry's
    /// inclusion proof against the newest registry head this node verified, as a JSON file
    /// anyone holding the state root verifies (`alpr-node agreement verify-proof`).
    Prove {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The agreement id (`agr-…`, as `agreement list` shows it).
        id: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a registration proof from `alpr-node agreement prove` or the console (any
    /// agency's) against this node's trust store.
    VerifyProof {
        /// Node config file (for the trust store).
        #[arg(long, short)]
        config: PathBuf,
        /// The proof file.
        file: PathBuf,
    },
}

/// Audit commands.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print entries as JSON lines (same filters as export).
    List {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Filters.
        #[command(flatten)]
        filter: AuditFilterArgs,
    },
    /// Export entries as JSON lines or CSV to a file; the export itself is logged.
    Export {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Filters.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// jsonl, csv, or log (the whole log exactly as stored, for verification against
        /// the anchors).
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Who exports (recorded in the log).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Verify the hash chain, the tree, the signed checkpoints and the anchors kept, then
    /// compare the log with the newest anchor the broker holds for it; exits non-zero
    /// naming the first bad entry, checkpoint or anchor.
    Verify {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Skip the comparison with the broker's anchor (the local checks still run).
        #[arg(long)]
        offline: bool,
    },
    /// Anchor the audit log at the broker now (the daemon does so every
    /// `[audit] anchor_interval_secs`).
    Anchor {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Prove that this node logged a query: its entries, each with an inclusion proof
    /// against an anchored tree head, as a JSON bundle that anyone holding the state root
    /// verifies (`alpr-node audit verify-proof`, `alpr-broker registry verify-proof`).
    Prove {
        /// Node config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The query id (hex, as the audit log and the search output show it).
        query_id: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a proof bundle from `alpr-node audit prove` (any agency's) against this
    /// node's trust store.
    VerifyProof {
        /// Node config file (for the trust store).
        #[arg(long, short)]
        config: PathBuf,
        /// The bundle.
        file: PathBuf,
    },
}

/// Audit filters.
#[derive(Args, Debug, Default)]
pub struct AuditFilterArgs {
    /// Only this event (inbound_query, outbound_query, outbound_result, ingest, config_change, account_change, agreement_import, export).
    #[arg(long)]
    pub event: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this requesting agency (ORI).
    #[arg(long)]
    pub requester: Option<String>,
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this purpose code.
    #[arg(long)]
    pub purpose: Option<String>,
}

impl AuditFilterArgs {
    fn to_filter(&self) -> Result<audit::Filter, Error> {
        let event = match &self.event {
            Some(e) => Some(e.parse::<audit::Event>().map_err(|_| {
                Error::Usage(format!(
                    "--event {e:?} is not an audit event; events are: {}",
                    audit::Event::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?),
            None => None,
        };
        Ok(audit::Filter {
            event,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            requester_ori: self.requester.clone(),
            user: self.user.clone(),
            purpose: self.purpose.clone(),
        })
    }
}

/// Run the CLI and return the process exit code.
/// Exit code of `alpr-node query` when no target answered: every one refused, was
/// unavailable or sent a bad reply, or the own node refused the whole query. (0: at least
/// one target answered; 1: an error such as a missing file or no connection; 2: bad
/// command-line arguments.)
pub const EXIT_NOTHING_ANSWERED: u8 = 3;
/// Exit code of `alpr-node ingest` when some rows were rejected (the rest are stored).
pub const EXIT_SOME_REJECTED: u8 = 4;
/// Exit code of `alpr-node ingest` when no row was accepted (an empty file, or every row
/// rejected).
pub const EXIT_NOTHING_ACCEPTED: u8 = 5;
/// Exit code of `alpr-node ingest` when it was stopped (SIGTERM, Ctrl-C) before the end;
/// running it again resumes.
pub const EXIT_INTERRUPTED: u8 = 6;

/// Run a parsed command line; the process exit code (see [`EXIT_NOTHING_ANSWERED`]).
pub fn main(cli: Cli) -> std::process::ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("alpr-node: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e @ Error::NothingAnswered(_)) => {
            eprintln!("alpr-node: {e}");
            std::process::ExitCode::from(EXIT_NOTHING_ANSWERED)
        }
        Err(e @ Error::Incomplete { exit, .. }) => {
            eprintln!("alpr-node: {e}");
            std::process::ExitCode::from(exit)
        }
        Err(e) => {
            eprintln!("alpr-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Load the config of a node that exists. Host commands never create a node's databases:
/// a mistyped `data_dir` is an error, not an empty log that "verifies".
fn load_existing(config: &std::path::Path) -> Result<NodeConfig, Error> {
    let cfg = NodeConfig::load(config)?;
    for p in [cfg.db_path(), cfg.audit_path()] {
        if !p.exists() {
            return Err(Error::Usage(format!(
                "no node database at {}: is data_dir in {} right? (`alpr-node serve` creates it)",
                p.display(),
                config.display()
            )));
        }
    }
    Ok(cfg)
}

fn parse_time(s: &str) -> Result<i64, Error> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            Error::Usage(format!(
                "{s:?} is not an RFC 3339 time (e.g. 2026-11-01T00:00:00Z): {e}"
            ))
        })
}

pub use alpr_pki::fmt_time;

fn read_agreement(path: &PathBuf) -> Result<SignedAgreement, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    SignedAgreement::decode(bytes.as_slice())
        .map_err(|e| Error::Usage(format!("{}: not an agreement file: {e}", path.display())))
}

async fn run(cli: Cli) -> Result<(), Error> {
    let otlp = match &cli.command {
        Command::Serve { config } => NodeConfig::load(config)?.telemetry.otlp_endpoint,
        _ => None,
    };
    let _telemetry = alpr_runtime::telemetry::init("alpr-node", otlp.as_deref())?;
    match cli.command {
        Command::Purposes { state } => {
            let rules = match &state {
                Some(s) => {
                    let j = s
                        .parse::<alpr_pki::Jurisdiction>()
                        .map_err(|e| Error::Usage(format!("--state {s:?}: {e}")))?;
                    Some(alpr_proto::rules::StateRules::for_jurisdiction(&j)?)
                }
                None => None,
            };
            // Line by line; a reader that stops early (`| head`) ends the listing quietly.
            let mut out = std::io::stdout().lock();
            for p in alpr_proto::purpose::all() {
                let mut notes = vec![rules.map_or(p.severity, |r| r.severity_of(p)).to_string()];
                if p.needs_justification {
                    notes.push("catch-all: needs a 60-character justification".to_owned());
                }
                if p.federal_offense {
                    notes.push("federal offense".to_owned());
                }
                if let Some(r) = rules
                    && let Err(e) = r.check_purpose(p)
                {
                    notes.push(format!("REFUSED in {}: {}", r.version, e.detail()));
                }
                let line = format!("{:<10} {}  ({})", p.code, p.name, notes.join("; "));
                match std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    r => r.map_err(|e| Error::io("standard output", e))?,
                }
            }
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = NodeConfig::load(&config)?;
            for line in Node::check_config(&cfg)? {
                println!("{line}");
            }
            println!("{}: OK, the node would start", config.display());
            Ok(())
        }
        Command::Status { config } => {
            let node = Node::open(&load_existing(&config)?)?;
            println!("{}", node.status()?);
            Ok(())
        }
        Command::Decommission {
            config,
            out,
            cert,
            key,
            yes,
        } => {
            let cfg = load_existing(&config)?;
            if !yes {
                return Err(Error::Usage(format!(
                    "decommission destroys {}'s data key once everything is exported to {}; run again with --yes to go ahead",
                    cfg.ori,
                    out.display()
                )));
            }
            let admin = alpr_pki::Signer::load(&cert, &key)?;
            let _lock = crate::server::DataDirLock::acquire(&cfg.data_dir)?;
            let node = Node::open(&cfg)?;
            let d = node.decommission(&out, &admin).await?;
            let m = &d.manifest;
            println!(
                "{} decommissioned: {} agreements revoked; {} files exported to {} with a signed manifest; {} audit entries, final head anchored at {}; {}",
                m.ori,
                m.revoked_agreements.len(),
                m.files.len(),
                d.dir.display(),
                m.audit_entries,
                m.anchored_size,
                match &m.data_key_destroyed {
                    Some(id) =>
                        format!("data key {id} destroyed: node.db and audit.db are unreadable"),
                    None => "the plain databases were overwritten and removed".into(),
                }
            );
            println!(
                "next: revoke the node certificate at the agency CA (`alpr-pki revoke`), and destroy the KEK and any backups"
            );
            Ok(())
        }
        Command::Publish {
            config,
            period,
            out,
        } => {
            let cfg = load_existing(&config)?;
            let node = Node::open(&cfg)?;
            let period = match period {
                Some(p) => crate::publish::Period::parse(&p)?,
                None => crate::publish::Period::last_complete(
                    node.rules
                        .report
                        .as_ref()
                        .map_or("quarterly", |r| r.every.as_str()),
                    alpr_pki::now_unix(),
                )?,
            };
            let dir = out.unwrap_or_else(|| cfg.data_dir.join("reports"));
            let p = node.publish_report(&period, &dir)?;
            println!(
                "published {} searches of {}'s data in {} to {}",
                p.report.searches.len(),
                cfg.ori,
                period.label,
                p.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::VerifyReport { json, root, crls } => {
            let trust = alpr_pki::TrustStore::load(&root, &crls)?;
            let signed = json.with_extension("signed");
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::io(p, e));
            let r = crate::publish::verify(&read(&json)?, &read(&signed)?, &trust)?;
            println!(
                "report of {} for {} verifies: signed by a node of {}, {} searches, audit log of {} entries",
                r.agency,
                r.period.label,
                r.ori,
                r.searches.len(),
                r.audit_size
            );
            Ok(())
        }
        Command::OwnerRequest {
            config,
            plate,
            state,
            verified_by,
            verification,
            out,
        } => {
            if out.exists() {
                return Err(Error::Usage(format!(
                    "{} exists; an answer is never overwritten",
                    out.display()
                )));
            }
            let node = Node::open(&load_existing(&config)?)?;
            let a = node.owner_request(&plate, &state, &verified_by, &verification)?;
            let json = serde_json::to_string_pretty(&a).map_err(|e| Error::Usage(e.to_string()))?;
            std::fs::write(&out, json).map_err(|e| Error::io(&out, e))?;
            println!(
                "answered the owner's request for {} ({}): {} reads and {} searches by other agencies, written to {}",
                a.plate,
                a.plate_state,
                a.reads.len(),
                a.searches.len(),
                out.display()
            );
            Ok(())
        }
        Command::Hits { config, open } => {
            let cfg = load_existing(&config)?;
            let entries = store::audit::list(&cfg.open_audit()?, None)?;
            let mut latest = std::collections::HashMap::new();
            for e in entries
                .iter()
                .filter(|e| e.entry.event == crate::audit::Event::HitOutcome)
            {
                if let Some(hit) = e.entry.refers_to {
                    latest.insert(hit, e);
                }
            }
            let mut shown = 0;
            for h in entries.iter().rev().filter(|e| {
                e.entry.event == crate::audit::Event::HotlistHit && e.entry.target.is_none()
            }) {
                let outcome = latest.get(&h.seq);
                if open && outcome.is_some() {
                    continue;
                }
                shown += 1;
                println!(
                    "#{} {} {}\n    {}",
                    h.seq,
                    fmt_time(h.entry.at),
                    h.entry.detail.as_deref().unwrap_or(""),
                    match outcome {
                        Some(o) => format!(
                            "outcome: {} ({}), recorded by {} at {}",
                            o.entry.outcome.as_deref().unwrap_or("?"),
                            o.entry.decision,
                            o.entry.requester_user.as_deref().unwrap_or("?"),
                            fmt_time(o.entry.at)
                        ),
                        None => "outcome: not recorded".into(),
                    }
                );
            }
            if shown == 0 {
                println!(
                    "{}",
                    if open {
                        "no hits without an outcome"
                    } else {
                        "no hot-list hits"
                    }
                );
            }
            Ok(())
        }
        Command::Approvals { config } => {
            let db = load_existing(&config)?.open_db()?;
            let all = store::approvals::list(&db)?;
            if all.is_empty() {
                println!("no queued requests");
            }
            for r in all {
                println!(
                    "#{} {} {}@{} plate {} ({}) purpose {} case {} window {} .. {} asked {}{}\n    reason: {}",
                    r.id,
                    r.status,
                    r.requester_user,
                    r.requester_ori,
                    r.asked.plate,
                    r.asked.plate_state,
                    r.asked.purpose,
                    r.asked.case_number,
                    fmt_time(r.asked.window_start),
                    fmt_time(r.asked.window_end),
                    fmt_time(r.requested_at),
                    match (&r.decided_by, r.decided_at) {
                        (Some(by), Some(at)) => format!(
                            "; decided by {by} at {}: {}",
                            fmt_time(at),
                            r.note.as_deref().unwrap_or("")
                        ),
                        _ => String::new(),
                    },
                    r.asked.reason
                );
            }
            Ok(())
        }
        Command::VerifyExport { dir, root, crls } => {
            let trust = alpr_pki::TrustStore::load(&root, &crls)?;
            let (m, lines) = crate::decommission::verify_export(&dir, &trust)?;
            for l in lines {
                println!("ok: {l}");
            }
            println!("export of {} verifies", m.ori);
            Ok(())
        }
        Command::Backup { config, out } => {
            let node = Node::open(&load_existing(&config)?)?;
            let b = node.backup(&out)?;
            println!(
                "backed up {} reads and {} audit entries ({} signed checkpoints, verified) to {}; manifest {}",
                b.reads,
                b.audit_entries,
                b.checkpoints,
                b.dir.display(),
                b.manifest.display()
            );
            Ok(())
        }
        Command::Serve { config } => {
            let cfg = NodeConfig::load(&config)?;
            let running = crate::start(&cfg).await?;
            println!(
                "alpr-node {} serving on {}",
                running.node.ori(),
                running.addr
            );
            alpr_runtime::server::shutdown_signal().await;
            eprintln!("alpr-node: shutting down");
            running.stop().await
        }
        Command::Ingest {
            config,
            file,
            rejects,
        } => {
            let cfg = load_existing(&config)?;
            let node = Node::open(&cfg)?;
            let f = std::fs::File::open(&file).map_err(|e| Error::io(&file, e))?;
            let started = std::time::Instant::now();
            // SIGTERM or Ctrl-C: finish the batch in hand, log, and say how to resume.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let watcher = {
                let stop = stop.clone();
                tokio::spawn(async move {
                    alpr_runtime::server::shutdown_signal().await;
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                })
            };
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let (n, flag, source) = (node.clone(), stop.clone(), file.display().to_string());
            let done = tokio::task::spawn_blocking(move || {
                n.ingest_file(
                    &source,
                    std::io::BufReader::new(f),
                    |lines| {
                        if tty {
                            eprint!("\r{lines} lines read");
                        }
                    },
                    Some(&flag),
                )
            })
            .await
            .map_err(|e| Error::Usage(format!("ingest stopped: {e}")));
            watcher.abort();
            if tty {
                eprintln!();
            }
            let ingest::FileIngest {
                report,
                hits,
                decision,
                summary,
            } = done??;
            let rejected = report.rejects.len() as u64;
            for h in &hits {
                println!("HOT-LIST HIT: {h}");
            }
            for r in report.rejects.iter().take(20) {
                eprintln!("{}:{}: {}", file.display(), r.line, r.reason);
            }
            if rejected > 20 {
                eprintln!("... and {} more rejected rows", rejected - 20);
            }
            if let Some(path) = rejects {
                let mut text = String::from("line,reason\n");
                for r in &report.rejects {
                    text.push_str(&format!(
                        "{},\"{}\"\n",
                        r.line,
                        r.reason.replace('"', "\"\"")
                    ));
                }
                std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
            }
            println!("{summary} in {:.2}s", started.elapsed().as_secs_f64());
            let exit = match decision {
                Decision::Ok => return Ok(()),
                Decision::Partial => EXIT_SOME_REJECTED,
                Decision::NothingAccepted => EXIT_NOTHING_ACCEPTED,
                _ => EXIT_INTERRUPTED,
            };
            Err(Error::Incomplete {
                exit,
                message: format!("ingest {decision}"),
            })
        }
        Command::Query(q) => {
            let Person {
                trust,
                signer,
                tls: me,
            } = q.tls.load()?;
            let now = alpr_pki::now_unix();
            let params = SearchParams {
                plate: q.plate,
                plate_state: q.state,
                window_start: parse_time(&q.from)?,
                window_end: q.to.as_deref().map(parse_time).transpose()?.unwrap_or(now),
                purpose: q.purpose,
                case_number: q.case,
                reason: q.reason,
                warrant_ref: q.warrant,
                on_behalf_of: q.on_behalf_of,
                targets: q.targets,
                ttl_secs: 300,
                shape: if q.wildcard {
                    alpr_proto::input::SHAPE_WILDCARD.into()
                } else {
                    String::new()
                },
                incident_reported_at: q
                    .incident_date
                    .as_deref()
                    .map(parse_time)
                    .transpose()?
                    .unwrap_or(0),
                hotlist: None,
            };
            let (query, signed) = client::sign_query(&signer, &trust, &params, now)?;
            let resp = search_through(&q.tls.target(&q.node), &trust, &me, &signed).await?;
            let (lines, answered) = describe_results(&trust, &query, &resp.results);
            for line in lines {
                println!("{line}");
            }
            if answered == 0 {
                return Err(Error::NothingAnswered(format!(
                    "none of the {} target(s) answered",
                    resp.results.len()
                )));
            }
            Ok(())
        }
        Command::WithdrawShare(a) => {
            let Person {
                trust,
                signer,
                tls: me,
            } = a.tls.load()?;
            let now = alpr_pki::now_unix();
            let params = SearchParams {
                window_end: now + 3600,
                purpose: a.purpose,
                case_number: a.case,
                reason: a.reason,
                warrant_ref: a.warrant,
                targets: a.targets,
                ttl_secs: 300,
                shape: alpr_proto::hotlist::SHAPE_HOTLIST.into(),
                hotlist: Some(client::hotlist_withdrawal(&a.name)),
                ..Default::default()
            };
            let (query, signed) = client::sign_query(&signer, &trust, &params, now)?;
            let resp = search_through(&a.tls.target(&a.node), &trust, &me, &signed).await?;
            let (lines, confirmed) = describe_results(&trust, &query, &resp.results);
            for line in lines {
                println!("{line}");
            }
            if confirmed < resp.results.len() {
                return Err(Error::NothingAnswered(format!(
                    "{} of the {} target(s) did not confirm the withdrawal: they may still watch for the list; withdraw it again from them",
                    resp.results.len() - confirmed,
                    resp.results.len()
                )));
            }
            Ok(())
        }
        Command::ShareHotlist(a) => {
            let Person {
                trust,
                signer,
                tls: me,
            } = a.tls.load()?;
            let now = alpr_pki::now_unix();
            let text = std::fs::read_to_string(&a.file).map_err(|e| Error::io(&a.file, e))?;
            let list = client::hotlist_from_csv(&a.name, &a.source, &a.topic, &text)
                .map_err(|e| Error::Usage(format!("{}: {e}", a.file.display())))?;
            let params = SearchParams {
                window_end: parse_time(&a.expires)?,
                purpose: a.purpose,
                case_number: a.case,
                reason: a.reason,
                warrant_ref: a.warrant,
                targets: a.targets,
                ttl_secs: 300,
                shape: alpr_proto::hotlist::SHAPE_HOTLIST.into(),
                hotlist: Some(list),
                ..Default::default()
            };
            let (query, signed) = client::sign_query(&signer, &trust, &params, now)?;
            let resp = search_through(&a.tls.target(&a.node), &trust, &me, &signed).await?;
            let (lines, kept) = describe_results(&trust, &query, &resp.results);
            for line in lines {
                println!("{line}");
            }
            if kept > 0 {
                println!(
                    "each target that answered keeps the list until {} and reports every hit to your node (`alpr-node audit list --event hotlist_hit`)",
                    alpr_pki::fmt_time(query.window_end)
                );
            }
            if kept == 0 {
                return Err(Error::NothingAnswered(format!(
                    "none of the {} target(s) took the list",
                    resp.results.len()
                )));
            }
            Ok(())
        }
        Command::Agreement(cmd) => agreement(cmd).await,
        Command::SealKey(cmd) => seal_key::run(cmd).await,
        Command::Keys(cmd) => keys::run(cmd),
        Command::Admin { person, cmd } => {
            let Person {
                trust,
                tls: me,
                signer,
            } = person.tls.load()?;
            let target = person.tls.target(&person.node);
            let mut c = client::admin_client(&target, &trust, &me, Duration::from_secs(30))?;
            let req = match cmd {
                AdminCmd::Sharing { state } => {
                    client::switch(Switch::Sharing, matches!(state, OnOff::On), "", "")
                }
                AdminCmd::RefuseAll { state } => {
                    client::switch(Switch::RefuseAll, matches!(state, OnOff::On), "", "")
                }
                AdminCmd::Refuse { ori, note } => {
                    client::switch(Switch::RefuseRequester, true, &ori, &note)
                }
                AdminCmd::Allow { ori } => client::switch(Switch::RefuseRequester, false, &ori, ""),
                AdminCmd::AcknowledgeState { note } => client::acknowledge_state(&note),
                AdminCmd::AddUser { user, role } => client::user_cmd("add", &user, &role, 0, ""),
                AdminCmd::Approve { user } => client::user_cmd("approve", &user, "", 0, ""),
                AdminCmd::Invite { user } => client::user_cmd("invite", &user, "", 0, ""),
                AdminCmd::ApproveKey { user } => client::user_cmd("approve-key", &user, "", 0, ""),
                AdminCmd::Training { user, date } => {
                    let t = date
                        .as_deref()
                        .map(parse_time)
                        .transpose()?
                        .unwrap_or_else(alpr_pki::now_unix);
                    client::user_cmd("training", &user, "", t, "")
                }
                AdminCmd::Disable {
                    user,
                    note,
                    revoke_cert,
                    pki_dir,
                } => {
                    if let (Some(cert), Some(dir)) = (revoke_cert, pki_dir) {
                        // The whole chain (the person's certificate and its agency CA's).
                        let chain = alpr_pki::read_cert_chain(&cert)?;
                        let id = alpr_pki::TrustStore::new(trust.root().clone(), vec![])
                            .verify(&chain, alpr_pki::now_unix())?;
                        let mine = alpr_pki::TrustStore::new(trust.root().clone(), vec![])
                            .verify(signer.chain(), alpr_pki::now_unix())?;
                        if id.user.as_deref() != Some(user.as_str()) || id.ori() != mine.ori() {
                            return Err(Error::Usage(format!(
                                "{} is {}'s certificate, not the certificate of {user} at your agency ({})",
                                cert.display(),
                                id.describe(),
                                mine.ori().unwrap_or("?")
                            )));
                        }
                        let ori = id.ori().unwrap_or_default().to_owned();
                        let r = alpr_pki::PkiLayout::new(&dir).revoke(&cert, Some(&ori))?;
                        println!(
                            "revoked serial {} ({}); {} — copy it to every node and the broker",
                            r.serial,
                            cert.display(),
                            r.crl.display()
                        );
                    }
                    client::user_cmd("disable", &user, "", 0, &note)
                }
                AdminCmd::Hold {
                    case,
                    plate,
                    from,
                    to,
                    until,
                    note,
                } => alpr_proto::pb::AdminRequest {
                    command: Some(alpr_proto::pb::admin_request::Command::Hold(
                        alpr_proto::pb::HoldCommand {
                            case_number: case,
                            plate,
                            window_start: parse_time(&from)?,
                            window_end: parse_time(&to)?,
                            expires_at: parse_time(&until)?,
                            note,
                        },
                    )),
                },
                AdminCmd::HitOutcome {
                    seq,
                    stopped,
                    outcome,
                    note,
                } => alpr_proto::pb::AdminRequest {
                    command: Some(alpr_proto::pb::admin_request::Command::HitOutcome(
                        alpr_proto::pb::HitOutcome {
                            hit_seq: seq,
                            stopped,
                            outcome,
                            note,
                        },
                    )),
                },
                AdminCmd::Request { id, decision, note } => alpr_proto::pb::AdminRequest {
                    command: Some(alpr_proto::pb::admin_request::Command::RequestDecision(
                        alpr_proto::pb::RequestDecision {
                            id,
                            approve: decision == "approve",
                            note,
                        },
                    )),
                },
                AdminCmd::Review {
                    seq,
                    justified,
                    not_justified,
                    note,
                } => {
                    if justified == not_justified {
                        return Err(Error::Usage("say --justified or --not-justified".into()));
                    }
                    alpr_proto::pb::AdminRequest {
                        command: Some(alpr_proto::pb::admin_request::Command::Review(
                            alpr_proto::pb::ReviewCommand {
                                seq,
                                justified,
                                note,
                            },
                        )),
                    }
                }
            };
            println!("{}", c.admin(req).await?.into_inner().message);
            Ok(())
        }
        Command::Report { config, kind, size } => {
            let cfg = load_existing(&config)?;
            let entries = store::audit::list(&cfg.open_audit()?, None)?;
            let text = match kind {
                ReportKind::Transparency => crate::reports::transparency(
                    &*Node::open(&cfg)?,
                    &entries,
                    alpr_pki::now_unix(),
                )?,
                ReportKind::SearchAge => crate::reports::search_age(&entries),
                ReportKind::Inbound => crate::reports::inbound_summary(&entries),
                ReportKind::Anomalies => crate::reports::anomalies(&entries, 5),
                ReportKind::Sample => crate::reports::review_sample(&entries, size)
                    .into_iter()
                    .map(|e| {
                        format!(
                            "#{} {} {} {}@{} plate={} ({}) purpose={} case={} reason={:?}\n",
                            e.seq,
                            fmt_time(e.entry.at),
                            e.entry.event,
                            e.entry.requester_user.as_deref().unwrap_or("?"),
                            e.entry.requester_ori.as_deref().unwrap_or("?"),
                            e.entry.plate.as_deref().unwrap_or("-"),
                            e.entry.plate_state.as_deref().unwrap_or("state not named"),
                            e.entry.purpose.as_deref().unwrap_or("-"),
                            e.entry.case_number.as_deref().unwrap_or("-"),
                            e.entry.reason.as_deref().unwrap_or("")
                        )
                    })
                    .collect(),
            };
            print!("{text}");
            Ok(())
        }
        Command::Hotlist {
            config,
            name,
            source,
            topic,
            expires,
            file,
            by,
        } => {
            let node = Node::open(&load_existing(&config)?)?;
            let csv = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            let n = node.load_hotlist(&name, &source, &topic, parse_time(&expires)?, &csv, &by)?;
            println!("loaded hot list {name:?}: {n} plates");
            Ok(())
        }
        Command::Hotlists { config } => {
            let cfg = load_existing(&config)?;
            let now = alpr_pki::now_unix();
            let lists = store::holds::hotlists(&cfg.open_db()?, usize::MAX >> 1)?;
            if lists.is_empty() {
                println!("no hot lists loaded (alpr-node hotlist loads one)");
            }
            for l in lists {
                println!(
                    "{} {:?} source {:?} topic {:?}: {} plates, loaded {}, until {}{}",
                    l.id,
                    l.name,
                    l.source,
                    l.topic,
                    l.entries,
                    fmt_time(l.loaded_at),
                    fmt_time(l.expires_at),
                    if l.expires_at <= now { " (lapsed)" } else { "" }
                );
            }
            Ok(())
        }
        Command::HotlistWithdraw {
            config,
            id,
            reason,
            by,
        } => {
            let node = Node::open(&load_existing(&config)?)?;
            println!("{}", node.withdraw_hotlist(id, &reason, &by)?);
            Ok(())
        }
        Command::Holds { config } => {
            let cfg = load_existing(&config)?;
            let db = cfg.open_db()?;
            for h in store::holds::list(&db)? {
                println!(
                    "hold {} case {} plate {} window {} .. {} until {} approved by {}; {} reads kept past retention",
                    h.id,
                    h.case_number,
                    h.plate,
                    fmt_time(h.window_start),
                    fmt_time(h.window_end),
                    fmt_time(h.expires_at),
                    h.approved_by,
                    h.kept_reads
                );
            }
            Ok(())
        }
        Command::Purge { config } => {
            let node = Node::open(&load_existing(&config)?)?;
            let (days, reads) = node.purge()?;
            println!(
                "retention {} days: dropped {} day partition(s), {reads} reads",
                node.retention_days(),
                days.len()
            );
            Ok(())
        }
        Command::Users { config } => {
            let cfg = load_existing(&config)?;
            let conn = cfg.open_db()?;
            for a in crate::store::accounts::list(&conn)? {
                println!(
                    "{} role={} approved_by={} trained={} disabled={} last_active={}",
                    a.user,
                    a.role,
                    a.approved_by.as_deref().unwrap_or("-"),
                    a.trained_at.map(fmt_time).unwrap_or_else(|| "-".into()),
                    a.disabled_at.map(fmt_time).unwrap_or_else(|| "no".into()),
                    a.last_active_at.map(fmt_time).unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        Command::Audit(cmd) => audit_log::run(cmd).await,
    }
}

/// Send a signed query (or hot-list share) through the investigator's own node; a refusal
/// of the whole query by that node is `NothingAnswered` with its reason code.
async fn search_through(
    node: &alpr_runtime::client::Target,
    trust: &alpr_pki::TrustStore,
    me: &alpr_runtime::tls::TlsIdentity,
    signed: &alpr_proto::pb::Signed,
) -> Result<alpr_proto::pb::RouteResponse, Error> {
    let mut c = client::node_client(node, trust, me, Duration::from_secs(30))?;
    match client::search(&mut c, signed).await {
        Err(Error::Rpc(status)) => match alpr_proto::reason_of(&status) {
            // The own node refused the whole query (its reason in the trailer).
            Some(reason) => {
                let text = status.message();
                let code = reason.as_str_name();
                Err(Error::NothingAnswered(if text.starts_with(code) {
                    format!("refused by your node: {text}")
                } else {
                    format!("refused by your node: {code}: {text}")
                }))
            }
            None => Err(Error::Rpc(status)),
        },
        other => other,
    }
}

async fn agreement(cmd: AgreementCmd) -> Result<(), Error> {
    match cmd {
        AgreementCmd::Draft {
            provider,
            requester,
            purposes,
            lookback_days,
            valid_days,
            justification,
            wildcard,
            hotlists,
            out,
        } => {
            let now = alpr_pki::now_unix();
            let mut data_types = vec!["reads".to_string()];
            if hotlists {
                data_types.push("hotlists".into());
            }
            let terms = Agreement {
                provider_ori: provider,
                requester_ori: requester,
                purposes,
                data_types,
                max_lookback_days: lookback_days,
                valid_from: now,
                valid_until: now + valid_days * 86_400,
                justification,
                drafted_at: now,
                query_shapes: if wildcard {
                    vec![alpr_proto::input::SHAPE_WILDCARD.into()]
                } else {
                    vec![]
                },
            };
            let sa = client::draft_agreement(&terms)?;
            std::fs::write(&out, sa.encode_to_vec()).map_err(|e| Error::io(&out, e))?;
            println!("wrote draft {}", out.display());
            Ok(())
        }
        AgreementCmd::Show { file } => {
            println!("{}", client::describe_agreement(&read_agreement(&file)?)?);
            Ok(())
        }
        AgreementCmd::Sign {
            file,
            yes,
            root,
            cert,
            key,
        } => {
            let trust = TrustStore::load(&root, &[] as &[PathBuf])?;
            let mut sa = read_agreement(&file)?;
            println!("{}", client::describe_agreement(&sa)?);
            if !yes {
                // An answer is read from a terminal or a pipe; silence never signs.
                use std::io::{BufRead as _, Write as _};
                print!("Sign these terms with {}? [y/N] ", cert.display());
                let _ = std::io::stdout().flush();
                let mut answer = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut answer)
                    .map_err(|e| Error::io("stdin", e))?;
                if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
                    return Err(Error::Usage(format!(
                        "not signed: {} is unchanged (answer y to sign, or pass --yes)",
                        file.display()
                    )));
                }
            }
            let side = client::sign_agreement(&mut sa, &Signer::load(&cert, &key)?, &trust)?;
            std::fs::write(&file, sa.encode_to_vec()).map_err(|e| Error::io(&file, e))?;
            println!("signed {} as {side}", file.display());
            Ok(())
        }
        AgreementCmd::Declare {
            file,
            text,
            cert,
            key,
        } => {
            let mut sa = read_agreement(&file)?;
            client::declare(&mut sa, &Signer::load(&cert, &key)?, &text)?;
            std::fs::write(&file, sa.encode_to_vec()).map_err(|e| Error::io(&file, e))?;
            println!("declaration attached to {}", file.display());
            Ok(())
        }
        AgreementCmd::Import { config, file } => {
            let node = Node::open(&load_existing(&config)?)?;
            let id = node.import_agreement(&read_agreement(&file)?)?;
            println!("imported {id}");
            Ok(())
        }
        AgreementCmd::Submit { config, file } => {
            let cfg = NodeConfig::load(&config)?;
            let b = cfg.broker.clone().ok_or(Error::NoBroker)?;
            let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
            let me = TlsIdentity::load(&cfg.tls.cert, &cfg.tls.key)?;
            let target = Target {
                addr: b.addr,
                server_name: b.server_name,
            };
            let mut c =
                client::broker_client(&target, &trust, &me, Duration::from_millis(b.timeout_ms))?;
            let id = client::submit_agreement(&mut c, &read_agreement(&file)?).await?;
            println!("registered {id}");
            Ok(())
        }
        AgreementCmd::Prove { config, id, out } => {
            let node = std::sync::Arc::new(Node::open(&load_existing(&config)?)?);
            let (proof, proven) = node.registration_proof(id.trim()).await?;
            let text = serde_json::to_string_pretty(&proof)
                .map_err(|e| Error::Usage(format!("registration proof: {e}")))?;
            match &out {
                Some(p) => {
                    std::fs::write(p, text + "\n").map_err(|e| Error::io(p, e))?;
                    println!("{}; written to {}", proven.verdict(), p.display());
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        AgreementCmd::VerifyProof { config, file } => {
            let cfg = load_existing(&config)?;
            let trust = TrustStore::load(&cfg.tls.root, &cfg.tls.crls)?;
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            let name = file.display().to_string();
            let proof: alpr_proto::registration::RegistrationProof = serde_json::from_str(&text)
                .map_err(|e| Error::Usage(format!("{name}: not a registration proof: {e}")))?;
            let now = alpr_pki::now_unix();
            let proven = alpr_proto::registration::verify(&trust, &proof, now)
                .map_err(|e| Error::Usage(format!("{name}: the proof does not verify: {e}")))?;
            if cfg.registry.require_cosignature {
                // This node trusts only witnessed heads; so does its check of a proof (a
                // head the broker alone signed could be a view shown to this node only).
                let me = trust.verify(Signer::load(&cfg.tls.cert, &cfg.tls.key)?.chain(), now)?;
                let state = me
                    .agency
                    .map(|a| a.jurisdiction.as_str().to_owned())
                    .unwrap_or_default();
                if !proven.head.cosigned_by(&state) {
                    return Err(Error::Usage(format!(
                        "{name}: the proof's registry head is not cosigned by a regulator of {state}, and this node trusts only cosigned heads ([registry] require_cosignature)"
                    )));
                }
            }
            println!("{}", proven.verdict());
            Ok(())
        }
        AgreementCmd::List { config } => {
            let cfg = load_existing(&config)?;
            let conn = cfg.open_db()?;
            for a in store::agreements(&conn)? {
                println!(
                    "{} {} -> {} status={} purposes={} look-back={}d valid {} .. {}",
                    a.id,
                    a.terms.provider_ori,
                    a.terms.requester_ori,
                    a.status.as_str(),
                    a.terms.purposes.join(","),
                    a.terms.max_lookback_days,
                    fmt_time(a.terms.valid_from),
                    fmt_time(a.terms.valid_until)
                );
            }
            Ok(())
        }
    }
}

/// Human-readable lines for a routed query's results, verifying each signed reply again,
/// and how many targets answered (verified).
pub fn describe_results(
    trust: &TrustStore,
    query: &alpr_proto::pb::Query,
    results: &[alpr_proto::pb::TargetResult],
) -> (Vec<String>, usize) {
    let now = alpr_pki::now_unix();
    let mut out = Vec::new();
    let mut answered = 0;
    let state = if query.plate_state == alpr_proto::input::ANY_STATE {
        "any state".to_owned()
    } else {
        query.plate_state.clone()
    };
    out.push(match &query.hotlist {
        Some(list) if list.kind == alpr_proto::hotlist::KIND_WITHDRAW => format!(
            "withdrawal of hot list {:?} sent as {}",
            list.name,
            hex::encode(&query.query_id)
        ),
        Some(list) => format!(
            "hot list {:?} shared as {} ({} entr{})",
            list.name,
            hex::encode(&query.query_id),
            list.entries.len(),
            if list.entries.len() == 1 { "y" } else { "ies" }
        ),
        None => format!(
            "query {} for {} ({state})",
            hex::encode(&query.query_id),
            query.plate
        ),
    });
    for r in results {
        let reason = alpr_proto::RefusalReason::try_from(r.reason)
            .map(|x| x.as_str_name())
            .unwrap_or("?");
        match (
            TargetStatus::try_from(r.status),
            client::verify_reply(trust, r, query, now),
        ) {
            (_, Err(e)) => out.push(format!("{}: BAD_REPLY ({e})", r.ori)),
            (Ok(TargetStatus::Answered), Ok(Some(Reply::Answer { signer, .. })))
                if query.hotlist.is_some() =>
            {
                answered += 1;
                let withdrawn = query
                    .hotlist
                    .as_ref()
                    .is_some_and(|h| h.kind == alpr_proto::hotlist::KIND_WITHDRAW);
                out.push(format!(
                    "{}: {}, acknowledged and signed by {}",
                    r.ori,
                    if withdrawn {
                        "WITHDRAWN (stops watching for the list now)"
                    } else {
                        "KEEPS THE LIST"
                    },
                    signer.describe()
                ));
            }
            (Ok(TargetStatus::Answered), Ok(Some(Reply::Answer { signer, answer }))) => {
                answered += 1;
                out.push(format!(
                    "{}: ANSWERED, {} read(s), verified, signed by {} (not for re-dissemination)",
                    r.ori,
                    answer.reads.len(),
                    signer.describe()
                ));
                for read in answer.reads {
                    out.push(format!(
                        "    {} ({}) at {} camera {} ({:.5}, {:.5})",
                        read.plate,
                        if read.plate_state.is_empty() {
                            "state unknown"
                        } else {
                            &read.plate_state
                        },
                        fmt_time(read.captured_at),
                        read.camera_id,
                        read.latitude,
                        read.longitude
                    ));
                }
            }
            (Ok(TargetStatus::Answered), Ok(_)) => out.push(format!(
                "{}: BAD_REPLY (reported as answered without a signed answer)",
                r.ori
            )),
            (Ok(TargetStatus::Refused), _) => out.push(format!(
                "{}: REFUSED {reason} by {}: {}",
                r.ori, r.decided_by, r.detail
            )),
            (Ok(TargetStatus::BadReply), _) => {
                out.push(format!("{}: BAD_REPLY: {}", r.ori, r.detail))
            }
            _ => out.push(format!("{}: UNAVAILABLE: {}", r.ori, r.detail)),
        }
    }
    (out, answered)
}
