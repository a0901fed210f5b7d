//! The CSV row parser of `alpr-node ingest`: any text yields a read or a one-line error,
//! never a panic; every accepted read is normalized and in range.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        match alpr_node::ingest::parse_row(line) {
            Ok(r) => {
                assert!(!r.plate.is_empty() && r.plate.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
                assert!((-90.0..=90.0).contains(&r.latitude) && (-180.0..=180.0).contains(&r.longitude));
            }
            Err(e) => assert!(!e.contains('\n'), "multi-line error"),
        }
    }
});
