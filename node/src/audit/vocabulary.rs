//! The audit log's vocabulary: every event a node writes and every decision it records,
//! each with exactly one string form (the one stored in `audit.db` and exported), so a
//! report counts what was written and a typo cannot create a new kind of entry.

use alpr_runtime::vocabulary;

vocabulary! {
    /// What an audit entry records.
    Event {
        /// A user account was created, changed or refused a change.
        AccountChange = "account_change",
        /// An admin command that names no known command.
        AdminCommand = "admin_command",
        /// A sharing agreement was verified and stored.
        AgreementImport = "agreement_import",
        /// Something the admins must look at (a refused CRL reload, ...).
        Alert = "alert",
        /// Anchoring the audit log at the broker failed its checks: the log differs from
        /// its anchor (`diverged`) or the broker refused a head as a fork (`refused`).
        AuditAnchor = "audit_anchor",
        /// A backup of the node's databases.
        Backup = "backup",
        /// Encryption at rest: the data key re-wrapped under a new key-encryption key, or
        /// destroyed when the node leaves the federation.
        DataKey = "data_key",
        /// The node's scheduled self-audit: chain, checkpoints, agreements about to expire.
        DailyAudit = "daily_audit",
        /// The web console: a browser key enrolled with a one-time code, approved by a
        /// supervisor (who issues its certificate and code secret), or refused.
        ConsoleEnrollment = "console_enrollment",
        /// The web console: a sign-in, a failed one, a lockout, a session locked or ended.
        ConsoleSignIn = "console_sign_in",
        /// A switch (sharing, refuse-all, refused requesters) changed.
        ConfigChange = "config_change",
        /// An evidence hold was placed or released.
        EvidenceHold = "evidence_hold",
        /// Audit entries were exported.
        Export = "export",
        /// The daemon started: its configuration and rules, and what changed since the
        /// last start.
        NodeStart = "node_start",
        /// A registered owner's request for the data held about their vehicle, answered.
        OwnerRequest = "owner_request",
        /// An ingested read matched an active hot list.
        HotlistHit = "hotlist_hit",
        /// A hot list was loaded.
        HotlistLoad = "hotlist_load",
        /// What came of a hot-list hit: a stop or not, and the stop's outcome.
        HitOutcome = "hit_outcome",
        /// A report of shared-hot-list hits: sent to the list's owner (delivered, kept to
        /// be sent again, or refused) or, at the owner, refused.
        HotlistReport = "hotlist_report",
        /// A query from another agency, answered or refused.
        InboundQuery = "inbound_query",
        /// Reads were ingested.
        Ingest = "ingest",
        /// A query of this agency's investigator, endorsed or refused.
        OutboundQuery = "outbound_query",
        /// One target's result of an outbound query.
        OutboundResult = "outbound_result",
        /// A public report of other agencies' searches was published (on the state's
        /// schedule or by hand).
        PublicReport = "public_report",
        /// Reads past retention were deleted.
        Purge = "purge",
        /// A registry event was applied or rejected.
        RegistryEvent = "registry_event",
        /// The broker showed a registry that forks from this node's copy.
        RegistryFork = "registry_fork",
        /// A request to a method the node does not know.
        Request = "request",
        /// Who may query this node changed (an agreement registered, revoked, suspended,
        /// lifted or about to expire; a switch flipped): an alert to the admins.
        ScopeChange = "scope_change",
        /// A supervisor's review of a search.
        SearchReview = "search_review",
        /// A named person approved or denied one queued out-of-state request (states that
        /// serve such requesters one request at a time).
        RequestApproval = "request_approval",
        /// This node's sealing key was created, rotated, published or deleted.
        SealingKey = "sealing_key",
    }
}

vocabulary! {
    /// What was decided about what an [`Event`] records.
    Decision {
        /// A counter-signed agreement that was stored already.
        AlreadyPresent = "already_present",
        /// Sign-in refused: too many failed attempts in the lockout window.
        LockedOut = "locked_out",
        /// The entry is an alert.
        Alert = "alert",
        /// An inbound query answered with reads (or none).
        Answered = "answered",
        /// The audit log cannot be written (raised to the alert sinks only: it cannot be
        /// logged).
        AuditUnavailable = "audit_unavailable",
        /// A registry event applied to this node's copy.
        Applied = "applied",
        /// A target's reply that did not verify.
        BadReply = "bad_reply",
        /// A sealing key created (first key or rotation).
        Created = "created",
        /// A sealing key published to the registry.
        Published = "published",
        /// Retired sealing keys deleted after their grace period.
        Deleted = "deleted",
        /// The audit log differs from the head anchored for it at the broker.
        Diverged = "diverged",
        /// A CRL file that could not be used; the previous CRLs stay in force.
        CrlReloadRefused = "crl_reload_refused",
        /// Switches, accounts or agreement states differ from what the audit log last
        /// recorded: changed outside the logged admin path. Sharing stops until an admin
        /// acknowledges.
        StateEdited = "state_edited",
        /// An outbound query endorsed and sent.
        Endorsed = "endorsed",
        /// A command that failed before doing anything.
        Error = "error",
        /// An ingest stopped by the operator before the end of its file.
        Interrupted = "interrupted",
        /// A reviewed search found justified.
        Justified = "justified",
        /// An ingest in which no row was accepted.
        NothingAccepted = "nothing_accepted",
        /// A reviewed search found not justified.
        NotJustified = "not_justified",
        /// This node's registry view is older than its bound; inbound queries are refused
        /// until a fresh head arrives.
        RegistryStale = "registry_stale",
        /// Done.
        Ok = "ok",
        /// A hot-list hit that led to a stop.
        Stopped = "stopped",
        /// A hot-list hit that led to no stop.
        NotStopped = "not_stopped",
        /// An ingest in which some rows were rejected.
        Partial = "partial",
        /// Refused, with a reason code.
        Refused = "refused",
        /// A registry event rejected by this node.
        Rejected = "rejected",
        /// A target that could not be reached in time.
        Unavailable = "unavailable",
        /// An answer withheld from the investigator (it did not verify, or the query was
        /// refused after the fact).
        Withheld = "withheld",
    }
}

impl Decision {
    /// The decision recorded for a target's status in an outbound result.
    pub fn of_target_status(status: i32) -> Self {
        // The outcome's name is the decision's string form.
        alpr_proto::reply::outcome(status)
            .parse()
            .unwrap_or(Self::Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_has_one_string_form_that_round_trips() {
        for e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>(), Ok(*e));
            assert_eq!(
                serde_json::to_string(e).unwrap(),
                format!("\"{}\"", e.as_str())
            );
        }
        for d in Decision::ALL {
            assert_eq!(d.as_str().parse::<Decision>(), Ok(*d));
            let back: Decision = serde_json::from_str(&format!("\"{d}\"")).unwrap();
            assert_eq!(back, *d);
        }
        let mut names: Vec<_> = Event::ALL.iter().map(|e| e.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Event::ALL.len());
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_valid_ones() {
        let e = "inbound_querry".parse::<Event>().unwrap_err();
        assert!(e.contains("unknown event \"inbound_querry\""), "{e}");
        assert!(e.contains("inbound_query"), "{e}");
        assert!(serde_json::from_str::<Decision>("\"answerd\"").is_err());
    }

    #[test]
    fn target_statuses_map_onto_decisions() {
        use alpr_proto::pb::TargetStatus;
        assert_eq!(
            Decision::of_target_status(TargetStatus::Answered as i32),
            Decision::Answered
        );
        assert_eq!(
            Decision::of_target_status(TargetStatus::BadReply as i32),
            Decision::BadReply
        );
        assert_eq!(Decision::of_target_status(99), Decision::Unavailable);
    }
}
