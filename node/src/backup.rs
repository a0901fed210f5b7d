//! Online backups: `alpr-node backup`, and what a restore needs.
//!
//! Each database is copied with SQLite's `VACUUM INTO`, which reads one consistent
//! snapshot while the daemon keeps serving. The copy of the audit log is then verified
//! (hash chain and signed checkpoints) and the copy of the node database checked with
//! `PRAGMA integrity_check`, and a manifest records what was copied and its SHA-256.
//!
//! An encrypted node's backup also holds a copy of its keyring (the data key wrapped by the
//! KEK; the KEK itself is never in a backup): without the KEK a backup reveals nothing.
//!
//! Restore: stop the daemon, copy `node.db` and `audit.db` (and `keyring.json`, to the
//! configured keyring path) from the backup directory into `data_dir` (removing any `-wal`
//! and `-shm` files there), start it. The audit log then
//! ends where the backup did: entries written after the backup are not in it, and a
//! regulator comparing anchored checkpoints will see that (see docs/DEPLOYMENT.md).

use std::path::{Path, PathBuf};

use crate::audit::{Decision, Event};
use crate::node::Node;
use crate::{Error, audit, store};

/// What a backup wrote.
#[derive(Clone, Debug)]
pub struct Backup {
    /// The backup directory.
    pub dir: PathBuf,
    /// Audit entries in the copy (all verified).
    pub audit_entries: u64,
    /// Signed checkpoints in the copy (all verified).
    pub checkpoints: u64,
    /// Reads in the copy of the node database.
    pub reads: i64,
    /// The manifest file.
    pub manifest: PathBuf,
}

impl Node {
    /// Back up both databases into `out` (a new directory), verify the copies, and write
    /// a manifest. Logged. Runs while the node serves.
    pub fn backup(&self, out: &Path) -> Result<Backup, Error> {
        if out.exists() {
            return Err(Error::Usage(format!(
                "{} exists; a backup goes into a new directory",
                out.display()
            )));
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let node_copy = out.join("node.db");
        let audit_copy = out.join("audit.db");
        store::maintenance::copy_node_db(&self.db(), &node_copy)?;
        store::maintenance::copy_audit_db(&self.audit_db()?, &audit_copy)?;
        // Verify what was written, not what was meant.
        let ok = store::maintenance::integrity_check(&node_copy)?;
        if ok != "ok" {
            return Err(Error::Corrupt {
                what: format!("backup copy {}", node_copy.display()),
                detail: format!("fails its integrity check: {ok}"),
            });
        }
        let pg_reads = self.db().postgres_reads().cloned();
        let reads = match &pg_reads {
            Some(pg) => pg.count()?,
            None => store::maintenance::count_reads_in(&node_copy)?,
        };
        let report = store::audit::verify(
            &store::AuditDb::open_with(&audit_copy, self.data_keys().cloned())?,
            Some((&self.trust(), self.ori())),
        )?;
        let reads_line = match &pg_reads {
            Some(pg) => format!(
                "0 reads; the {reads} reads are in {}, which this backup does not copy: back it up with PostgreSQL's own tools (pg_basebackup, a synchronous standby)",
                pg.label()
            ),
            None => format!("{reads} reads"),
        };
        let mut manifest = format!(
            "alpr-node backup of {} at {}\nnode.db sha256 {} ({reads_line})\naudit.db sha256 {} ({} entries, {} signed checkpoints, verified)\n",
            self.ori(),
            alpr_pki::fmt_time(alpr_pki::now_unix()),
            sha256_file(&node_copy)?,
            sha256_file(&audit_copy)?,
            report.entries,
            report.checkpoints
        );
        if let Some(keys) = self.data_keys() {
            let from = self.cfg.keyring_path();
            let to = out.join("keyring.json");
            std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
            manifest.push_str(&format!(
                "keyring.json sha256 {} (data key {}, wrapped by the KEK, which is not in this backup: keep them apart)\n",
                sha256_file(&to)?,
                keys.key_id()
            ));
            manifest.push_str("restore: stop the daemon; copy node.db and audit.db into data_dir and keyring.json to the configured keyring path (remove any -wal/-shm files there); start it with the same KEK\n");
        } else {
            manifest.push_str("restore: stop the daemon; copy node.db and audit.db into data_dir (remove any -wal/-shm files there); start it\n");
        }
        let manifest_path = out.join("MANIFEST.txt");
        std::fs::write(&manifest_path, &manifest).map_err(|e| Error::io(&manifest_path, e))?;
        self.audit(&[audit::AuditEntry {
            count: Some(report.entries),
            detail: Some(format!(
                "backup to {}: {reads} reads, {} audit entries verified",
                out.display(),
                report.entries
            )),
            ..audit::AuditEntry::new(alpr_pki::now_unix(), Event::Backup, Decision::Ok)
        }])?;
        Ok(Backup {
            dir: out.to_owned(),
            audit_entries: report.entries,
            checkpoints: report.checkpoints,
            reads,
            manifest: manifest_path,
        })
    }
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &bytes,
    )))
}
