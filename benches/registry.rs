//! Admission at national registry size (issue 19, item 1): the broker's decision for one
//! target of one query, with 18,000 agencies and 100,000 agreements in the registry.
//!
//! The query is real (an investigator's signature and its node's endorsement, opened once
//! as the broker does); the registry state holds the one real agreement between the two
//! agencies plus `ALPR_BENCH_AGREEMENTS` (default 100,000) synthetic ones among
//! `ALPR_BENCH_AGENCIES` (default 18,000) agencies, built in memory (admission reads the
//! registry's verified state, not its signatures). Two ways are timed, in the same run:
//!
//! * **all views** — what the broker did before: every agreement of the registry turned
//!   into an admission view for each query, then admission scans them;
//! * **parties index** — what it does now: `RegistryState::views_between` fetches the
//!   agreements between the query's targets and requester, then admission.
//!
//! Budget: one target admitted in <= 100 us p99 (parties index). Knobs:
//! `ALPR_BENCH_AGENCIES`, `ALPR_BENCH_AGREEMENTS`, `ALPR_BENCH_ADMISSIONS` (2,000 per way).
//! Run: `cargo bench --bench registry`.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use alpr_proto::admission::{self, AdmissionContext, ReplayGuard};
use alpr_proto::agreement::{AgreementStatus, AgreementView, VerifiedAgreement};
use alpr_proto::pb::Agreement;
use alpr_proto::registry::{AgreementRecord, RegistryState};
use alpr_proto::rules::StateRules;
use anyhow::{Result, bail};
use common::{Rng, env_or, pct};

/// Admission's replay memory, answering "first sight" every time (the same query is
/// admitted over and over here).
struct Fresh;
impl ReplayGuard for Fresh {
    fn first_sight(&self, _: &[u8], _: &str, _: i64) -> bool {
        true
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn main() -> Result<()> {
    common::print_machine();
    let agencies: u64 = env_or("ALPR_BENCH_AGENCIES", 18_000);
    let agreements: u64 = env_or("ALPR_BENCH_AGREEMENTS", 100_000);
    let n: usize = env_or("ALPR_BENCH_ADMISSIONS", 2_000);
    let rt = tokio::runtime::Runtime::new()?;
    let specs = alpr_federation::demo_agencies();
    let (provider, requester) = (specs[0].ori, specs[1].ori);
    let fed = rt.block_on(alpr_federation::Federation::start(
        None,
        &specs[..2],
        |_| alpr_federation::open_policy(),
    ))?;
    let terms = alpr_federation::Federation::terms(provider, requester, &["240"], 30, 86_400);
    let real_id = rt.block_on(fed.agree(terms.clone()))?;
    let p = alpr_federation::params("8ABC123", &[provider], "240", 3);
    let (_, signed) = fed.sign_query(requester, &p)?;
    let endorsed = fed.endorse(requester, &signed)?;
    let now = alpr_pki::now_unix();
    let opened = admission::open(&fed.trust, &endorsed, now);
    if let Some(e) = opened.refusal() {
        bail!("the query does not open: {e}");
    }
    // The registry's verified state: the real agreement, and the synthetic rest.
    let t = Instant::now();
    let admin = fed.trust.verify(
        fed.person(provider, &alpr_federation::admin_of(provider))?
            .0
            .chain(),
        now,
    )?;
    let mut state = RegistryState::default();
    let add = |id: String, terms: Agreement, state: &mut RegistryState| {
        state
            .by_parties
            .entry((terms.provider_ori.clone(), terms.requester_ori.clone()))
            .or_default()
            .push(id.clone());
        state.agreements.insert(
            id.clone(),
            AgreementRecord {
                agreement: VerifiedAgreement {
                    id,
                    terms,
                    provider_admin: admin.clone(),
                    requester_admin: admin.clone(),
                },
                registered_index: 0,
                status: AgreementStatus::Active,
                history: vec![],
            },
        );
    };
    add(real_id.clone(), terms, &mut state);
    let mut rng = Rng::new(0xA9E7);
    let ori = |i: u64| format!("ZZ{i:07}");
    for i in 0..agreements {
        let (a, b) = (rng.below(agencies), rng.below(agencies));
        let mut t = alpr_federation::Federation::terms(
            &ori(a),
            &ori(b),
            &["240", "120", "13A"],
            90,
            86_400 * 180,
        );
        t.drafted_at += i as i64;
        add(format!("agr-synthetic-{i:08}"), t, &mut state);
    }
    println!(
        "registry state: {} agreements among {agencies} agencies, built in {:.1} s",
        state.agreements.len(),
        t.elapsed().as_secs_f64()
    );
    let rules = StateRules::for_jurisdiction(&"US-CA".parse()?)?;
    let targets = vec![provider.to_owned()];
    let admit = |views: &[AgreementView]| {
        let ctx = AdmissionContext {
            trust: &fed.trust,
            provider_ori: provider,
            rules,
            policy: None,
            agreements: views,
            replay: &Fresh,
            now,
            provider_system: Some(("alpr-fed", "0.1.0")),
        };
        admission::admit_opened(&ctx, &opened)
    };
    let mut results = Vec::new();
    for (label, indexed) in [("all views (before)", false), ("parties index (now)", true)] {
        let mut lat = Vec::with_capacity(n);
        // The all-views way is slow at this size: fewer rounds of it.
        let rounds = if indexed { n } else { (n / 20).max(20) };
        for _ in 0..rounds {
            let t = Instant::now();
            let views = if indexed {
                state.views_between(&targets, &[requester])
            } else {
                state.views()
            };
            let d = admit(&views);
            lat.push(t.elapsed());
            match d {
                admission::AdmissionDecision::Admitted(a) if a.agreement_id == real_id => {}
                other => bail!(
                    "{label}: not admitted under the real agreement: {:?}",
                    other.reason()
                ),
            }
        }
        lat.sort();
        println!(
            "{label}: {rounds} admissions of one target: p50 {}, p99 {}, max {}",
            us(pct(&lat, 50.0)),
            us(pct(&lat, 99.0)),
            us(lat.last().copied().unwrap_or_default())
        );
        results.push(pct(&lat, 99.0));
    }
    let p99 = results[1];
    println!(
        "\n== registry results ==\nadmission of one target at {} agreements, parties index: p99 {} ({:.0}x faster than all views, p99 {})  budget p99 <= 100 us: {}",
        state.agreements.len(),
        us(p99),
        results[0].as_secs_f64() / p99.as_secs_f64().max(1e-9),
        us(results[0]),
        if p99 <= Duration::from_micros(100) {
            "PASS"
        } else {
            "FAIL"
        }
    );
    rt.block_on(fed.stop())?;
    Ok(())
}
