//! The node's runtime switches: sharing on/off, refuse-all, refused requesters.
//!
//! They live in the database (not the config file) so that only an admin's
//! authenticated, logged command changes them, and a running node sees the change at once.

use alpr_runtime::vocabulary;

vocabulary! {
    /// A switch an admin sets (the `name` of a `SetSwitch` command).
    Switch {
        /// Refuse every inbound query while on.
        RefuseAll = "refuse_all",
        /// Refuse (on) or stop refusing (off) one requesting agency.
        RefuseRequester = "refuse_requester",
        /// Answer inbound queries at all.
        Sharing = "sharing",
    }
}

vocabulary! {
    /// A boolean setting as stored in the `settings` table.
    Flag {
        /// Refuse every inbound query.
        RefuseAll = "refuse_all",
        /// Answer inbound queries at all.
        SharingEnabled = "sharing_enabled",
    }
}

/// The switches in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// Answer inbound queries at all (a new node is closed).
    pub sharing_enabled: bool,
    /// Refuse every inbound query.
    pub refuse_all: bool,
    /// ORIs whose queries are refused.
    pub refused_requesters: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_names_are_the_wire_names_and_unknown_ones_are_refused() {
        assert_eq!("sharing".parse::<Switch>(), Ok(Switch::Sharing));
        assert_eq!(Switch::RefuseRequester.as_str(), "refuse_requester");
        let e = "share_all".parse::<Switch>().unwrap_err();
        assert!(e.contains("unknown switch \"share_all\""), "{e}");
        assert!(e.contains("refuse_all, refuse_requester, sharing"), "{e}");
        assert_eq!(Flag::SharingEnabled.as_str(), "sharing_enabled");
    }
}
