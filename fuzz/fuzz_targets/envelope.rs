//! Envelope decode + verify, including the nested endorsement: arbitrary bytes must never
//! panic, and nothing unsigned may be accepted.
#![no_main]

use std::sync::LazyLock;

use alpr_pki::issue;
use alpr_pki::TrustStore;
use alpr_proto::admission::{QueryFacts, open_endorsed};
use alpr_proto::envelope;
use alpr_proto::pb::Signed;
use libfuzzer_sys::fuzz_target;
use prost::Message;

static TRUST: LazyLock<TrustStore> = LazyLock::new(|| {
    // A fixed in-memory root: nothing the fuzzer makes can chain to it without its key.
    let root = issue::new_root("Fuzz Root", 10).expect("root");
    TrustStore::new(root.cert_der, vec![])
});

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000;
    if let Ok(signed) = Signed::decode(data) {
        let mut facts = QueryFacts::default();
        assert!(open_endorsed(&TRUST, &signed, now, &mut facts).is_err(), "forged endorsement accepted");
        for t in [envelope::QUERY, envelope::ANSWER, envelope::REFUSAL, envelope::AGREEMENT] {
            assert!(envelope::open(&TRUST, &signed, t, now).is_err(), "forged envelope accepted");
        }
    }
});
