//! The routing log's hash chain and tree leaves, the same whichever database holds the
//! rows: each row's chain hash ([`row_hash`]), its RFC 6962 leaf ([`row_leaf`]), and the
//! verification of a whole log read back in order ([`ChainCheck`]).

use std::collections::BTreeMap;

use alpr_proto::merkle::{self, Frontier, Hash};

use crate::Error;
use crate::store::{ChainReport, LogEntry};

/// Hash of the (empty) predecessor of the first chained row.
pub(super) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of a row: SHA-256 of the previous row's hash, a newline and the row as
/// JSON (with its sequence number), hex.
pub(super) fn row_hash(prev: &str, e: &LogEntry) -> Result<String, Error> {
    let json = serde_json::to_string(e).map_err(|e| Error::Corrupt {
        what: "routing log row".into(),
        detail: e.to_string(),
    })?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(json.as_bytes());
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// A row's tree leaf: the leaf hash of its raw 32-byte chain hash, or, for a row from
/// before the log was chained, of the SHA-256 of its JSON.
pub(super) fn row_leaf(e: &LogEntry, hash: Option<&str>) -> Result<Hash, Error> {
    let raw = match hash {
        Some(h) => hex::decode(h)
            .ok()
            .and_then(|b| merkle::hash_from_slice(&b).ok()),
        None => hex::decode(row_hash("", e)?)
            .ok()
            .and_then(|b| merkle::hash_from_slice(&b).ok()),
    };
    raw.map(|r| merkle::leaf_hash(&r))
        .ok_or_else(|| Error::Corrupt {
            what: format!("routing log row {}", e.seq),
            detail: "its hash is not 32 bytes of hex".into(),
        })
}

fn corrupt(detail: String) -> Error {
    Error::Corrupt {
        what: "routing log".into(),
        detail,
    }
}

/// The verification of a routing log fed its rows in order: no row missing, each row's
/// previous hash its predecessor's hash, each hash recomputed over the row, every signed
/// head kept matched by the rows it covers. Errors name the first bad row.
pub(super) struct ChainCheck {
    heads: BTreeMap<u64, Vec<u8>>,
    tree: Frontier,
    prev: Option<String>,
    expected: i64,
    report: ChainReport,
}

impl ChainCheck {
    /// A check against the signed routing-log heads kept, `(size, encoded Signed)`.
    pub(super) fn new(heads: BTreeMap<u64, Vec<u8>>) -> Self {
        Self {
            heads,
            tree: Frontier::new(),
            prev: None,
            expected: 1,
            report: ChainReport {
                chained: 0,
                unchained_before: 0,
                heads: 0,
            },
        }
    }

    /// The next row, with its stored previous hash and hash.
    pub(super) fn push(
        &mut self,
        e: &LogEntry,
        row_prev: Option<String>,
        hash: Option<String>,
    ) -> Result<(), Error> {
        if e.seq != self.expected {
            return Err(corrupt(format!(
                "row {} is missing (next is {})",
                self.expected, e.seq
            )));
        }
        self.expected += 1;
        match (&hash, &self.prev) {
            (None, None) => self.report.unchained_before += 1,
            (None, Some(_)) => return Err(corrupt(format!("row {} is not chained", e.seq))),
            (Some(h), _) => {
                let want_prev = self.prev.clone().unwrap_or_else(|| {
                    if self.report.unchained_before == 0 {
                        GENESIS.to_owned()
                    } else {
                        row_prev.clone().unwrap_or_default()
                    }
                });
                if row_prev.as_deref() != Some(want_prev.as_str()) {
                    return Err(corrupt(format!("row {}: previous-hash link broken", e.seq)));
                }
                if &row_hash(&want_prev, e)? != h {
                    return Err(corrupt(format!(
                        "row {}: content does not match its hash",
                        e.seq
                    )));
                }
                self.report.chained += 1;
                self.prev = Some(h.clone());
            }
        }
        self.tree.push(row_leaf(e, hash.as_deref())?);
        self.check_head()
    }

    fn check_head(&mut self) -> Result<(), Error> {
        let size = self.tree.size();
        if let Some(b) = self.heads.get(&size) {
            let signed = <alpr_proto::pb::Signed as prost::Message>::decode(b.as_slice())
                .map_err(|e| corrupt(format!("signed head {size}: {e}")))?;
            let th = <alpr_proto::pb::RoutingTreeHead as prost::Message>::decode(
                signed.payload.as_slice(),
            )
            .map_err(|e| corrupt(format!("signed head {size}: {e}")))?;
            if th.root != self.tree.root().as_slice() {
                return Err(corrupt(format!(
                    "the rows up to {size} are not the ones the broker signed a head of (rewritten)"
                )));
            }
            self.report.heads += 1;
        }
        Ok(())
    }

    /// The end of the rows: no signed head beyond them, and the stored tree (`stored_root`
    /// of a size) the one the rows make.
    pub(super) fn finish(
        self,
        stored_root: impl FnOnce(u64) -> Result<Hash, Error>,
    ) -> Result<ChainReport, Error> {
        if let Some((&size, _)) = self.heads.iter().next_back()
            && size > self.tree.size()
        {
            return Err(corrupt(format!(
                "the broker signed a head of {size} rows but the log has {} (rows deleted)",
                self.tree.size()
            )));
        }
        if self.tree.size() > 0 && stored_root(self.tree.size()).ok() != Some(self.tree.root()) {
            return Err(corrupt(
                "the stored routing tree does not match the rows".into(),
            ));
        }
        Ok(self.report)
    }
}
