//! Accounts of the agency's searchers.
//!
//! A person searches only with a certificate **and** an account that a supervisor
//! approved (never their own), with training newer than the refresher interval, not
//! disabled and not idle past the limit. Admins and supervisors act by certificate role.

use alpr_pki::{Role, VerifiedIdentity};
use alpr_proto::RefusalReason;
use rusqlite::{Connection, OptionalExtension, params};

use crate::Error;
use crate::config::AccountsConfig;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    user TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    approved_by TEXT,
    approved_at INTEGER,
    trained_at INTEGER,
    disabled_at INTEGER,
    disabled_reason TEXT,
    last_active_at INTEGER
);
"#;

/// Create the table.
pub fn init(conn: &Connection) -> Result<(), Error> {
    conn.execute_batch(SCHEMA)?;
    Ok(())
}

/// One account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// User id (the certificate's user claim).
    pub user: String,
    /// investigator, supervisor or auditor.
    pub role: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When approved.
    pub approved_at: Option<i64>,
    /// Last training.
    pub trained_at: Option<i64>,
    /// When disabled.
    pub disabled_at: Option<i64>,
    /// Last search.
    pub last_active_at: Option<i64>,
}

/// Read an account.
pub fn get(conn: &Connection, user: &str) -> Result<Option<Account>, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT user, role, approved_by, approved_at, trained_at, disabled_at, last_active_at FROM accounts WHERE user = ?1",
        )?
        .query_row(
            [user],
            |r| {
                Ok(Account {
                    user: r.get(0)?,
                    role: r.get(1)?,
                    approved_by: r.get(2)?,
                    approved_at: r.get(3)?,
                    trained_at: r.get(4)?,
                    disabled_at: r.get(5)?,
                    last_active_at: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// Every account.
pub fn list(conn: &Connection) -> Result<Vec<Account>, Error> {
    let mut st = conn.prepare("SELECT user FROM accounts ORDER BY user")?;
    let users = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    users
        .iter()
        .filter_map(|u| get(conn, u).transpose())
        .collect()
}

/// A command that cannot be carried out as given (malformed, unknown account, ...).
fn deny(m: impl Into<String>) -> Error {
    alpr_proto::Error::refused(alpr_proto::RefusalReason::InvalidInput, m).into()
}

/// A command this person's role may not give.
fn forbid(m: impl Into<String>) -> Error {
    alpr_proto::Error::refused(alpr_proto::RefusalReason::NotAuthorized, m).into()
}

/// Apply an account command by `by` (verified, of this agency). Returns what was done.
pub fn apply(
    conn: &Connection,
    by: &VerifiedIdentity,
    action: &str,
    user: &str,
    role: &str,
    trained_at: i64,
    now: i64,
) -> Result<String, Error> {
    alpr_pki::claims::validate_user(user).map_err(|e| deny(e.to_string()))?;
    let me = by.user.clone().unwrap_or_default();
    let existing = get(conn, user)?;
    match action {
        "add" => {
            if by.role != Role::Admin {
                return Err(forbid("only an admin adds accounts"));
            }
            if !matches!(role, "investigator" | "supervisor" | "auditor") {
                return Err(deny(format!(
                    "role {role:?} must be investigator, supervisor or auditor"
                )));
            }
            if existing.is_some() {
                return Err(deny(format!("account {user} already exists")));
            }
            conn.execute(
                "INSERT INTO accounts (user, role, added_by, added_at) VALUES (?1, ?2, ?3, ?4)",
                params![user, role, me, now],
            )?;
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
            conn.execute(
                "UPDATE accounts SET approved_by = ?2, approved_at = ?3, last_active_at = ?3 WHERE user = ?1",
                params![user, me, now],
            )?;
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
            conn.execute(
                "UPDATE accounts SET trained_at = ?2 WHERE user = ?1",
                params![user, trained_at],
            )?;
            Ok(format!("recorded training for {user}"))
        }
        "disable" => {
            if !matches!(by.role, Role::Supervisor | Role::Admin) {
                return Err(forbid("only a supervisor or admin disables accounts"));
            }
            existing.ok_or_else(|| deny(format!("no account {user}")))?;
            conn.execute(
                "UPDATE accounts SET disabled_at = ?2, disabled_reason = ?3 WHERE user = ?1 AND disabled_at IS NULL",
                params![user, now, format!("disabled by {me}")],
            )?;
            Ok(format!("disabled {user}"))
        }
        other => Err(deny(format!(
            "unknown account action {other:?} (add, approve, training, disable)"
        ))),
    }
}

/// May `user` search now? The account if so, `ACCOUNT_INACTIVE` with the reason if not.
pub fn check_can_search(
    conn: &Connection,
    user: &str,
    cfg: &AccountsConfig,
    now: i64,
) -> Result<Account, alpr_proto::Error> {
    let inactive = |m: String| alpr_proto::Error::refused(RefusalReason::AccountInactive, m);
    let a = get(conn, user)
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
pub fn touch(conn: &Connection, account: &Account, now: i64) -> Result<(), Error> {
    if account
        .last_active_at
        .is_some_and(|t| t > now - ACTIVITY_RESOLUTION_SECS && t <= now)
    {
        return Ok(());
    }
    conn.prepare_cached("UPDATE accounts SET last_active_at = ?2 WHERE user = ?1")?
        .execute(params![account.user, now])?;
    Ok(())
}
