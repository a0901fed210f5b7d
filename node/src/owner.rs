//! A registered owner's request (issue 16, item 5): where the state's rules grant the right
//! (`owner_access`), or the agency chose to answer such requests (`[policy]
//! owner_requests`), an operator who verified the requester's ownership answers one
//! plate's request: every read held of it (within retention, and under evidence holds) and
//! every search of it by another agency, with when, by which agency, for which purpose and
//! what it returned. Each answer is an `owner_request` audit entry naming the operator and
//! the verification, counted in the transparency report. Investigative detail (case
//! numbers, reasons, investigators) is not disclosed.

use serde::Serialize;

use crate::audit::{AuditEntry, Decision, Event};
use crate::{Error, Node, store};

/// One search of the plate by another agency, as disclosed to its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DisclosedSearch {
    /// When, Unix seconds.
    pub at: i64,
    /// The requesting agency.
    pub requester_ori: String,
    /// Its name.
    pub requester_agency: String,
    /// The purpose code and its name.
    pub purpose: String,
    /// `answered` or `refused`.
    pub decision: String,
    /// Reads returned.
    pub reads: u64,
}

/// One read of the vehicle, as disclosed to its owner.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DisclosedRead {
    /// When it was captured, Unix seconds.
    pub captured_at: i64,
    /// The camera.
    pub camera_id: String,
    /// Where.
    pub latitude: f64,
    /// Where.
    pub longitude: f64,
}

/// The answer to an owner's request.
#[derive(Clone, Debug, Serialize)]
pub struct OwnerAnswer {
    /// The agency answering.
    pub ori: String,
    /// The plate and its state.
    pub plate: String,
    /// Its issuing state.
    pub plate_state: String,
    /// When answered.
    pub answered_at: i64,
    /// Who verified the requester's ownership, and how.
    pub verified_by: String,
    /// The verification.
    pub verification: String,
    /// Every read held of the plate, oldest first.
    pub reads: Vec<DisclosedRead>,
    /// Every search of the plate by another agency in the audit log, oldest first.
    pub searches: Vec<DisclosedSearch>,
}

impl Node {
    /// Answer a registered owner's request for `plate` of `plate_state`, verified by
    /// `verified_by` as `verification` says; logged.
    pub fn owner_request(
        &self,
        plate: &str,
        plate_state: &str,
        verified_by: &str,
        verification: &str,
    ) -> Result<OwnerAnswer, Error> {
        let now = alpr_pki::now_unix();
        if !self.rules.owner_access && !self.cfg.policy.owner_requests {
            return Err(Error::Usage(format!(
                "{} rules ({}) grant owners no right to their vehicle's data, and this agency has not chosen to answer such requests ([policy] owner_requests)",
                self.rules.jurisdiction, self.rules.version
            )));
        }
        if verified_by.trim().is_empty() || verification.trim().len() < 10 {
            return Err(Error::Usage(
                "say who verified the requester owns the vehicle and how (--verified-by, --verification of 10+ characters)".into(),
            ));
        }
        let plate = alpr_proto::input::normalize_plate(plate)?;
        let state = alpr_proto::input::normalize_query_state(plate_state)?;
        if state == alpr_proto::input::ANY_STATE {
            return Err(Error::Usage(
                "an owner's request names the plate's issuing state (the same characters in another state are another vehicle)".into(),
            ));
        }
        let key = store::PlateKey {
            plate: &plate,
            state: &state,
        };
        let mut reads = Vec::new();
        {
            let db = self.db();
            // Day by day: an owner gets every read, not a search's first thousand.
            for (day, _) in store::partitions(&db)? {
                reads.extend(store::lookup(
                    &db,
                    key,
                    day * 86_400,
                    day * 86_400 + 86_399,
                )?);
            }
            for hold in store::holds::list(&db)? {
                if hold.plate == plate {
                    reads.extend(
                        store::held_reads(&db, hold.id)?
                            .into_iter()
                            .filter(|r| r.plate_state == state),
                    );
                }
            }
        }
        reads.sort_by_key(|r| r.captured_at);
        reads.dedup();
        let searches = store::audit::list(&self.audit_db()?, Some(Event::InboundQuery))?
            .into_iter()
            .filter(|e| {
                e.entry.plate.as_deref() == Some(plate.as_str())
                    && matches!(
                        e.entry.plate_state.as_deref(),
                        Some(s) if s == state || s == alpr_proto::input::ANY_STATE
                    )
            })
            .map(|e| {
                let code = e.entry.purpose.clone().unwrap_or_default();
                let name = alpr_proto::purpose::lookup(&code)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                DisclosedSearch {
                    at: e.entry.at,
                    requester_ori: e.entry.requester_ori.clone().unwrap_or_default(),
                    requester_agency: e.entry.requester_agency.clone().unwrap_or_default(),
                    purpose: format!("{code} {name}"),
                    decision: e.entry.decision.as_str().to_owned(),
                    reads: e.entry.count.unwrap_or(0),
                }
            })
            .collect::<Vec<_>>();
        self.audit(&[AuditEntry {
            plate: Some(plate.clone()),
            plate_state: Some(state.clone()),
            requester_user: Some(verified_by.trim().to_owned()),
            count: Some(reads.len() as u64),
            detail: Some(format!(
                "owner's request answered: {} reads and {} searches disclosed; ownership verified by {}: {}",
                reads.len(),
                searches.len(),
                verified_by.trim(),
                verification.trim()
            )),
            ..AuditEntry::new(now, Event::OwnerRequest, Decision::Ok)
        }])?;
        Ok(OwnerAnswer {
            ori: self.ori().to_owned(),
            plate,
            plate_state: state,
            answered_at: now,
            verified_by: verified_by.trim().to_owned(),
            verification: verification.trim().to_owned(),
            reads: reads
                .into_iter()
                .map(|r| DisclosedRead {
                    captured_at: r.captured_at,
                    camera_id: r.camera_id,
                    latitude: r.latitude,
                    longitude: r.longitude,
                })
                .collect(),
            searches,
        })
    }
}
