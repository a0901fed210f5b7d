use alpr_pki::{AgencyClaims, AgencyKind, Role, VerifiedIdentity};
use alpr_proto::RefusalReason;

use super::*;

const ORI: &str = "CA0560100";
const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000;

fn person(role: Role, user: &str) -> VerifiedIdentity {
    VerifiedIdentity {
        role,
        agency: Some(
            AgencyClaims::new(
                ORI,
                "Ventura PD",
                "US-CA".parse().unwrap(),
                AgencyKind::Local,
            )
            .unwrap(),
        ),
        user: Some(user.into()),
        jurisdiction: Some("US-CA".parse().unwrap()),
        serial: "01".into(),
        not_after: NOW + 365 * DAY,
    }
}

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::store::open(&dir.path().join("node.db")).unwrap();
    (dir, db)
}

/// An investigator account added, approved and trained at `at`.
fn ready(db: &Db, user: &str, at: i64) {
    let admin = person(Role::Admin, "adm");
    let sup = person(Role::Supervisor, "sup");
    apply(db, &admin, "add", user, "investigator", 0, at).unwrap();
    apply(db, &sup, "approve", user, "", 0, at).unwrap();
    apply(db, &sup, "training", user, "", at, at).unwrap();
}

fn reason(r: Result<Account, alpr_proto::Error>) -> (RefusalReason, String) {
    let e = r.unwrap_err();
    (e.reason(), e.detail())
}

#[test]
fn an_added_approved_trained_investigator_may_search() {
    let (_d, db) = db();
    ready(&db, "inv", NOW);
    let a = check_can_search(&db, "inv", &AccountsConfig::default(), NOW + 60).unwrap();
    assert_eq!(a.approved_by.as_deref(), Some("sup"));
    assert_eq!(a.trained_at, Some(NOW));
}

#[test]
fn each_missing_step_refuses_with_account_inactive_and_says_which() {
    let (_d, db) = db();
    let cfg = AccountsConfig::default();
    let (r, m) = reason(check_can_search(&db, "ghost", &cfg, NOW));
    assert_eq!(r, RefusalReason::AccountInactive);
    assert!(m.contains("has no account"), "{m}");

    apply(
        &db,
        &person(Role::Admin, "adm"),
        "add",
        "new",
        "investigator",
        0,
        NOW,
    )
    .unwrap();
    let (_, m) = reason(check_can_search(&db, "new", &cfg, NOW));
    assert!(m.contains("not been approved"), "{m}");

    apply(
        &db,
        &person(Role::Supervisor, "sup"),
        "approve",
        "new",
        "",
        0,
        NOW,
    )
    .unwrap();
    let (_, m) = reason(check_can_search(&db, "new", &cfg, NOW));
    assert!(m.contains("no training recorded"), "{m}");

    apply(
        &db,
        &person(Role::Admin, "adm"),
        "add",
        "aud",
        "auditor",
        0,
        NOW,
    )
    .unwrap();
    let (_, m) = reason(check_can_search(&db, "aud", &cfg, NOW));
    assert!(m.contains("auditor account, which cannot search"), "{m}");
}

#[test]
fn stale_training_and_idleness_end_the_right_to_search() {
    let (_d, db) = db();
    let cfg = AccountsConfig {
        training_valid_days: 30,
        idle_days: 10,
    };
    ready(&db, "inv", NOW);
    let (_, m) = reason(check_can_search(&db, "inv", &cfg, NOW + 11 * DAY));
    assert!(m.contains("idle for more than 10 days"), "{m}");
    // Activity keeps it alive; training still runs out.
    let a = accounts::get(&db, "inv").unwrap().unwrap();
    touch(&db, &a, NOW + 9 * DAY).unwrap();
    assert!(check_can_search(&db, "inv", &cfg, NOW + 18 * DAY).is_ok());
    let (_, m) = reason(check_can_search(&db, "inv", &cfg, NOW + 31 * DAY));
    assert!(m.contains("training is older than 30 days"), "{m}");
}

#[test]
fn roles_are_enforced_and_nobody_approves_their_own_account() {
    let (_d, db) = db();
    let inv = person(Role::Investigator, "inv");
    let e = apply(&db, &inv, "add", "x", "investigator", 0, NOW).unwrap_err();
    assert!(matches!(e, Error::NotPermitted(_)), "{e}");
    assert_eq!(e.reason(), Some(RefusalReason::NotAuthorized));

    let admin = person(Role::Admin, "adm");
    apply(&db, &admin, "add", "sup2", "supervisor", 0, NOW).unwrap();
    let e = apply(
        &db,
        &person(Role::Supervisor, "sup2"),
        "approve",
        "sup2",
        "",
        0,
        NOW,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("nobody approves their own account"),
        "{e}"
    );
    let e = apply(&db, &admin, "approve", "sup2", "", 0, NOW).unwrap_err();
    assert!(e.to_string().contains("only a supervisor approves"), "{e}");

    let e = apply(&db, &admin, "add", "sup2", "supervisor", 0, NOW).unwrap_err();
    assert_eq!(e.reason(), Some(RefusalReason::InvalidInput));
    let e = apply(&db, &admin, "add", "y", "chief", 0, NOW).unwrap_err();
    assert!(
        e.to_string()
            .contains("must be investigator, supervisor, auditor or admin"),
        "{e}"
    );
    let e = apply(&db, &admin, "promote", "sup2", "", 0, NOW).unwrap_err();
    assert!(e.to_string().contains("unknown account action"), "{e}");
}

#[test]
fn a_disabled_account_stays_disabled() {
    let (_d, db) = db();
    ready(&db, "inv", NOW);
    let sup = person(Role::Supervisor, "sup");
    apply(&db, &sup, "disable", "inv", "", 0, NOW + 60).unwrap();
    let (_, m) = reason(check_can_search(
        &db,
        "inv",
        &AccountsConfig::default(),
        NOW + 120,
    ));
    assert!(m.contains("is disabled"), "{m}");
    let e = apply(&db, &sup, "approve", "inv", "", 0, NOW + 180).unwrap_err();
    assert!(e.to_string().contains("never re-enabled"), "{e}");
    assert_eq!(
        accounts::get(&db, "inv").unwrap().unwrap().disabled_at,
        Some(NOW + 60)
    );
}

#[test]
fn a_search_is_recorded_at_most_once_per_resolution() {
    let (_d, db) = db();
    ready(&db, "inv", NOW);
    let a = accounts::get(&db, "inv").unwrap().unwrap();
    touch(&db, &a, NOW + 60).unwrap();
    assert_eq!(
        accounts::get(&db, "inv").unwrap().unwrap().last_active_at,
        Some(NOW)
    );
    touch(&db, &a, NOW + ACTIVITY_RESOLUTION_SECS + 1).unwrap();
    assert_eq!(
        accounts::get(&db, "inv").unwrap().unwrap().last_active_at,
        Some(NOW + ACTIVITY_RESOLUTION_SECS + 1)
    );
}
