use alpr_proto::admission::QueryFacts;
use alpr_proto::pb::Query;

use super::*;

fn stored(seq: i64, e: AuditEntry) -> StoredEntry {
    StoredEntry {
        seq,
        entry: e,
        prev_hash: GENESIS.into(),
        hash: "ab".repeat(32),
    }
}

#[test]
fn the_chain_hash_covers_the_predecessor_and_every_byte_of_the_entry() {
    let h = chain_hash(GENESIS, "{\"at\":1}");
    assert_eq!(h.len(), 64);
    assert_eq!(h, chain_hash(GENESIS, "{\"at\":1}"));
    assert_ne!(h, chain_hash(GENESIS, "{\"at\":2}"));
    assert_ne!(h, chain_hash(&"1".repeat(64), "{\"at\":1}"));
    // The separator keeps (prev, entry) pairs from sliding into each other.
    assert_ne!(chain_hash("ab", "c"), chain_hash("a", "bc"));
}

#[test]
fn checkpoint_chains_round_trip_and_malformed_bytes_are_none() {
    let chain = vec![
        alpr_pki::CertificateDer::from(vec![1u8, 2, 3]),
        alpr_pki::CertificateDer::from(vec![4u8; 300]),
    ];
    let bytes = encode_chain(&chain);
    assert_eq!(decode_chain(&bytes), Some(chain));
    assert_eq!(decode_chain(&bytes[..bytes.len() - 1]), None);
    assert_eq!(decode_chain(&[0, 0, 0]), None);
    assert_eq!(decode_chain(&[]), Some(vec![]));
}

#[test]
fn checkpoint_messages_are_domain_separated_and_bind_size_head_and_time() {
    let m = checkpoint_message(12, "aa", 100);
    assert!(
        m.windows(CHECKPOINT_TYPE.len())
            .any(|w| w == CHECKPOINT_TYPE.as_bytes())
    );
    assert_ne!(m, checkpoint_message(13, "aa", 100));
    assert_ne!(m, checkpoint_message(12, "ab", 100));
    assert_ne!(m, checkpoint_message(12, "aa", 101));
}

#[test]
fn a_query_entry_records_who_asked_and_what() {
    let facts = QueryFacts {
        endorser: None,
        investigator: None,
        query: Some(Query {
            query_id: vec![0xab; 16],
            plate: "8ABC123".into(),
            plate_state: "CA".into(),
            purpose_code: "240".into(),
            case_number: "24-001".into(),
            reason: "stolen vehicle seen near the school".into(),
            window_start: 10,
            window_end: 20,
            targets: vec!["CA0560100".into(), "CA0340000".into()],
            ..Default::default()
        }),
        ..QueryFacts::default()
    };
    let e = AuditEntry::for_query(Event::InboundQuery, Decision::Refused, 30, &facts);
    assert_eq!(
        (e.event, e.decision, e.at),
        (Event::InboundQuery, Decision::Refused, 30)
    );
    assert_eq!(
        e.query_id.as_deref(),
        Some("abababababababababababababababab")
    );
    assert_eq!(e.plate_state.as_deref(), Some("CA"));
    assert_eq!(e.target.as_deref(), Some("CA0560100,CA0340000"));
    assert_eq!(e.warrant_ref, None, "an empty warrant is not recorded");
    assert_eq!((e.window_start, e.window_end), (Some(10), Some(20)));
}

#[test]
fn filters_select_by_every_field_and_print_as_typed() {
    let mut e = AuditEntry::new(100, Event::InboundQuery, Decision::Answered);
    e.requester_ori = Some("CA0340000".into());
    e.requester_user = Some("inv".into());
    e.purpose = Some("240".into());
    let all = Filter::default();
    assert!(all.matches(&e));
    assert_eq!(all.to_string(), "none (every entry)");
    let f = Filter {
        event: Some(Event::InboundQuery),
        since: Some(100),
        until: Some(101),
        requester_ori: Some("CA0340000".into()),
        user: Some("inv".into()),
        purpose: Some("240".into()),
    };
    assert!(f.matches(&e));
    assert!(
        f.to_string().starts_with("event=inbound_query since="),
        "{f}"
    );
    for miss in [
        Filter {
            event: Some(Event::OutboundQuery),
            ..Filter::default()
        },
        Filter {
            until: Some(100),
            ..Filter::default()
        },
        Filter {
            user: Some("other".into()),
            ..Filter::default()
        },
    ] {
        assert!(!miss.matches(&e), "{miss}");
    }
}

#[test]
fn exports_keep_stored_names_and_quote_what_csv_needs() {
    let mut e = AuditEntry::new(0, Event::Export, Decision::Ok);
    e.detail = Some("a, \"quoted\"\nline".into());
    let rows = [stored(1, e)];
    let csv = to_csv(&rows);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("seq,at,event,decision,"));
    assert!(csv.contains(",export,ok,"), "{csv}");
    assert!(csv.contains("\"a, \"\"quoted\"\"\nline\""), "{csv}");
    let json = to_json_line(&rows[0]).unwrap();
    assert!(json.contains("\"at\":\"1970-01-01T00:00:00Z\""), "{json}");
    assert!(json.contains("\"event\":\"export\""), "{json}");
}
