//! Queued out-of-state requests (`approval_requests`), for states whose rules serve such
//! requesters one request at a time, each approved by a named person at the provider. A
//! request's particulars (plate, case, reason, window) are one sealed value in an
//! encrypted database.

use rusqlite::types::Value;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{Db, open_text, seal_text};
use crate::Error;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS approval_requests (
    id INTEGER PRIMARY KEY,
    requester_ori TEXT NOT NULL,
    requester_user TEXT NOT NULL,
    detail BLOB NOT NULL,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    note TEXT,
    used_at INTEGER
);
"#;

const DETAIL: &str = "approval_requests.detail";

/// How long an approval stays usable after it is given, seconds.
pub const APPROVAL_TTL_SECS: i64 = 86_400;

pub(super) fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// What was asked: the fields a later query must match to use an approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    /// Plate.
    pub plate: String,
    /// Plate state.
    pub plate_state: String,
    /// Purpose code.
    pub purpose: String,
    /// Case number.
    pub case_number: String,
    /// The reason given.
    pub reason: String,
    /// Window start.
    pub window_start: i64,
    /// Window end.
    pub window_end: i64,
}

impl Asked {
    /// Whether a query asking `other` may use an approval of this request: the same plate,
    /// state, purpose and case, and a window inside this one.
    pub fn covers(&self, other: &Asked) -> bool {
        self.plate == other.plate
            && self.plate_state == other.plate_state
            && self.purpose == other.purpose
            && self.case_number == other.case_number
            && other.window_start >= self.window_start
            && other.window_end <= self.window_end
    }
}

/// One queued request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Its number.
    pub id: i64,
    /// The requesting agency.
    pub requester_ori: String,
    /// The investigator.
    pub requester_user: String,
    /// What was asked.
    pub asked: Asked,
    /// When it was queued.
    pub requested_at: i64,
    /// `pending`, `approved`, `denied` or `used`.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<i64>,
    /// Why.
    pub note: Option<String>,
    /// When the approval was used.
    pub used_at: Option<i64>,
}

fn sealed_detail(db: &Db, who: &str, asked: &Asked) -> Result<Value, Error> {
    let json = serde_json::to_string(asked).map_err(|e| Error::corrupt("approval request", e))?;
    seal_text(db.keys.as_deref(), DETAIL, who.as_bytes(), &json)
}

fn requests(db: &Db, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Request>, Error> {
    let mut st = db.conn.prepare(&format!(
        "SELECT id, requester_ori, requester_user, detail, requested_at, status, decided_by, decided_at, note, used_at FROM approval_requests {filter} ORDER BY id"
    ))?;
    let rows = st.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Value>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<i64>>(7)?,
            r.get::<_, Option<String>>(8)?,
            r.get::<_, Option<i64>>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, ori, user, detail, requested_at, status, decided_by, decided_at, note, used_at) =
            row?;
        let who = format!("{user}@{ori}");
        let json = open_text(db.keys.as_deref(), DETAIL, who.as_bytes(), detail)?;
        let asked = serde_json::from_str(&json)
            .map_err(|e| Error::corrupt(format!("approval request {id}"), e))?;
        out.push(Request {
            id,
            requester_ori: ori,
            requester_user: user,
            asked,
            requested_at,
            status,
            decided_by,
            decided_at,
            note,
            used_at,
        });
    }
    Ok(out)
}

/// Every queued request, oldest first.
pub fn list(db: &Db) -> Result<Vec<Request>, Error> {
    requests(db, "", &[])
}

/// Queue a request from `user@ori`, unless the same one is already pending; returns its
/// number.
pub fn queue(db: &Db, ori: &str, user: &str, asked: &Asked, now: i64) -> Result<i64, Error> {
    for r in requests(
        db,
        "WHERE requester_ori = ?1 AND requester_user = ?2 AND status = 'pending'",
        &[&ori, &user],
    )? {
        if r.asked == *asked {
            return Ok(r.id);
        }
    }
    db.conn.execute(
        "INSERT INTO approval_requests (requester_ori, requester_user, detail, requested_at, status) VALUES (?1, ?2, ?3, ?4, 'pending')",
        params![ori, user, sealed_detail(db, &format!("{user}@{ori}"), asked)?, now],
    )?;
    Ok(db.conn.last_insert_rowid())
}

/// Record a decision on pending request `id`; the request as it was before.
pub fn decide(
    db: &Db,
    id: i64,
    approve: bool,
    by: &str,
    note: &str,
    now: i64,
) -> Result<Request, Error> {
    let r = requests(db, "WHERE id = ?1", &[&id])?
        .pop()
        .ok_or_else(|| Error::Usage(format!("no queued request #{id}")))?;
    if r.status != "pending" {
        return Err(Error::Usage(format!(
            "request #{id} is {} already (by {} at {})",
            r.status,
            r.decided_by.as_deref().unwrap_or("?"),
            r.decided_at.map(alpr_pki::fmt_time).unwrap_or_default()
        )));
    }
    db.conn.execute(
        "UPDATE approval_requests SET status = ?2, decided_by = ?3, decided_at = ?4, note = ?5 WHERE id = ?1 AND status = 'pending'",
        params![id, if approve { "approved" } else { "denied" }, by, now, note],
    )?;
    Ok(r)
}

/// An unused approval that covers `asked` from `user@ori`, given within
/// [`APPROVAL_TTL_SECS`]: its number.
pub fn approved_for(
    db: &Db,
    ori: &str,
    user: &str,
    asked: &Asked,
    now: i64,
) -> Result<Option<i64>, Error> {
    Ok(requests(
        db,
        "WHERE requester_ori = ?1 AND requester_user = ?2 AND status = 'approved' AND decided_at >= ?3",
        &[&ori, &user, &(now - APPROVAL_TTL_SECS)],
    )?
    .into_iter()
    .find(|r| r.asked.covers(asked))
    .map(|r| r.id))
}

/// Use approval `id` (once): false if it was used meanwhile.
pub fn mark_used(db: &Db, id: i64, now: i64) -> Result<bool, Error> {
    Ok(db.conn.execute(
        "UPDATE approval_requests SET status = 'used', used_at = ?2 WHERE id = ?1 AND status = 'approved'",
        params![id, now],
    )? == 1)
}

/// The approvals given, as the state digest sees them (approved and used alike: using an
/// approval is no change of state; adding one by hand is).
pub fn state_lines(db: &Db) -> Result<Vec<String>, Error> {
    let mut st = db.conn.prepare(
        "SELECT id, requester_ori, requester_user, decided_by, decided_at, status FROM approval_requests WHERE status IN ('approved', 'used', 'denied') ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        let status: String = r.get(5)?;
        Ok(format!(
            "approval\t{}\t{}\t{}\t{:?}\t{:?}\t{}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<i64>>(4)?,
            if status == "denied" {
                "denied"
            } else {
                "approved"
            }
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
