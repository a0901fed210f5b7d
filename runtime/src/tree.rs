//! An RFC 6962 Merkle tree kept beside the log whose entries it covers (a node's audit log,
//! the broker's routing log), in the same SQLite database.
//!
//! The leaves are not stored again: they are derived from the log's own rows by a
//! [`LeafSource`] (leaf `i` is row `i + 1`). What the table keeps is every perfect subtree
//! of [`STORED_LEVEL`] or more levels completed so far, by `(level, idx)`: level `l` index
//! `i` is the subtree over leaves `[i << l, (i + 1) << l)`. A smaller subtree is recomputed
//! from at most `2^STORED_LEVEL` leaves when a root or a proof needs it. So appending costs
//! one row of the table per `2^STORED_LEVEL` entries (plus one per level above, ever more
//! rarely), and a root or a proof reads O(log² n) rows. The table is derived data: whoever
//! verifies a log recomputes the tree from the entries ([`merkle::Frontier`]) and compares
//! it with signed heads.

use alpr_proto::merkle::{self, Hash};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;

/// Subtrees of this many levels (`2^STORED_LEVEL` leaves) and more are stored; smaller ones
/// are recomputed from the leaves.
pub const STORED_LEVEL: u32 = 4;

/// Where a tree's leaves come from: the log's rows.
pub trait LeafSource {
    /// The leaf hashes of leaves `[start, end)` (rows `start + 1 ..= end`), in order. Fewer
    /// than asked for means rows are missing: the tree reports it.
    fn leaves(&self, conn: &Connection, start: u64, end: u64) -> Result<Vec<Hash>, Error>;
}

/// A tree stored in one table, its leaves from `S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredTree<S> {
    table: &'static str,
    source: S,
}

impl<S: LeafSource> StoredTree<S> {
    /// The tree kept in `table` (a fixed name: it is put into SQL) over `source`'s leaves.
    pub const fn new(table: &'static str, source: S) -> Self {
        Self { table, source }
    }

    fn err(&self, detail: impl std::fmt::Display) -> Error {
        Error::Tree {
            table: self.table,
            detail: detail.to_string(),
        }
    }

    /// Create the table if it does not exist.
    pub fn create(&self, conn: &Connection) -> Result<(), Error> {
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID",
            self.table
        ))
        .map_err(|e| self.err(e))
    }

    /// How many leaves the stored subtrees cover (a multiple of `2^STORED_LEVEL`).
    pub fn covered(&self, conn: &Connection) -> Result<u64, Error> {
        conn.query_row(
            &format!(
                "SELECT coalesce(max(idx) + 1, 0) FROM {} WHERE level = ?1",
                self.table
            ),
            [STORED_LEVEL],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| (n as u64) << STORED_LEVEL)
        .map_err(|e| self.err(e))
    }

    /// The leaves `[start, end)`, all of them or an error naming the first missing.
    fn leaves(&self, conn: &Connection, start: u64, end: u64) -> Result<Vec<Hash>, Error> {
        let l = self.source.leaves(conn, start, end)?;
        if l.len() as u64 != end - start {
            return Err(self.err(format!(
                "entries {}..={end} are not all in the log ({} found)",
                start + 1,
                l.len()
            )));
        }
        Ok(l)
    }

    /// The stored row at `(level, idx)` (`level >= STORED_LEVEL`), if there is one: what a
    /// verifier compares with the subtree it recomputed from the entries.
    pub fn stored(&self, conn: &Connection, level: u32, idx: u64) -> Result<Option<Hash>, Error> {
        let b: Option<Vec<u8>> = conn
            .prepare_cached(&format!(
                "SELECT hash FROM {} WHERE level = ?1 AND idx = ?2",
                self.table
            ))
            .and_then(|mut st| {
                st.query_row(params![level, idx as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.err(e))?;
        Ok(b.and_then(|b| merkle::hash_from_slice(&b).ok()))
    }

    /// The subtree at `(level, idx)`: stored, or recomputed from its leaves.
    fn node(&self, conn: &Connection, level: u32, idx: u64) -> Result<Hash, Error> {
        if level < STORED_LEVEL {
            let leaves = self.leaves(conn, idx << level, (idx + 1) << level)?;
            return Ok(merkle::root(&leaves));
        }
        self.stored(conn, level, idx)?
            .ok_or_else(|| self.err(format!("node ({level}, {idx}) is missing")))
    }

    fn nodes<'a>(
        &'a self,
        conn: &'a Connection,
    ) -> impl FnMut(u32, u64) -> Result<Hash, Error> + 'a {
        move |level, idx| self.node(conn, level, idx)
    }

    /// Leaf `index` was just added to the log: store the subtrees it completes. Only every
    /// `2^STORED_LEVEL`-th leaf completes a stored one.
    pub fn append(&self, conn: &Connection, index: u64) -> Result<(), Error> {
        let n = index + 1;
        if !n.is_multiple_of(1 << STORED_LEVEL) {
            return Ok(());
        }
        let bottom = merkle::root(&self.leaves(conn, n - (1 << STORED_LEVEL), n)?);
        let done = merkle::completed_nodes(
            STORED_LEVEL,
            index >> STORED_LEVEL,
            bottom,
            &mut self.nodes(conn),
        )?;
        let mut st = conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO {} (level, idx, hash) VALUES (?1, ?2, ?3)",
                self.table
            ))
            .map_err(|e| self.err(e))?;
        for (level, idx, h) in done {
            st.execute(params![level, idx as i64, h.as_slice()])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Store the subtrees of rows `covered + 1 ..= size` written before the tree existed
    /// (or while it was being rebuilt). A no-op when the tree is current.
    /// Stops at a gap in the log (which the log's own verification reports).
    pub fn catch_up(&self, conn: &Connection, size: u64) -> Result<(), Error> {
        let step = 1 << STORED_LEVEL;
        let mut next = self.covered(conn)? + step;
        while next <= size {
            if (self.source.leaves(conn, next - step, next)?.len() as u64) < step {
                break;
            }
            self.append(conn, next - 1)?;
            next += step;
        }
        Ok(())
    }

    /// The root over the first `size` leaves.
    pub fn root(&self, conn: &Connection, size: u64) -> Result<Hash, Error> {
        merkle::subtree_root(0, size, &mut self.nodes(conn))
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(
        &self,
        conn: &Connection,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, Error> {
        merkle::inclusion_proof_with(size, index, &mut self.nodes(conn))
    }

    /// Consistency proof between the trees of `old` and `new` leaves.
    pub fn consistency_proof(
        &self,
        conn: &Connection,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, Error> {
        merkle::consistency_proof_with(old, new, &mut self.nodes(conn))
    }
}

impl From<merkle::ProofError> for Error {
    fn from(e: merkle::ProofError) -> Self {
        Error::Tree {
            table: "proof",
            detail: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaves from a table `log (seq, data)`.
    struct Rows;

    impl LeafSource for Rows {
        fn leaves(&self, conn: &Connection, start: u64, end: u64) -> Result<Vec<Hash>, Error> {
            let mut st = conn
                .prepare("SELECT data FROM log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq")
                .unwrap();
            let rows = st
                .query_map([start as i64, end as i64], |r| r.get::<_, Vec<u8>>(0))
                .unwrap();
            Ok(rows.map(|d| merkle::leaf_hash(&d.unwrap())).collect())
        }
    }

    #[test]
    fn a_stored_tree_gives_the_roots_and_proofs_of_its_log() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE log (seq INTEGER PRIMARY KEY, data BLOB)")
            .unwrap();
        let t = StoredTree::new("t", Rows);
        t.create(&conn).unwrap();
        let leaves: Vec<Hash> = (0u32..70)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        for i in 0..70u32 {
            conn.execute(
                "INSERT INTO log (seq, data) VALUES (?1, ?2)",
                params![i + 1, i.to_be_bytes().to_vec()],
            )
            .unwrap();
            t.append(&conn, u64::from(i)).unwrap();
        }
        assert_eq!(t.covered(&conn).unwrap(), 64);
        // Four stored rows at level 4, two at 5, one at 6: 7 rows for 70 entries.
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 7);
        for n in 1..=70u64 {
            let r = t.root(&conn, n).unwrap();
            assert_eq!(r, merkle::root(&leaves[..n as usize]), "root of {n}");
            for i in [0, n / 2, n - 1] {
                let p = t.inclusion_proof(&conn, i, n).unwrap();
                merkle::verify_inclusion(&leaves[i as usize], i, n, &p, &r).unwrap();
            }
            for m in [1, n / 3 + 1, n] {
                let c = t.consistency_proof(&conn, m, n).unwrap();
                let old = merkle::root(&leaves[..m as usize]);
                merkle::verify_consistency(m, n, &c, &old, &r).unwrap();
            }
        }
        // Rebuilt from scratch, the same tree.
        conn.execute_batch("DELETE FROM t").unwrap();
        t.catch_up(&conn, 70).unwrap();
        assert_eq!(t.root(&conn, 70).unwrap(), merkle::root(&leaves));
        // Beyond the log, or with a row gone: an error naming the table, never a panic.
        let e = t.root(&conn, 71).unwrap_err().to_string();
        assert!(
            e.contains("merkle tree t") && e.contains("not all in the log"),
            "{e}"
        );
        conn.execute("DELETE FROM log WHERE seq = 66", []).unwrap();
        assert!(t.root(&conn, 70).is_err());
    }
}
