//! A small PKI and agreement kit for the unit tests: a state root in a temporary directory,
//! three agencies with their admins, the broker and a California regulator, and signed
//! agreements, registry leaves and actions made with them.

use std::path::Path;

use alpr_pki::issue::Overwrite;
use alpr_pki::{AgencyClaims, AgencyKind, PkiLayout, Role, Signer, TrustStore};
use alpr_proto::envelope::{self, AGREEMENT};
use alpr_proto::pb::{Agreement, AgreementAction, RegistryEvent, SignedAgreement};
use prost::Message;

/// A local agency in California (the provider in most tests).
pub(crate) const PROVIDER: &str = "CA0560100";
/// Another local agency in California.
pub(crate) const REQUESTER: &str = "CA0340000";
/// A state agency in Nevada.
pub(crate) const NEVADA: &str = "NV0020000";

/// The PKI and the files it lives in.
pub(crate) struct Kit {
    dir: tempfile::TempDir,
    layout: PkiLayout,
    /// The trust store of the test root.
    pub trust: TrustStore,
    /// The broker's signer (tree heads).
    pub broker: Signer,
}

impl Kit {
    /// A fresh PKI in a fresh temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path().join("pki"));
        layout
            .create_root("Test Root", 10, Overwrite::Refuse)
            .unwrap();
        for (ori, j, kind) in [
            (PROVIDER, "US-CA", AgencyKind::Local),
            (REQUESTER, "US-CA", AgencyKind::Local),
            (NEVADA, "US-NV", AgencyKind::State),
        ] {
            let claims =
                AgencyClaims::new(ori, &format!("Agency {ori}"), j.parse().unwrap(), kind).unwrap();
            layout
                .create_agency(&claims, 10, Overwrite::Refuse)
                .unwrap();
            layout
                .issue_person(ori, Role::Admin, "adm", 10, Overwrite::Refuse)
                .unwrap();
        }
        layout
            .issue_broker(vec!["localhost".into()], 10, Overwrite::Refuse)
            .unwrap();
        layout
            .issue_regulator("reg-ca", "US-CA".parse().unwrap(), 10, Overwrite::Refuse)
            .unwrap();
        let trust = TrustStore::load(&layout.root_cert(), &layout.all_crls()).unwrap();
        let (c, k) = layout.broker();
        let broker = Signer::load(&c, &k).unwrap();
        Self {
            dir,
            layout,
            trust,
            broker,
        }
    }

    /// A directory for the test's own files, removed with the kit.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin of `ori`.
    pub fn admin(&self, ori: &str) -> Signer {
        let (c, k) = self.layout.person(ori, "adm");
        Signer::load(&c, &k).unwrap()
    }

    /// California's regulator.
    pub fn regulator(&self) -> Signer {
        let (c, k) = self.layout.regulator("reg-ca");
        Signer::load(&c, &k).unwrap()
    }

    /// An agreement from `provider` to `requester` valid from a minute before `now` until
    /// `valid_until`, signed by both admins. `note` makes agreements with otherwise equal
    /// terms distinct.
    pub fn agreement(
        &self,
        provider: &str,
        requester: &str,
        note: &str,
        now: i64,
        valid_until: i64,
    ) -> SignedAgreement {
        let terms = Agreement {
            provider_ori: provider.into(),
            requester_ori: requester.into(),
            purposes: vec!["240".into()],
            data_types: vec!["reads".into()],
            max_lookback_days: 30,
            valid_from: now - 60,
            valid_until,
            justification: format!("Regional auto-theft task force: {note}"),
            drafted_at: now,
            query_shapes: vec![],
        };
        let payload = terms.encode_to_vec();
        SignedAgreement {
            provider: Some(
                envelope::seal_bytes(&self.admin(provider), AGREEMENT, payload.clone()).unwrap(),
            ),
            requester: Some(
                envelope::seal_bytes(&self.admin(requester), AGREEMENT, payload).unwrap(),
            ),
            declaration: None,
        }
    }

    /// The registry leaf registering `sa` at `now`; returns it with the agreement's id.
    pub fn registration(&self, sa: &SignedAgreement, now: i64) -> (Vec<u8>, String) {
        let v = alpr_proto::agreement::verify(&self.trust, sa, now).unwrap();
        let leaf = RegistryEvent {
            kind: "register".into(),
            agreement_id: v.id.clone(),
            agreement: Some(sa.clone()),
            action: None,
            sealing_key: None,
            logged_at: now,
            provider_ori: v.terms.provider_ori.clone(),
            requester_ori: v.terms.requester_ori.clone(),
        }
        .encode_to_vec();
        (leaf, v.id)
    }

    /// The registry leaf of `action` ("revoke", "suspend", "lift") on agreement `id`
    /// between `provider` and `requester`, signed by `by` at `now`.
    pub fn action(
        &self,
        by: &Signer,
        id: &str,
        action: &str,
        (provider, requester): (&str, &str),
        now: i64,
    ) -> Vec<u8> {
        let a = AgreementAction {
            agreement_id: id.into(),
            action: action.into(),
            reason: format!("{action} for the tests"),
            signed_at: now,
        };
        let signed = envelope::seal(by, alpr_proto::registry::ACTION, &a).unwrap();
        RegistryEvent {
            kind: action.into(),
            agreement_id: id.into(),
            agreement: None,
            action: Some(signed),
            sealing_key: None,
            logged_at: now,
            provider_ori: provider.into(),
            requester_ori: requester.into(),
        }
        .encode_to_vec()
    }
}
