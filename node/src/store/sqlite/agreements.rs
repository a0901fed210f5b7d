//! This node's copies of the agreements it is party to.

use alpr_proto::agreement::{AgreementStatus, AgreementView};
use alpr_proto::pb;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::Db;
use crate::Error;

/// Store a verified agreement (idempotent).
pub fn put_agreement(
    db: &Db,
    id: &str,
    sa: &pb::SignedAgreement,
    terms: &pb::Agreement,
    now: i64,
) -> Result<bool, Error> {
    let n = db.conn.execute(
        "INSERT OR IGNORE INTO agreements (id, provider_ori, requester_ori, status, signed, imported_at) VALUES (?1, ?2, ?3, 'active', ?4, ?5)",
        params![id, terms.provider_ori, terms.requester_ori, sa.encode_to_vec(), now],
    )?;
    Ok(n == 1)
}

/// Mark an agreement as seen registered in the verified registry log, keeping the signed
/// copy that was logged (a copy imported before may carry other signatures of the same
/// terms): the registration entry is rebuilt from it for proofs.
pub fn set_registered(
    db: &Db,
    id: &str,
    sa: &pb::SignedAgreement,
    index: u64,
    at: i64,
) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE agreements SET registered_index = ?2, registered_at = ?3, signed = ?4 WHERE id = ?1",
        params![id, index as i64, at, sa.encode_to_vec()],
    )?;
    Ok(())
}

/// Where this node verified an agreement's registration: the signed agreement, its entry's
/// index in the registry log and when the broker logged it (`None`: not stored, or not seen
/// registered).
pub fn registration(db: &Db, id: &str) -> Result<Option<(pb::SignedAgreement, u64, i64)>, Error> {
    let row: Option<(Vec<u8>, Option<i64>, Option<i64>)> = db
        .conn
        .query_row(
            "SELECT signed, registered_index, registered_at FROM agreements WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((blob, Some(index), Some(at))) = row else {
        return Ok(None);
    };
    let sa = pb::SignedAgreement::decode(blob.as_slice())
        .map_err(|e| Error::corrupt(format!("agreement {id}"), e))?;
    Ok(Some((sa, index as u64, at)))
}

/// Agreements in effect at this node: only those whose registration the node itself
/// verified in the registry log.
pub fn registered_agreements(db: &Db) -> Result<Vec<AgreementView>, Error> {
    agreements_where(&db.conn, "WHERE registered_index IS NOT NULL")
}

/// Every stored agreement (registered or not), with terms decoded from the signed bytes.
pub fn agreements(db: &Db) -> Result<Vec<AgreementView>, Error> {
    agreements_where(&db.conn, "")
}

/// The signed form and registration time of one stored agreement.
pub fn signed_agreement(
    db: &Db,
    id: &str,
) -> Result<Option<(pb::SignedAgreement, Option<i64>)>, Error> {
    let row: Option<(Vec<u8>, Option<i64>)> = db
        .conn
        .query_row(
            "SELECT signed, registered_at FROM agreements WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(b, at)| {
        pb::SignedAgreement::decode(b.as_slice())
            .map(|sa| (sa, at))
            .map_err(|e| Error::corrupt(format!("agreement {id}"), e))
    })
    .transpose()
}

fn agreements_where(conn: &Connection, filter: &str) -> Result<Vec<AgreementView>, Error> {
    let mut st = conn.prepare(&format!(
        "SELECT id, status, signed FROM agreements {filter} ORDER BY imported_at"
    ))?;
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
            .map_err(|e| Error::corrupt(format!("agreement {id}"), e))?;
        let payload = sa
            .provider
            .as_ref()
            .map(|s| s.payload.as_slice())
            .unwrap_or_default();
        let terms = pb::Agreement::decode(payload)
            .map_err(|e| Error::corrupt(format!("agreement {id}"), e))?;
        // An unknown status is treated as revoked: fail closed.
        let status = AgreementStatus::parse(&status).unwrap_or(AgreementStatus::Revoked);
        out.push(AgreementView { id, terms, status });
    }
    Ok(out)
}

/// Look up one agreement's status.
pub fn agreement_status(db: &Db, id: &str) -> Result<Option<String>, Error> {
    Ok(db
        .conn
        .query_row("SELECT status FROM agreements WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Set an agreement's status (after a verified lifecycle action).
pub fn set_agreement_status(db: &Db, id: &str, status: AgreementStatus) -> Result<(), Error> {
    db.conn.execute(
        "UPDATE agreements SET status = ?2 WHERE id = ?1",
        params![id, status.as_str()],
    )?;
    Ok(())
}
