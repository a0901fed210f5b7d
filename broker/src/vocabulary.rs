//! The routing log's vocabulary: every event the broker writes and every decision it
//! records, each with one string form (the one stored in `broker.db` and shown to
//! regulators).

use alpr_runtime::vocabulary;

vocabulary! {
    /// What a routing-log row records.
    Event {
        /// A node's audit tree head offered for anchoring and refused.
        AuditAnchor = "audit_anchor",
        /// A lift of a regulator's suspension.
        Lift = "lift",
        /// An agreement registration.
        Register = "register",
        /// A request to a method the broker does not route (undecodable).
        Request = "request",
        /// A revocation by a party's admin.
        Revoke = "revoke",
        /// The routing decision for one target of a query.
        Route = "route",
        /// What one target's reply turned out to be.
        RouteResult = "route_result",
        /// A node's sealing key published to the registry.
        SealingKey = "sealing_key",
        /// A suspension by the provider state's regulator.
        Suspend = "suspend",
        /// A node's report of a shared hot list's hits, relayed to the list's owner (or
        /// refused).
        HitReport = "hit_report",
        /// A sign-in attempt at the regulator page (the regulator's key token and code).
        PageSignIn = "page_sign_in",
        /// A lifecycle action whose name is none of revoke, suspend, lift (refused; the
        /// name is in the detail).
        UnknownAction = "unknown_action",
    }
}

vocabulary! {
    /// What was decided.
    Decision {
        /// A target's signed answer.
        Answered = "answered",
        /// A target's reply that did not verify.
        BadReply = "bad_reply",
        /// Forwarded to the target.
        Forwarded = "forwarded",
        /// Recorded: a lifecycle action appended to the registry; on the regulator page, a
        /// sign-in code enrolled or removed by the operator, or a secret shown for setup.
        Logged = "logged",
        /// Refused, with a reason code.
        Refused = "refused",
        /// An agreement appended to the registry.
        Registered = "registered",
        /// The target could not be reached in time.
        Unavailable = "unavailable",
        /// A regulator signed in to the page.
        SignedIn = "signed_in",
        /// A regulator's sign-in locked after repeated failed codes.
        LockedOut = "locked_out",
    }
}

impl Event {
    /// The event of a lifecycle action named `action`.
    pub fn of_action(action: &str) -> Self {
        match action {
            "revoke" => Self::Revoke,
            "suspend" => Self::Suspend,
            "lift" => Self::Lift,
            _ => Self::UnknownAction,
        }
    }
}

impl Decision {
    /// The decision recorded for a target's status.
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
    fn actions_map_onto_their_events_and_unknown_ones_onto_one() {
        assert_eq!(Event::of_action("suspend"), Event::Suspend);
        assert_eq!(Event::of_action("lift").as_str(), "lift");
        assert_eq!(Event::of_action("drop table"), Event::UnknownAction);
        assert!("routed".parse::<Decision>().is_err());
        assert_eq!("forwarded".parse::<Decision>(), Ok(Decision::Forwarded));
    }
}
