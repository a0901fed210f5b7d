//! What operators' commands read or copy whole: schema version, heads, online copies.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::Db;
use super::audit::AuditDb;
use crate::Error;

/// The schema version of an open `node.db`.
pub fn schema_version(db: &Db) -> Result<i64, Error> {
    Ok(db.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// The newest registry tree head kept: size, when it was seen, the signed head (encoded).
pub fn newest_registry_head(db: &Db) -> Result<Option<(i64, i64, Vec<u8>)>, Error> {
    Ok(db
        .conn
        .query_row(
            "SELECT size, seen_at, sth FROM registry_heads ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// The audit log's head: entries and the last hash (`(0, "")` when empty).
pub fn audit_head(log: &AuditDb) -> Result<(i64, String), Error> {
    Ok(log
        .connection()
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, String::new())))
}

/// The newest signed checkpoint: entries covered and when it was signed (`(0, 0)` if none).
pub fn newest_checkpoint(log: &AuditDb) -> Result<(i64, i64), Error> {
    Ok(log
        .connection()
        .query_row(
            "SELECT size, at FROM checkpoints ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, 0)))
}

/// Write a consistent copy of an open database to the new file `to` (SQLite's
/// `VACUUM INTO`, one snapshot, while others keep writing).
pub fn copy_into(conn: &Connection, to: &Path) -> Result<(), Error> {
    let quoted = to.to_string_lossy().replace('\'', "''");
    conn.execute_batch(&format!("VACUUM INTO '{quoted}'"))?;
    Ok(())
}

/// Copy `node.db` to `to`.
pub fn copy_node_db(db: &Db, to: &Path) -> Result<(), Error> {
    copy_into(&db.conn, to)
}

/// Copy `audit.db` to `to`.
pub fn copy_audit_db(log: &AuditDb, to: &Path) -> Result<(), Error> {
    copy_into(log.connection(), to)
}

/// SQLite's own integrity check of the database file at `path`: `"ok"`, or what is wrong.
pub fn integrity_check(path: &Path) -> Result<String, Error> {
    let conn = Connection::open(path)?;
    Ok(conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
}

/// Reads stored in the `node.db` file at `path` (a copy), opened as it is: no schema
/// changes, no journal-mode change.
pub fn count_reads_in(path: &Path) -> Result<i64, Error> {
    let conn = Connection::open(path)?;
    Ok(
        conn.query_row("SELECT COALESCE(SUM(rows), 0) FROM partitions", [], |r| {
            r.get(0)
        })?,
    )
}

/// Evidence holds and hot lists as canonical text lines, sorted: every hold (what it keeps
/// past retention, until when, approved by whom) and every hot list (its name, source,
/// topic, expiry and the SHA-256 of its entries in order). What `Node::check_state`
/// digests beside [`state_lines`] since digests carry the `v2:` prefix.
pub fn held_state_lines(db: &Db) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let keys = db.keys.as_deref();
    let mut st = db.conn.prepare(
        "SELECT id, case_number, plate, window_start, window_end, expires_at, approved_by, placed_at FROM holds ORDER BY id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let case: String = r.get(1)?;
        out.push(format!(
            "hold\t{}\t{case}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.get::<_, i64>(0)?,
            state_text(keys, super::holds::HOLD_PLATE, case.as_bytes(), r.get(2)?),
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, i64>(7)?
        ));
    }
    let lists: Vec<(i64, String)> = db
        .conn
        .prepare("SELECT id, name, source, topic, expires_at, loaded_at FROM hotlists ORDER BY id")?
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                format!(
                    "{}\t{}\t{}\t{}\t{}",
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?
                ),
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut st = db
        .conn
        .prepare("SELECT plate, note FROM hotlist_entries WHERE list_id = ?1 ORDER BY rowid")?;
    for (id, head) in lists {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut n = 0u64;
        let mut rows = st.query([id])?;
        let at = id.to_be_bytes();
        while let Some(r) = rows.next()? {
            let plate = state_text(keys, super::holds::HOT_PLATE, &at, r.get(0)?);
            let note = state_text(keys, super::holds::HOT_NOTE, &at, r.get(1)?);
            ctx.update(plate.as_bytes());
            ctx.update(b"\t");
            ctx.update(note.as_bytes());
            ctx.update(b"\n");
            n += 1;
        }
        out.push(format!(
            "hotlist\t{id}\t{head}\t{n}\t{}",
            hex::encode(ctx.finish().as_ref())
        ));
    }
    out.extend(super::approvals::state_lines(db)?);
    Ok(out)
}

/// A stored text as the state digest sees it: its text, or, when it does not open (a
/// value written around the node, in the clear or under another key), a mark of what is
/// stored, so that the digest changes rather than the check failing.
fn state_text(
    keys: Option<&crate::store::encryption::DataKeys>,
    place: &str,
    row: &[u8],
    v: rusqlite::types::Value,
) -> String {
    let raw = match &v {
        rusqlite::types::Value::Text(t) => t.as_bytes().to_vec(),
        rusqlite::types::Value::Blob(b) => b.clone(),
        other => format!("{other:?}").into_bytes(),
    };
    super::open_text(keys, place, row, v)
        .unwrap_or_else(|_| format!("unopenable:{}", hex::encode(raw)))
}

/// The node's access-deciding state as canonical text lines, sorted: every setting, every
/// refused requester, every account (without its last-activity time, which searches
/// update), every agreement's status and registration. What `Node::check_state` digests.
pub fn state_lines(db: &Db) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut st = db
        .conn
        .prepare("SELECT key, value FROM settings ORDER BY key")?;
    for r in st.query_map([], |r| {
        Ok(format!(
            "setting\t{}\t{}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?
        ))
    })? {
        out.push(r?);
    }
    let mut st = db
        .conn
        .prepare("SELECT ori, since, by, note FROM refused_requesters ORDER BY ori")?;
    for r in st.query_map([], |r| {
        Ok(format!(
            "refused\t{}\t{}\t{}\t{}",
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?
        ))
    })? {
        out.push(r?);
    }
    let mut st = db.conn.prepare(
        "SELECT user, role, added_by, added_at, approved_by, approved_at, trained_at, disabled_at, disabled_reason FROM accounts ORDER BY user",
    )?;
    for r in st.query_map([], |r| {
        Ok(format!(
            "account\t{}\t{}\t{}\t{}\t{:?}\t{:?}\t{:?}\t{:?}\t{:?}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, Option<i64>>(6)?,
            r.get::<_, Option<i64>>(7)?,
            r.get::<_, Option<String>>(8)?
        ))
    })? {
        out.push(r?);
    }
    let mut st = db
        .conn
        .prepare("SELECT id, status, registered_index FROM agreements ORDER BY id")?;
    for r in st.query_map([], |r| {
        Ok(format!(
            "agreement\t{}\t{}\t{:?}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<i64>>(2)?
        ))
    })? {
        out.push(r?);
    }
    Ok(out)
}
