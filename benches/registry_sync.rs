//! The registry at national size (issue 19, item 1): a node's sync, the broker's append and
//! a regulator's whole-log check with `ALPR_BENCH_EVENTS` (default 1,000,000) registry
//! events among `ALPR_BENCH_AGENCIES` (default 18,000) agencies.
//!
//! The log is built in memory the way the broker holds it (`merkle::Tree`, the subjects
//! index) from synthetic events padded to the size of a real registration leaf (measured
//! from a real federation in the same run). One agency ("me") holds
//! `ALPR_BENCH_COUNTERPARTS` (default 20) agreements. Then other agencies append `churn`
//! events (`ALPR_BENCH_CHURN`, default 1,000 / 10,000 / 100,000) and one revocation of one
//! of my agreements, and my node syncs. Two ways, in the same run:
//!
//! * **full** — what `[registry] sync = "full"` does: fetch every new leaf, hash it into
//!   the verified tree, decode it to see whether it concerns me;
//! * **subjects** — `sync = "subjects"`: one `GetSubjects` reply for my subjects (my
//!   agreements, my key, my counterparts' keys), checked with `subjects::verify_proof`,
//!   plus the consistency proof from the last head.
//!
//! Reported: bytes on the wire and the node's CPU per sync (median of `ALPR_BENCH_SYNCS`,
//! default 20), the broker's CPU to make the reply, the broker's append at this size
//! (before: the root recomputed from every leaf hash), and the regulator's whole-log check
//! (leaf hashes, root and subjects root at this size; signatures measured per event on a
//! real log and multiplied out).
//! Run: `cargo bench --bench registry_sync`.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use alpr_proto::merkle;
use alpr_proto::pb::{EntriesRequest, RegistryEvent, Signed, Subjects, TreeHeadRequest};
use alpr_proto::subjects::{self, Index, Record};
use anyhow::{Context, Result, bail};
use common::{Rng, env_list, env_or, pct};
use prost::Message;

fn ori(i: u64) -> String {
    format!("XX{i:07}")
}

/// A synthetic event of `pad` bytes or so: what the index and the tree see of it.
fn event(kind: &str, provider: &str, requester: &str, i: u64, pad: usize) -> Vec<u8> {
    let key = kind == alpr_proto::registry::SEALING_KEY_KIND;
    let padding = Signed {
        payload_type: "bench".into(),
        payload: vec![(i % 251) as u8; pad],
        ..Default::default()
    };
    RegistryEvent {
        kind: kind.into(),
        agreement_id: if key { String::new() } else { format!("a{i}") },
        action: Some(padding),
        logged_at: 1_800_000_000 + i as i64,
        provider_ori: provider.into(),
        requester_ori: if key { String::new() } else { requester.into() },
        ..Default::default()
    }
    .encode_to_vec()
}

struct Log {
    leaves: Vec<Vec<u8>>,
    tree: merkle::Tree,
    index: Index,
}

impl Log {
    fn push(&mut self, leaf: Vec<u8>) {
        let i = self.tree.size();
        self.tree.push(merkle::leaf_hash(&leaf));
        self.index.push(i, &leaf);
        self.leaves.push(leaf);
    }

    /// The broker's GetSubjects reply (as `Broker::subjects` builds it).
    fn reply(&mut self, ask: &[(String, Record)]) -> Result<Subjects> {
        let leaves = &self.leaves;
        let subjects = ask
            .iter()
            .map(|(s, held)| {
                subjects::proof(
                    &mut self.index,
                    &self.tree,
                    |i| leaves[i as usize].clone(),
                    s,
                    held.count,
                    usize::MAX,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Subjects {
            head: None,
            subjects,
        })
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn kb(b: usize) -> String {
    format!("{:.1} kB", b as f64 / 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    pct(&v, 50.0)
}

fn main() -> Result<()> {
    common::print_machine();
    let events: u64 = env_or("ALPR_BENCH_EVENTS", 1_000_000);
    let agencies: u64 = env_or("ALPR_BENCH_AGENCIES", 18_000);
    let counterparts: u64 = env_or("ALPR_BENCH_COUNTERPARTS", 20);
    let churns = env_list("ALPR_BENCH_CHURN", &[1_000, 10_000, 100_000]);
    let syncs: usize = env_or("ALPR_BENCH_SYNCS", 20);

    // A real log, for the size of a real leaf and the cost of verifying real events.
    let rt = tokio::runtime::Runtime::new()?;
    let specs = alpr_federation::demo_agencies();
    let fed = rt.block_on(alpr_federation::Federation::start(
        None,
        &specs[..3],
        |_| alpr_federation::open_policy(),
    ))?;
    for (p, r) in [(0, 1), (1, 0), (0, 2), (2, 1)] {
        let terms =
            alpr_federation::Federation::terms(specs[p].ori, specs[r].ori, &["240"], 30, 86_400);
        rt.block_on(fed.agree(terms))?;
    }
    let (real, register_len) = rt.block_on(async {
        let (mut c, _) = fed.broker_client_as(fed.pki.regulator("reg-ca"))?;
        let size = c
            .get_tree_head(TreeHeadRequest {})
            .await?
            .into_inner()
            .head
            .map(|h| alpr_proto::pb::TreeHead::decode(h.payload.as_slice()))
            .transpose()?
            .context("no head")?
            .size;
        let leaves = c
            .get_entries(EntriesRequest {
                start: 0,
                end: size,
            })
            .await?
            .into_inner()
            .leaves;
        let reg = leaves
            .iter()
            .filter(|l| RegistryEvent::decode(l.as_slice()).is_ok_and(|e| e.kind == "register"))
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        anyhow::Ok((leaves, reg))
    })?;
    if register_len == 0 {
        bail!("the real log holds no registration");
    }
    let t = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        alpr_proto::registry::replay(&fed.trust, &real)?;
    }
    let per_event = t.elapsed() / (rounds * real.len() as u32);
    drop(fed);
    let pad = register_len.saturating_sub(60);
    println!(
        "real log: {} events ({} registrations, the rest sealing keys), a registration leaf is {} bytes; verifying one event: {}",
        real.len(),
        real.iter()
            .filter(|l| RegistryEvent::decode(l.as_slice()).is_ok_and(|e| e.kind == "register"))
            .count(),
        register_len,
        us(per_event)
    );

    // The national log: my agreements first, then everyone's, in a random order.
    let me = ori(0);
    let mut rng = Rng::new(19);
    let mut log = Log {
        leaves: Vec::with_capacity(events as usize + 200_000),
        tree: merkle::Tree::new(),
        index: Index::new(),
    };
    let t = Instant::now();
    log.push(event("sealing_key", &me, "", 0, pad / 2));
    for c in 1..=counterparts {
        log.push(event("sealing_key", &ori(c), "", c, pad / 2));
        log.push(event("register", &me, &ori(c), c, pad));
    }
    let other = |i: u64, rng: &mut Rng| {
        let a = 1 + rng.below(agencies - 1);
        let b = 1 + rng.below(agencies - 1);
        match rng.below(10) {
            0..=2 => event("register", &ori(a), &ori(b), i, pad),
            3..=5 => event("suspend", &ori(a), &ori(b), i, pad),
            _ => event("sealing_key", &ori(a), "", i, pad / 2),
        }
    };
    while log.tree.size() < events {
        let i = log.tree.size();
        log.push(other(i, &mut rng));
    }
    let root = log.tree.root();
    let sroot = log.index.root();
    println!(
        "national log: {} events, {} agencies, {} subjects, {} MB of leaves; built (tree + subjects index) in {:.1} s",
        log.tree.size(),
        agencies,
        log.index.len(),
        log.leaves.iter().map(Vec::len).sum::<usize>() / 1_000_000,
        t.elapsed().as_secs_f64()
    );

    // The broker's append at this size: before, the root recomputed from every leaf hash.
    let t = Instant::now();
    let before_root = merkle::root(log.tree.leaves());
    let before = t.elapsed();
    assert_eq!(before_root, root);
    let mut appends = Vec::new();
    for k in 0..200 {
        let leaf = other(events + k, &mut rng);
        let t = Instant::now();
        log.tree.push(merkle::leaf_hash(&leaf));
        let undo = log.index.push(events + k, &leaf);
        let _ = (log.tree.root(), log.index.root());
        appends.push(t.elapsed());
        log.tree.pop();
        log.index.undo(undo);
    }
    appends.sort();
    let now_p50 = pct(&appends, 50.0);
    println!(
        "broker append at {} events: before (root from every leaf hash) {:.1} ms; now (tree levels + subjects path) p50 {} p99 {} ({:.0}x)",
        events,
        before.as_secs_f64() * 1e3,
        us(now_p50),
        us(pct(&appends, 99.0)),
        before.as_secs_f64() / now_p50.as_secs_f64().max(1e-9)
    );

    // Regulator: the whole log's hashes, root and subjects root at this size.
    let t = Instant::now();
    let mut f = merkle::Frontier::new();
    for l in &log.leaves {
        f.push(merkle::leaf_hash(l));
    }
    assert_eq!(f.root(), root);
    let hashes = t.elapsed();
    let t = Instant::now();
    assert_eq!(subjects::root_of(&log.leaves), sroot);
    let index = t.elapsed();
    let sigs = per_event * events as u32;
    println!(
        "regulator whole-log check at {} events: leaf hashes + root {:.1} s, subjects root {:.1} s, signatures {:.0} s (estimate: {} per event x {}); total {:.0} s on one core",
        events,
        hashes.as_secs_f64(),
        index.as_secs_f64(),
        sigs.as_secs_f64(),
        us(per_event),
        events,
        (hashes + index + sigs).as_secs_f64()
    );

    let mut follow = vec![subjects::agency(&me), subjects::sealing_key(&me)];
    follow.extend((1..=counterparts).map(|c| subjects::sealing_key(&ori(c))));
    println!();
    println!(
        "| churn (others' events) | entries concerning me | full: bytes | full: node CPU | subjects: bytes | subjects: node CPU | subjects: broker CPU | bytes full/subjects |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &churn in &churns {
        // My node's view before the churn: what it holds of each subject it follows.
        let held: Vec<(String, Record)> = follow
            .iter()
            .map(|s| (s.clone(), log.index.record(s).unwrap_or_default()))
            .collect();
        let old_size = log.tree.size();
        let old_root = log.tree.root();
        let mut frontier = merkle::Frontier::new();
        for h in log.tree.leaves() {
            frontier.push(*h);
        }
        let mark = log.leaves.len();
        for k in 0..churn as u64 {
            let i = log.tree.size();
            log.push(other(i + k, &mut rng));
        }
        // And one event of mine: a counterpart suspends one of my agreements.
        let i = log.tree.size();
        log.push(event("suspend", &me, &ori(1), i, pad));
        let size = log.tree.size();
        let new_root = log.tree.root();
        let new_sroot = log.index.root();
        let consistency = log.tree.consistency_proof(old_size, size)?;
        let cbytes = consistency.len() * 34;

        // Full: every new leaf.
        let new: Vec<Vec<u8>> = log.leaves[mark..].to_vec();
        let expected = new
            .iter()
            .filter(|l| subjects::of_leaf(l).iter().any(|s| follow.contains(s)))
            .count();
        let full_bytes: usize = new.iter().map(|l| l.len() + 3).sum::<usize>() + cbytes;
        let mut full_cpu = Vec::new();
        for _ in 0..syncs.min(5) {
            let t = Instant::now();
            let mut f = frontier.clone();
            let mut mine = 0;
            for l in &new {
                f.push(merkle::leaf_hash(l));
                if subjects::of_leaf(l).iter().any(|s| s == &follow[0]) {
                    mine += 1;
                }
            }
            if f.root() != new_root || mine != 1 {
                bail!("full sync did not verify");
            }
            full_cpu.push(t.elapsed());
        }

        // Subjects: one reply, verified.
        let mut broker_cpu = Vec::new();
        let mut node_cpu = Vec::new();
        let mut sub_bytes = 0;
        for _ in 0..syncs {
            let t = Instant::now();
            let reply = log.reply(&held)?;
            broker_cpu.push(t.elapsed());
            sub_bytes = reply.encoded_len() + cbytes;
            let bytes = reply.encode_to_vec();
            let t = Instant::now();
            let reply = Subjects::decode(bytes.as_slice())?;
            merkle::verify_consistency(old_size, size, &consistency, &old_root, &new_root)?;
            let mut got = 0;
            for (p, (_, h)) in reply.subjects.iter().zip(&held) {
                let v = subjects::verify_proof((size, &new_root, &new_sroot), h, p)?;
                if !v.complete {
                    bail!("incomplete");
                }
                got += v.leaves.len();
            }
            if got != expected {
                bail!("subjects sync brought {got} entries, not {expected}");
            }
            node_cpu.push(t.elapsed());
        }
        let fc = median(full_cpu);
        println!(
            "| {churn} | {expected} | {} | {:.2} ms | {} | {} | {} | {:.0}x |",
            kb(full_bytes),
            fc.as_secs_f64() * 1e3,
            kb(sub_bytes),
            us(median(node_cpu)),
            us(median(broker_cpu)),
            full_bytes as f64 / sub_bytes as f64
        );
    }
    Ok(())
}
