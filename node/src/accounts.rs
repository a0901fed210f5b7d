//! Accounts of the agency's searchers.
//!
//! A person searches only with a certificate **and** an account that a supervisor
//! approved (never their own), with training newer than the refresher interval, not
//! disabled and not idle past the limit. Admins and supervisors act by certificate role.

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::RefusalReason;

use crate::Error;
use crate::config::AccountsConfig;
pub use crate::store::Account;
use crate::store::{Db, accounts};

/// A command that cannot be carried out as given (malformed, unknown account, ...).
fn deny(m: impl Into<String>) -> Error {
    alpr_proto::Error::refused(alpr_proto::RefusalReason::InvalidInput, m).into()
}

/// A command this person's role may not give.
fn forbid(m: impl Into<String>) -> Error {
    Error::NotPermitted(m.into())
}

/// Apply an account command by `by` (verified, of this agency). Returns what was done.
pub fn apply(
    db: &Db,
    by: &VerifiedIdentity,
    action: &str,
    user: &str,
    role: &str,
    trained_at: i64,
    now: i64,
) -> Result<String, Error> {
    alpr_pki::claims::validate_user(user).map_err(|e| deny(e.to_string()))?;
    let me = by.user.clone().unwrap_or_default();
    let existing = accounts::get(db, user)?;
    match action {
        "add" => {
            if by.role != Role::Admin {
                return Err(forbid("only an admin adds accounts"));
            }
            // An admin account only lets its person into the web console (admins act by
            // certificate role everywhere else).
            if !matches!(role, "investigator" | "supervisor" | "auditor" | "admin") {
                return Err(deny(format!(
                    "role {role:?} must be investigator, supervisor, auditor or admin"
                )));
            }
            if existing.is_some() {
                return Err(deny(format!("account {user} already exists")));
            }
            accounts::insert(db, user, role, &me, now)?;
            Ok(format!(
                "added {role} account {user} (awaiting supervisor approval and training)"
            ))
        }
        "approve" => {
            if by.role != Role::Supervisor {
                return Err(forbid("only a supervisor approves accounts"));
            }
            if me == user {
                return Err(forbid("nobody approves their own account"));
            }
            let a = existing.ok_or_else(|| deny(format!("no account {user}")))?;
            if a.disabled_at.is_some() {
                return Err(deny(format!(
                    "account {user} is disabled; a disabled account is never re-enabled, add a new one"
                )));
            }
            accounts::approve(db, user, &me, now)?;
            Ok(format!("approved {user}"))
        }
        "training" => {
            if !matches!(by.role, Role::Supervisor | Role::Admin) {
                return Err(forbid("only a supervisor or admin records training"));
            }
            existing.ok_or_else(|| deny(format!("no account {user}")))?;
            if trained_at <= 0 || trained_at > now + 86_400 {
                return Err(deny("training date must be a past time"));
            }
            accounts::set_trained(db, user, trained_at)?;
            Ok(format!("recorded training for {user}"))
        }
        "disable" => {
            if !matches!(by.role, Role::Supervisor | Role::Admin) {
                return Err(forbid("only a supervisor or admin disables accounts"));
            }
            existing.ok_or_else(|| deny(format!("no account {user}")))?;
            accounts::disable(db, user, now, &format!("disabled by {me}"))?;
            Ok(format!("disabled {user}"))
        }
        other => Err(deny(format!(
            "unknown account action {other:?} (add, approve, training, disable, invite, approve-key)"
        ))),
    }
}

/// May `user` search now? The account if so, `ACCOUNT_INACTIVE` with the reason if not.
pub fn check_can_search(
    db: &Db,
    user: &str,
    cfg: &AccountsConfig,
    now: i64,
) -> Result<Account, alpr_proto::Error> {
    let inactive = |m: String| alpr_proto::Error::refused(RefusalReason::AccountInactive, m);
    let a = accounts::get(db, user)
        .map_err(|e| inactive(format!("account lookup failed: {e}")))?
        .ok_or_else(|| inactive(format!("{user} has no account at this node")))?;
    if a.role != "investigator" {
        return Err(inactive(format!(
            "{user} holds a {} account, which cannot search",
            a.role
        )));
    }
    if a.disabled_at.is_some() {
        return Err(inactive(format!("account {user} is disabled")));
    }
    let Some(_) = a.approved_at else {
        return Err(inactive(format!(
            "account {user} has not been approved by a supervisor"
        )));
    };
    match a.trained_at {
        Some(t) if t >= now - i64::from(cfg.training_valid_days) * 86_400 => {}
        Some(_) => {
            return Err(inactive(format!(
                "{user}'s training is older than {} days",
                cfg.training_valid_days
            )));
        }
        None => return Err(inactive(format!("no training recorded for {user}"))),
    }
    let last = a.last_active_at.or(a.approved_at).unwrap_or(0);
    if last < now - i64::from(cfg.idle_days) * 86_400 {
        return Err(inactive(format!(
            "account {user} idle for more than {} days; a supervisor must re-approve it",
            cfg.idle_days
        )));
    }
    Ok(a)
}

/// `last_active_at` is kept to this many seconds: it serves the idle limit (whole days),
/// while the audit log holds the time of every search. Writing it on each search would
/// cost every query a durable write.
pub const ACTIVITY_RESOLUTION_SECS: i64 = 3600;

/// Record a search by `account` at `now` (at most once per [`ACTIVITY_RESOLUTION_SECS`]).
pub fn touch(db: &Db, account: &Account, now: i64) -> Result<(), Error> {
    if account
        .last_active_at
        .is_some_and(|t| t > now - ACTIVITY_RESOLUTION_SECS && t <= now)
    {
        return Ok(());
    }
    accounts::set_last_active(db, &account.user, now)
}

#[cfg(test)]
mod tests;
