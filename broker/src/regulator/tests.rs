use super::*;
use crate::registry::{self as reg, Registry};
use crate::store;
use crate::testkit::{Kit, NEVADA, PROVIDER, REQUESTER};

const DAY: i64 = 86_400;

/// A verified registry of four agreements made at `now`: `long` (Ventura to Sacramento,
/// 300 days), `short` (Ventura to Nevada, 10 days), `revoked` and `suspended` (Sacramento
/// to Ventura, 300 days each). Returns the view and the ids in that order.
fn view(kit: &Kit, now: i64) -> (RegistryView, [String; 4]) {
    let mut db = store::open(&kit.dir().join("broker.db")).unwrap();
    let mut r = Registry::load(&db, &kit.trust).unwrap();
    let mut append = |leaf: Vec<u8>| {
        r.append(&mut db, &kit.trust, &kit.broker, leaf, now)
            .unwrap();
    };
    let mut ids = Vec::new();
    for (p, q, note, days) in [
        (
            PROVIDER,
            REQUESTER,
            "long, with \"quotes\", and commas",
            300,
        ),
        (PROVIDER, NEVADA, "short", 10),
        (REQUESTER, PROVIDER, "to be revoked", 300),
        (REQUESTER, PROVIDER, "to be suspended", 300),
    ] {
        let (leaf, id) = kit.registration(&kit.agreement(p, q, note, now, now + days * DAY), now);
        append(leaf);
        ids.push(id);
    }
    let parties = (REQUESTER, PROVIDER);
    append(kit.action(&kit.admin(PROVIDER), &ids[2], "revoke", parties, now));
    append(kit.action(&kit.regulator(), &ids[3], "suspend", parties, now));
    let head =
        registry::verify_head(&kit.trust, &reg::latest_head(&db).unwrap().unwrap(), now).unwrap();
    let records = r.records().clone();
    (
        RegistryView {
            head,
            records,
            sealing_keys: Default::default(),
        },
        ids.try_into().unwrap(),
    )
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn rows_carry_the_terms_claims_and_status_of_each_agreement() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let (v, [long, short, revoked, suspended]) = view(&kit, now);
    let all = rows(&v, &ListFilter::default(), now);
    assert_eq!(all.len(), 4);
    let row = |id: &str| all.iter().find(|r| r.id == id).unwrap();
    let r = row(&short);
    assert_eq!(
        (r.provider.as_str(), r.provider_state.as_str()),
        (PROVIDER, "US-CA")
    );
    assert_eq!(
        (
            r.requester.as_str(),
            r.requester_state.as_str(),
            r.requester_kind.as_str()
        ),
        (NEVADA, "US-NV", "state")
    );
    assert_eq!((r.status.as_str(), r.purposes.as_str()), ("active", "240"));
    assert_eq!((r.lookback_days, r.valid_until), (30, now + 10 * DAY));
    assert_eq!(r.justification, "Regional auto-theft task force: short");
    assert_eq!(r.registered_index, 1);
    assert_eq!(row(&long).requester_kind, "local");
    assert_eq!(row(&revoked).status, "revoked");
    assert_eq!(row(&suspended).status, "suspended");
    // Past its end an active agreement shows as expired; revoked and suspended stay so.
    let later = rows(&v, &ListFilter::default(), now + 11 * DAY);
    let status = |id: &str| later.iter().find(|r| r.id == id).unwrap().status.clone();
    assert_eq!(status(&short), "expired");
    assert_eq!(status(&long), "active");
    assert_eq!(status(&revoked), "revoked");
}

#[test]
fn list_filters_select_by_agency_state_status_and_expiry() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let (v, [long, short, revoked, suspended]) = view(&kit, now);
    let sorted = |mut x: Vec<&str>| {
        x.sort();
        x.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let pick = |f: ListFilter| sorted(ids(&rows(&v, &f, now)));
    assert_eq!(
        pick(ListFilter {
            agency: Some(NEVADA.into()),
            ..Default::default()
        }),
        vec![short.clone()]
    );
    assert_eq!(
        pick(ListFilter {
            agency: Some(REQUESTER.into()),
            ..Default::default()
        }),
        sorted(vec![&long, &revoked, &suspended])
    );
    assert_eq!(
        pick(ListFilter {
            state: Some("US-NV".into()),
            ..Default::default()
        }),
        vec![short.clone()]
    );
    assert_eq!(
        pick(ListFilter {
            status: Some("active".into()),
            ..Default::default()
        }),
        sorted(vec![&long, &short])
    );
    assert_eq!(
        pick(ListFilter {
            expiring_within_days: Some(30),
            ..Default::default()
        }),
        vec![short.clone()]
    );
    assert!(
        pick(ListFilter {
            agency: Some(NEVADA.into()),
            status: Some("revoked".into()),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn csv_has_a_header_and_one_quoted_line_per_row() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let (v, [long, ..]) = view(&kit, now);
    let all = rows(&v, &ListFilter::default(), now);
    let csv = to_csv(&all);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("id,provider,provider_state,"));
    assert_eq!(lines[0].split(',').count(), 12);
    let line = lines.iter().find(|l| l.starts_with(&long)).unwrap();
    assert!(
        line.contains(
            ",\"Regional auto-theft task force: long, with \"\"quotes\"\", and commas\",0"
        ),
        "{line}"
    );
    assert!(
        line.contains(&format!(",{},", fmt_time(now + 300 * DAY))),
        "{line}"
    );
    assert!(to_csv(&[]).ends_with("registered_index\n"));
}

#[test]
fn the_report_counts_statuses_partners_and_refusals() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let (v, [_, short, ..]) = view(&kit, now);
    let none = report(&v, now, &[]);
    let first = none.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "Agreement registry: 6 entries, root {} (verified; cosigned by 0 regulator(s))",
            hex::encode(v.head.root)
        )
    );
    assert!(
        none.contains("\nAgreements: 4 (2 active, 1 revoked, 1 suspended)\n"),
        "{none}"
    );
    assert!(
        none.contains(&format!("\n  US-CA {PROVIDER} shares with 2 partner(s): ")),
        "{none}"
    );
    assert!(
        none.contains("\nOut-of-state or federal partners: 1\n"),
        "{none}"
    );
    assert!(
        none.contains(&format!(
            "\n  {PROVIDER} (US-CA) -> {NEVADA} (US-NV, state)\n"
        )),
        "{none}"
    );
    assert!(none.contains("\nExpiring within 30 days: 1\n"), "{none}");
    assert!(
        none.contains(&format!("\n  {short} {PROVIDER} -> {NEVADA} until ")),
        "{none}"
    );
    assert!(
        none.ends_with("Refusals by reason and agency:\n  none recorded\n"),
        "{none}"
    );
    let some = report(&v, now, &[("NO_AGREEMENT".into(), PROVIDER.into(), 3)]);
    assert!(
        some.ends_with(&format!(
            "Refusals by reason and agency:\n  {:<40} {PROVIDER:<10} 3\n",
            "NO_AGREEMENT"
        )),
        "{some}"
    );
}

#[test]
fn a_saved_head_round_trips_and_a_missing_file_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("head.json");
    assert_eq!(SavedHead::load(&path).unwrap(), None);
    let h = SavedHead {
        size: 7,
        root: hex::encode([0xab; 32]),
    };
    h.save(&path).unwrap();
    let back = SavedHead::load(&path).unwrap().unwrap();
    assert_eq!(back, h);
    assert_eq!(back.root_hash().unwrap(), [0xab; 32]);
    std::fs::write(&path, "{\"size\": 1}").unwrap();
    assert!(matches!(SavedHead::load(&path), Err(Error::Usage(_))));
    let short = SavedHead {
        size: 1,
        root: "abcd".into(),
    };
    assert!(
        short
            .root_hash()
            .unwrap_err()
            .to_string()
            .starts_with("saved root: ")
    );
}

#[test]
fn a_regulator_refuses_a_head_whose_subjects_root_is_not_the_logs() {
    let kit = Kit::new();
    let now = alpr_pki::now_unix();
    let mut db = store::open(&kit.dir().join("broker.db")).unwrap();
    let mut r = Registry::load(&db, &kit.trust).unwrap();
    let mut leaves = Vec::new();
    for (p, q) in [(PROVIDER, REQUESTER), (PROVIDER, NEVADA)] {
        let (leaf, _) = kit.registration(&kit.agreement(p, q, "x", now, now + DAY), now);
        r.append(&mut db, &kit.trust, &kit.broker, leaf.clone(), now)
            .unwrap();
        leaves.push(leaf);
    }
    // The broker's own head: its subjects root is the log's.
    let sth = reg::latest_head(&db).unwrap().unwrap();
    let head = registry::verify_head(&kit.trust, &sth, now).unwrap();
    assert_eq!(
        head.subjects_root,
        Some(alpr_proto::subjects::root_of(&leaves))
    );
    check_subjects_root(&head, &leaves).unwrap();
    // A head signed over the same tree but an index that leaves out the newest leaf (what
    // would hide it from NEVADA's node): refused.
    let lying = alpr_proto::pb::TreeHead {
        size: 2,
        root: head.root.to_vec(),
        timestamp: now,
        subjects_root: alpr_proto::subjects::root_of(&leaves[..1]).to_vec(),
    };
    let forged = SignedTreeHead {
        head: Some(envelope::seal(&kit.broker, registry::TREE_HEAD, &lying).unwrap()),
        cosignatures: vec![],
    };
    let bad = registry::verify_head(&kit.trust, &forged, now).unwrap();
    let err = check_subjects_root(&bad, &leaves).unwrap_err().to_string();
    assert!(err.contains("subjects root"), "{err}");
    // A cosignature of the honest head does not count for the lying one.
    let cs = alpr_proto::pb::Cosignature {
        tree_head: sth.head.as_ref().unwrap().payload.clone(),
        cosigned_at: now,
    };
    let cosigned = SignedTreeHead {
        cosignatures: vec![envelope::seal(&kit.regulator(), registry::COSIGNATURE, &cs).unwrap()],
        ..forged
    };
    let v = registry::verify_head(&kit.trust, &cosigned, now).unwrap();
    assert!(
        v.cosigners.is_empty(),
        "same size and root, another index: not cosigned"
    );
}
