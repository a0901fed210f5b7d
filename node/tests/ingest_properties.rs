//! Property tests (proptest) of the CSV row parser every ingest goes through: no input
//! makes it panic, a well-formed row comes back exactly as written (plate normalized), and
//! a row with any field out of range is refused with a message naming that field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alpr_node::ingest::parse_row;
use proptest::prelude::*;

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_line_panics_the_parser(line in "\\PC{0,120}") {
        let _ = parse_row(&line);
    }

    #[test]
    fn a_well_formed_row_comes_back_as_written(
        plate in "[a-zA-Z0-9]{2,8}",
        ago in 0i64..(365 * 86_400),
        camera in "[A-Za-z0-9-]{1,30}",
        lat in -90.0f64..=90.0,
        lon in -180.0f64..=180.0,
        state in proptest::sample::select(vec!["", "CA", "NV", "OR"]),
    ) {
        let at = 1_790_000_000 - ago;
        let line = format!("{plate},{},{camera},{lat},{lon},{state}", rfc3339(at));
        let r = parse_row(&line).unwrap();
        prop_assert_eq!(r.plate, plate.to_ascii_uppercase());
        prop_assert_eq!(r.captured_at, at);
        prop_assert_eq!(r.camera_id, camera);
        prop_assert_eq!(r.latitude, lat);
        prop_assert_eq!(r.longitude, lon);
        prop_assert_eq!(r.plate_state, state);
    }

    #[test]
    fn a_field_out_of_range_is_refused_naming_it(
        lat in prop_oneof![-1e6f64..-90.001, 90.001f64..1e6],
        lon in prop_oneof![-1e6f64..-180.001, 180.001f64..1e6],
    ) {
        let at = rfc3339(1_790_000_000);
        let e = parse_row(&format!("8ABC123,{at},cam-1,{lat},-119.0")).unwrap_err();
        prop_assert!(e.contains("latitude"), "{}", e);
        let e = parse_row(&format!("8ABC123,{at},cam-1,34.0,{lon}")).unwrap_err();
        prop_assert!(e.contains("longitude"), "{}", e);
        let e = parse_row(&format!("8ABC 12*,{at},cam-1,34.0,-119.0")).unwrap_err();
        prop_assert!(e.contains("plate"), "{}", e);
    }
}
