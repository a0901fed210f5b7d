//! Query validation: decoded queries and raw strings through every input rule; any input
//! yields a decision, never a panic, and an accepted plate is normalized.
#![no_main]

use alpr_proto::admission::check_query;
use alpr_proto::input;
use alpr_proto::pb::Query;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000;
    if let Ok(q) = Query::decode(data) {
        if check_query(&q, now).is_ok() {
            assert_eq!(input::normalize_plate(&q.plate).ok().as_deref(), Some(q.plate.as_str()));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = input::normalize_plate(s) {
            assert!(p.len() <= input::MAX_PLATE && p.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        }
        let _ = input::check_reason(s, false);
        let _ = input::check_reason(s, true);
        let _ = input::check_case_number(s);
        let _ = input::check_terms("reason", s, &["abortion".into(), "gender affirming".into()]);
    }
});
