use super::*;

#[test]
fn formats_parse_from_their_names_and_nothing_else() {
    assert_eq!("jsonl".parse::<Format>().unwrap(), Format::Jsonl);
    assert_eq!("csv".parse::<Format>().unwrap(), Format::Csv);
    assert_eq!("log".parse::<Format>().unwrap(), Format::Log);
    assert_eq!(Format::Csv.to_string(), "csv");
    assert_eq!(Format::Log.to_string(), "log");
    let e = "xml".parse::<Format>().unwrap_err();
    assert_eq!(e.to_string(), "format \"xml\" must be jsonl, csv or log");
}

#[test]
fn an_export_writes_the_selected_entries_and_logs_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = store::AuditLog::open(&path, None).unwrap();
    log.append(vec![
        AuditEntry::new(10, Event::InboundQuery, Decision::Answered),
        AuditEntry::new(11, Event::Purge, Decision::Ok),
    ])
    .unwrap();
    let out = dir.path().join("out.csv");
    let f = Filter {
        event: Some(Event::InboundQuery),
        ..Filter::default()
    };
    assert_eq!(
        export_audit(&path, None, &f, Format::Csv, &out, "auditor-1").unwrap(),
        1
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(",inbound_query,answered,"), "{text}");
    let all = store::audit::list(&store::AuditDb::open(&path).unwrap(), None).unwrap();
    let last = &all.last().unwrap().entry;
    assert_eq!((last.event, last.decision), (Event::Export, Decision::Ok));
    assert_eq!(last.requester_user.as_deref(), Some("auditor-1"));
    assert!(
        last.detail
            .as_deref()
            .unwrap()
            .contains("event=inbound_query")
    );
    assert_eq!(
        store::audit::verify(&store::AuditDb::open(&path).unwrap(), None)
            .unwrap()
            .entries,
        3
    );
}
