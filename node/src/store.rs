//! The node's SQLite database (WAL): reads, the audit log, agreements, replay memory.

use std::path::Path;

use alpr_proto::admission::ReplayGuard;
use alpr_proto::agreement::{AgreementStatus, AgreementView};
use alpr_proto::pb::{self, Read};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS reads (
    plate TEXT NOT NULL,
    captured_at INTEGER NOT NULL,
    camera_id TEXT NOT NULL,
    latitude REAL NOT NULL,
    longitude REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reads_plate_time ON reads (plate, captured_at);
CREATE TABLE IF NOT EXISTS agreements (
    id TEXT PRIMARY KEY,
    provider_ori TEXT NOT NULL,
    requester_ori TEXT NOT NULL,
    status TEXT NOT NULL,
    signed BLOB NOT NULL,
    imported_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_queries (
    query_id BLOB NOT NULL,
    provider TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (query_id, provider)
);
"#;

/// Open (creating if needed) the node database in WAL mode with full durability.
pub fn open(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    crate::settings::init(&conn)?;
    crate::accounts::init(&conn)?;
    Ok(conn)
}

/// Insert reads in one transaction. Reads must already be validated.
pub fn insert_reads(conn: &mut Connection, reads: &[Read]) -> Result<(), Error> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO reads (plate, captured_at, camera_id, latitude, longitude) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for r in reads {
            st.execute(params![
                r.plate,
                r.captured_at,
                r.camera_id,
                r.latitude,
                r.longitude
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Most reads returned for one plate lookup.
pub const MAX_RESULTS: i64 = 1000;

/// Reads of one plate in `[start, end]`, oldest first.
pub fn lookup(conn: &Connection, plate: &str, start: i64, end: i64) -> Result<Vec<Read>, Error> {
    let mut st = conn.prepare_cached(
        "SELECT plate, captured_at, camera_id, latitude, longitude FROM reads
         WHERE plate = ?1 AND captured_at BETWEEN ?2 AND ?3 ORDER BY captured_at LIMIT ?4",
    )?;
    let rows = st.query_map(params![plate, start, end, MAX_RESULTS], |r| {
        Ok(Read {
            plate: r.get(0)?,
            captured_at: r.get(1)?,
            camera_id: r.get(2)?,
            latitude: r.get(3)?,
            longitude: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Count stored reads.
pub fn count_reads(conn: &Connection) -> Result<i64, Error> {
    Ok(conn.query_row("SELECT COUNT(*) FROM reads", [], |r| r.get(0))?)
}

/// Store a verified agreement (idempotent).
pub fn put_agreement(
    conn: &Connection,
    id: &str,
    sa: &pb::SignedAgreement,
    terms: &pb::Agreement,
    now: i64,
) -> Result<bool, Error> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO agreements (id, provider_ori, requester_ori, status, signed, imported_at) VALUES (?1, ?2, ?3, 'active', ?4, ?5)",
        params![id, terms.provider_ori, terms.requester_ori, sa.encode_to_vec(), now],
    )?;
    Ok(n == 1)
}

/// Set an agreement's status. Only moves away from `active`; nothing revives one.
pub fn set_agreement_status(
    conn: &Connection,
    id: &str,
    status: AgreementStatus,
) -> Result<bool, Error> {
    let n = conn.execute(
        "UPDATE agreements SET status = ?2 WHERE id = ?1 AND status = 'active'",
        params![id, status.as_str()],
    )?;
    Ok(n == 1)
}

/// Every stored agreement, with terms decoded from the signed bytes.
pub fn agreements(conn: &Connection) -> Result<Vec<AgreementView>, Error> {
    let mut st = conn.prepare("SELECT id, status, signed FROM agreements ORDER BY imported_at")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, status, blob) = row?;
        let sa = pb::SignedAgreement::decode(blob.as_slice())
            .map_err(|e| Error::Audit(format!("stored agreement {id} does not decode: {e}")))?;
        let payload = sa
            .provider
            .as_ref()
            .map(|s| s.payload.as_slice())
            .unwrap_or_default();
        let terms = pb::Agreement::decode(payload)
            .map_err(|e| Error::Audit(format!("stored agreement {id}: {e}")))?;
        // An unknown status is treated as revoked: fail closed.
        let status = AgreementStatus::parse(&status).unwrap_or(AgreementStatus::Revoked);
        out.push(AgreementView { id, terms, status });
    }
    Ok(out)
}

/// Look up one agreement's status.
pub fn agreement_status(conn: &Connection, id: &str) -> Result<Option<String>, Error> {
    Ok(conn
        .query_row("SELECT status FROM agreements WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Replay memory backed by the `seen_queries` table.
pub struct DbReplay<'a>(pub &'a Connection);

impl ReplayGuard for DbReplay<'_> {
    fn first_sight(&self, query_id: &[u8], provider_ori: &str, expires_at: i64) -> bool {
        // A database error counts as "seen": fail closed.
        self.0
            .execute(
                "INSERT OR IGNORE INTO seen_queries (query_id, provider, expires_at) VALUES (?1, ?2, ?3)",
                params![query_id, provider_ori, expires_at],
            )
            .map(|n| n == 1)
            .unwrap_or(false)
    }
}

/// Forget replay entries whose queries expired over a day ago.
pub fn sweep_seen(conn: &Connection, now: i64) -> Result<usize, Error> {
    Ok(conn.execute(
        "DELETE FROM seen_queries WHERE expires_at < ?1",
        [now - 86_400],
    )?)
}
