//! Leaving the federation (seed 004): the agency gets all of its data back, and then the
//! node's copy is destroyed — `alpr-node decommission`, and `alpr-node verify-export` for
//! whoever receives the export.
//!
//! In order, with the daemon stopped:
//!
//! 1. every agreement this agency is a party to and that is still active is revoked in the
//!    registry by the agency's admin (each an `AgreementAction` the broker logs and
//!    appends), and the registry is synced;
//! 2. everything the agency owns is exported into a new directory, in documented formats:
//!    `reads.csv` (the ingest format), `held_reads.csv`, `holds.csv`, `hotlists.csv`,
//!    `accounts.csv`, `agreements.jsonl` (each agreement's signed bytes), `node.toml` (the
//!    policy and configuration);
//! 3. the data key is destroyed (its keyring overwritten and removed): from here on
//!    `node.db` and `audit.db` reveal nothing, with or without the KEK. A plain node's
//!    databases are overwritten and removed instead, after step 5;
//! 4. a signed *certificate of destruction* is logged (a `data_key` entry naming the data
//!    key, when, by whom, and the export manifest's digest);
//! 5. the final head of the audit log is anchored at the broker, and the whole log
//!    (`audit.log`, the `--format log` export) is written with that anchor
//!    (`audit-anchor.json`), so the log can be checked against the broker's record;
//! 6. `MANIFEST.json` lists every file with its SHA-256, and `MANIFEST.signed` is the
//!    manifest signed by the node certificate.
//!
//! `verify-export` checks, on any machine with the federation's root certificate: the
//! manifest's signature (a node certificate of the agency), every file's digest, the audit
//! log's chain and tree, the anchor's signatures and that the log is the one anchored.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alpr_pki::{Role, Signer, TrustStore};
use alpr_proto::agreement::AgreementStatus;
use alpr_proto::auditlog::{self, LogChecker, LoggedEntry};
use alpr_proto::envelope;
use alpr_proto::pb::{AgreementAction, AuditAnchor, Signed};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEntry, Decision, Event};
use crate::{Error, Node, store};

/// The payload type of a signed export manifest.
pub const MANIFEST_TYPE: &str = "alpr.v1.DecommissionManifest";
/// The manifest's format tag.
pub const FORMAT: &str = "alpr-decommission-v1";

/// One exported file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportedFile {
    /// File name in the export directory.
    pub name: String,
    /// SHA-256, hexadecimal.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Records in it (rows, lines or entries).
    pub records: u64,
}

/// `MANIFEST.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The agency.
    pub ori: String,
    /// When the export was made.
    pub exported_at: i64,
    /// Who ran it (the admin certificate's user).
    pub by: String,
    /// The agreements revoked in the registry on the way out.
    pub revoked_agreements: Vec<String>,
    /// The destroyed data key's id (`None` for a plain node, whose files were removed).
    pub data_key_destroyed: Option<String>,
    /// Audit entries exported, all of them.
    pub audit_entries: u64,
    /// The size of the final anchored audit head.
    pub anchored_size: u64,
    /// Every file of the export.
    pub files: Vec<ExportedFile>,
}

/// What a decommission did.
#[derive(Clone, Debug)]
pub struct Decommissioned {
    /// The export directory.
    pub dir: PathBuf,
    /// The manifest written.
    pub manifest: Manifest,
}

/// The final anchor, as `audit-anchor.json`.
#[derive(Debug, Serialize, Deserialize)]
struct AnchorFile {
    /// The anchored size.
    size: u64,
    /// The `AuditAnchor` protobuf, hexadecimal.
    anchor: String,
}

fn write_file(dir: &Path, name: &str, text: &str, records: u64) -> Result<ExportedFile, Error> {
    crate::export::write_new(&dir.join(name), text.as_bytes(), "an exported file")?;
    Ok(ExportedFile {
        name: name.into(),
        sha256: sha256_hex(text.as_bytes()),
        bytes: text.len() as u64,
        records,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn csv_text(
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<(String, u64), Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)
        .map_err(|e| Error::Usage(format!("csv: {e}")))?;
    let mut n = 0;
    for r in rows {
        w.write_record(&r)
            .map_err(|e| Error::Usage(format!("csv: {e}")))?;
        n += 1;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Usage(format!("csv: {e}")))?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), n))
}

fn read_row(r: &alpr_proto::pb::Read) -> Vec<String> {
    vec![
        r.plate.clone(),
        alpr_pki::fmt_time(r.captured_at),
        r.camera_id.clone(),
        format!("{}", r.latitude),
        format!("{}", r.longitude),
        r.plate_state.clone(),
    ]
}

const READ_HEADER: [&str; 6] = [
    "plate",
    "captured_at",
    "camera_id",
    "latitude",
    "longitude",
    "plate_state",
];

/// Overwrite a file with zeros, flush it, and remove it (a missing file is fine).
fn shred(path: &Path) -> Result<(), Error> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = meta.len();
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(|e| Error::io(path, e))?;
        left -= n as u64;
    }
    f.sync_all().map_err(|e| Error::io(path, e))?;
    drop(f);
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))
}

impl Node {
    /// Leave the federation: revoke, export into `out` (a new directory), destroy the data
    /// key, log the certificate of destruction, anchor the final log. `admin` signs the
    /// revocations and must be an admin of this agency. Run with the daemon stopped.
    pub async fn decommission(
        self: &Arc<Self>,
        out: &Path,
        admin: &Signer,
    ) -> Result<Decommissioned, Error> {
        let now = alpr_pki::now_unix();
        let id = self.trust().verify(admin.chain(), now)?;
        let by = id.user.clone().unwrap_or_default();
        if id.role != Role::Admin || id.agency.as_ref().map(|a| a.ori.as_str()) != Some(self.ori())
        {
            return Err(Error::NotPermitted(format!(
                "decommission needs an admin of {}; the certificate given is {} of {}",
                self.ori(),
                id.role,
                id.agency
                    .as_ref()
                    .map(|a| a.ori.as_str())
                    .unwrap_or("no agency")
            )));
        }
        if out.exists() {
            return Err(Error::Usage(format!(
                "{} exists; a decommission export goes into a new directory",
                out.display()
            )));
        }
        let (mut broker, _) = self.broker.clone().ok_or(Error::NoBroker)?;

        // 1. Revoke every active agreement this agency is a party to.
        let active: Vec<String> = store::agreements(&self.db())?
            .into_iter()
            .filter(|a| a.status == AgreementStatus::Active)
            .map(|a| a.id)
            .collect();
        let mut revoked = Vec::new();
        for agreement_id in active {
            let action = AgreementAction {
                agreement_id: agreement_id.clone(),
                action: "revoke".into(),
                reason: format!("{} leaves the federation (decommission)", self.ori()),
                signed_at: now,
            };
            let signed = envelope::seal(admin, alpr_proto::registry::ACTION, &action)?;
            match broker.act_on_agreement(signed).await {
                Ok(_) => revoked.push(agreement_id),
                // An agreement the registry never took (a draft kept here) has nothing to revoke.
                Err(s) if s.message().contains("no registered agreement") => {}
                Err(s) => return Err(Error::Rpc(s)),
            }
        }
        self.sync_registry().await?;

        // 2. Export what the agency owns.
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let mut files = Vec::new();
        {
            let db = self.db();
            let mut reads = Vec::new();
            for (day, _) in store::partitions(&db)? {
                let mut day_reads = store::day_reads(&db, day)?;
                day_reads.sort_by_key(|r| r.captured_at);
                reads.extend(day_reads.iter().map(read_row));
            }
            let (text, n) = csv_text(&READ_HEADER, reads)?;
            files.push(write_file(out, "reads.csv", &text, n)?);
            let holds = store::holds::list(&db)?;
            let mut held = Vec::new();
            for h in &holds {
                for r in store::held_reads(&db, h.id)? {
                    let mut row = vec![h.id.to_string()];
                    row.extend(read_row(&r));
                    held.push(row);
                }
            }
            let mut header = vec!["hold_id"];
            header.extend(READ_HEADER);
            let (text, n) = csv_text(&header, held)?;
            files.push(write_file(out, "held_reads.csv", &text, n)?);
            let (text, n) = csv_text(
                &[
                    "id",
                    "case_number",
                    "plate",
                    "window_start",
                    "window_end",
                    "expires_at",
                    "approved_by",
                ],
                holds.iter().map(|h| {
                    vec![
                        h.id.to_string(),
                        h.case_number.clone(),
                        h.plate.clone(),
                        alpr_pki::fmt_time(h.window_start),
                        alpr_pki::fmt_time(h.window_end),
                        alpr_pki::fmt_time(h.expires_at),
                        h.approved_by.clone(),
                    ]
                }),
            )?;
            files.push(write_file(out, "holds.csv", &text, n)?);
            let mut hot: Vec<_> = store::holds::active_hotlist(&db, now)?
                .into_iter()
                .collect();
            hot.sort();
            let (text, n) = csv_text(
                &["list", "plate", "note"],
                hot.into_iter()
                    .map(|(plate, (list, note))| vec![list, plate, note]),
            )?;
            files.push(write_file(out, "hotlists.csv", &text, n)?);
            let (text, n) = csv_text(
                &[
                    "user",
                    "role",
                    "approved_by",
                    "approved_at",
                    "trained_at",
                    "disabled_at",
                ],
                store::accounts::list(&db)?.into_iter().map(|a| {
                    let t = |v: Option<i64>| v.map(alpr_pki::fmt_time).unwrap_or_default();
                    vec![
                        a.user,
                        a.role,
                        a.approved_by.unwrap_or_default(),
                        t(a.approved_at),
                        t(a.trained_at),
                        t(a.disabled_at),
                    ]
                }),
            )?;
            files.push(write_file(out, "accounts.csv", &text, n)?);
            let mut lines = String::new();
            let agreements = store::agreements(&db)?;
            for a in &agreements {
                let signed = store::signed_agreement(&db, &a.id)?
                    .map(|(s, _)| hex::encode(s.encode_to_vec()))
                    .unwrap_or_default();
                let line = serde_json::json!({
                    "id": a.id,
                    "status": a.status.as_str(),
                    "provider": a.terms.provider_ori,
                    "requester": a.terms.requester_ori,
                    "valid_until": alpr_pki::fmt_time(a.terms.valid_until),
                    "signed_agreement": signed,
                });
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
            files.push(write_file(
                out,
                "agreements.jsonl",
                &lines,
                agreements.len() as u64,
            )?);
        }
        let config = toml::to_string(&self.cfg).map_err(|e| Error::Usage(e.to_string()))?;
        files.push(write_file(out, "node.toml", &config, 1)?);

        // 3. Destroy the data key (an encrypted node); 4. log the certificate of destruction.
        let digest_so_far = sha256_hex(
            serde_json::to_string(&files)
                .map_err(|e| Error::Usage(e.to_string()))?
                .as_bytes(),
        );
        let data_key = self.data_keys().map(|k| k.key_id().to_owned());
        let pg_reads = self.db().postgres_reads().cloned();
        let detail = match &data_key {
            Some(id) => {
                crate::keyring::destroy(&self.cfg.keyring_path())?;
                format!(
                    "certificate of destruction: data key {id} of {} destroyed at {} by {by} (keyring {} overwritten and removed); node.db and audit.db can no longer be read by anyone; export digest {digest_so_far}; revoked {}",
                    self.ori(),
                    alpr_pki::fmt_time(now),
                    self.cfg.keyring_path().display(),
                    revoked.len()
                )
            }
            None => format!(
                "certificate of destruction: the plain databases of {} are overwritten and removed after this entry is anchored{}, by {by}; export digest {digest_so_far}; revoked {}",
                self.ori(),
                match &pg_reads {
                    Some(pg) => format!(", and every read partition in {} dropped", pg.label()),
                    None => String::new(),
                },
                revoked.len()
            ),
        };
        self.audit(&[AuditEntry {
            requester_user: Some(by.clone()),
            detail: Some(detail),
            ..AuditEntry::new(now, Event::DataKey, Decision::Ok)
        }])?;

        // 5. Anchor the final head; export the whole log with it.
        let anchored = self.anchor_audit().await?.ok_or_else(|| {
            Error::AuditUnavailable("the final audit head was not anchored".into())
        })?;
        let (text, size) = crate::export::log_text(&self.audit_db()?)?;
        files.push(write_file(out, "audit.log", &text, size)?);
        let latest = broker
            .get_audit_anchor(alpr_proto::pb::AuditAnchorRequest {
                ori: self.ori().to_owned(),
            })
            .await
            .map_err(Error::Rpc)?
            .into_inner()
            .latest
            .ok_or_else(|| Error::AuditUnavailable("the broker shows no anchor".into()))?;
        let anchor = AnchorFile {
            size: anchored.head.size,
            anchor: hex::encode(latest.encode_to_vec()),
        };
        let anchor_text =
            serde_json::to_string_pretty(&anchor).map_err(|e| Error::Usage(e.to_string()))?;
        files.push(write_file(out, "audit-anchor.json", &anchor_text, 1)?);

        // 6. The signed manifest.
        let manifest = Manifest {
            format: FORMAT.into(),
            ori: self.ori().to_owned(),
            exported_at: now,
            by,
            revoked_agreements: revoked,
            data_key_destroyed: data_key.clone(),
            audit_entries: size,
            anchored_size: anchored.head.size,
            files,
        };
        let json =
            serde_json::to_string_pretty(&manifest).map_err(|e| Error::Usage(e.to_string()))?;
        write_file(out, "MANIFEST.json", &json, 1)?;
        let signed = envelope::seal_bytes(&self.signer, MANIFEST_TYPE, json.into_bytes())?;
        let path = out.join("MANIFEST.signed");
        std::fs::write(&path, signed.encode_to_vec()).map_err(|e| Error::io(&path, e))?;
        if let Some(pg) = &pg_reads {
            pg.destroy()?;
        }
        if data_key.is_none() {
            for db in [self.cfg.db_path(), self.cfg.audit_path()] {
                for suffix in ["", "-wal", "-shm"] {
                    shred(&PathBuf::from(format!("{}{suffix}", db.display())))?;
                }
            }
        }
        Ok(Decommissioned {
            dir: out.to_owned(),
            manifest,
        })
    }
}

/// Verify a decommission export in `dir` against the federation's trust store: the signed
/// manifest, every file's digest, the audit log against its anchor. Returns the manifest
/// and a line per check.
pub fn verify_export(dir: &Path, trust: &TrustStore) -> Result<(Manifest, Vec<String>), Error> {
    let bad = |what: String| Error::Corrupt {
        what: format!("export {}", dir.display()),
        detail: what,
    };
    let read = |name: &str| -> Result<Vec<u8>, Error> {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| Error::io(&p, e))
    };
    let signed = Signed::decode(read("MANIFEST.signed")?.as_slice())
        .map_err(|e| bad(format!("MANIFEST.signed: {e}")))?;
    let (signer, payload) = envelope::open(trust, &signed, MANIFEST_TYPE, alpr_pki::now_unix())?;
    let json = read("MANIFEST.json")?;
    if payload != json.as_slice() {
        return Err(bad(
            "MANIFEST.json is not the manifest that was signed".into()
        ));
    }
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| bad(format!("MANIFEST.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "manifest format {:?}, expected {FORMAT:?}",
            manifest.format
        )));
    }
    let agency = signer.agency.as_ref().map(|a| a.ori.as_str());
    if signer.role != Role::Node || agency != Some(manifest.ori.as_str()) {
        return Err(bad(format!(
            "the manifest of {} is signed by {} of {}, not by a node of that agency",
            manifest.ori,
            signer.role,
            agency.unwrap_or("no agency")
        )));
    }
    let mut lines = vec![format!(
        "manifest signed by a node certificate of {}, exported {} by {}",
        manifest.ori,
        alpr_pki::fmt_time(manifest.exported_at),
        manifest.by
    )];
    for f in &manifest.files {
        let bytes = read(&f.name)?;
        if sha256_hex(&bytes) != f.sha256 || bytes.len() as u64 != f.bytes {
            return Err(bad(format!(
                "{} does not match its digest in the manifest",
                f.name
            )));
        }
    }
    lines.push(format!(
        "{} files match their SHA-256 digests",
        manifest.files.len()
    ));
    let anchor: AnchorFile = serde_json::from_slice(&read("audit-anchor.json")?)
        .map_err(|e| bad(format!("audit-anchor.json: {e}")))?;
    let anchor = AuditAnchor::decode(
        hex::decode(&anchor.anchor)
            .map_err(|e| bad(format!("audit-anchor.json: {e}")))?
            .as_slice(),
    )
    .map_err(|e| bad(format!("audit-anchor.json: {e}")))?;
    let verified = auditlog::verify_anchor(trust, &anchor, &manifest.ori)?;
    let mut checker = LogChecker::new();
    for (n, line) in String::from_utf8_lossy(&read("audit.log")?)
        .lines()
        .enumerate()
    {
        let e: LoggedEntry = serde_json::from_str(line)
            .map_err(|e| bad(format!("audit.log line {}: {e}", n + 1)))?;
        checker.push(&e)?;
        if checker.size() == verified.head.size {
            checker.matches(&verified.head)?;
        }
    }
    checker.finish(&verified.head)?;
    if checker.size() != manifest.audit_entries || verified.head.size != manifest.anchored_size {
        return Err(bad(format!(
            "the manifest lists {} audit entries anchored at {}, but audit.log holds {} and its anchor covers {}",
            manifest.audit_entries,
            manifest.anchored_size,
            checker.size(),
            verified.head.size
        )));
    }
    lines.push(format!(
        "audit log: {} entries, chain and tree intact; the first {} are the ones the broker anchored (receipt verified)",
        checker.size(),
        verified.head.size
    ));
    Ok((manifest, lines))
}
