//! The admin's ingest page: a CSV file of reads from this agency's cameras (the format of
//! `alpr-node ingest`: a header naming `plate,captured_at,camera_id,latitude,longitude`
//! and optionally `plate_state`, or those columns in that order), stored through the same
//! code as the command — every row checked, rejected rows listed with their line and
//! reason (and kept for the admin's page), hot-list hits raised, the outcome logged as an
//! `ingest` entry naming the admin and the file. For manual imports: camera systems feed
//! the node with the command.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use maud::html;

use super::auth::{self, on_node, read_form_up_to};
use super::pages::{Page, layout, message, respond};
use super::state::Console;

/// Largest file, bytes (about 80,000 reads).
const MAX_INGEST_FILE: usize = 8 * 1024 * 1024;
/// Largest form: the file URL-encoded (up to three bytes for one) and the other fields.
const MAX_INGEST_FORM: usize = 3 * MAX_INGEST_FILE + 64 * 1024;
/// Rejected rows listed on the result page.
const LISTED: usize = 50;

/// `GET /admin/ingest`.
pub async fn page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Ingest", "ingest reads")?;
    let ori = c.node.ori().to_owned();
    Ok(respond(
        StatusCode::OK,
        layout(
            &ori,
            "Ingest reads",
            Some(&s),
            html! {
                p { "A CSV file of this agency's reads, as " code { "alpr-node ingest" } " takes it: a header naming "
                    code { "plate,captured_at,camera_id,latitude,longitude" } " (and " code { "plate_state" } " if known), times in RFC 3339. Every row is checked; rejected rows are listed with their line. At most "
                    (MAX_INGEST_FILE / (1024 * 1024)) " MiB here; larger files and camera feeds go through the command." }
                p #key-status role="status" {}
                form #ingest-form method="post" action="/admin/ingest" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="filename" value="";
                    label for="ingest-file" { "CSV file" }
                    input #ingest-file type="file" accept=".csv,text/csv";
                    label for="ingest-csv" { "Or paste its rows" }
                    textarea #ingest-csv name="csv" rows="8" required {}
                    button type="submit" { "Ingest" }
                }
                p { a href="/admin" { "Back to the node" } }
            },
        ),
    ))
}

/// `POST /admin/ingest`.
pub async fn ingest(State(c): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Page {
    // Signed in as an admin before a body of up to 8 MiB is read.
    let s = auth::session(&c, &headers).await?;
    auth::admins_only(&c, &s, "Ingest", "ingest reads")?;
    let f = read_form_up_to(&c, body, MAX_INGEST_FORM).await?;
    let s = auth::session_post(&c, &headers, &f).await?;
    auth::admins_only(&c, &s, "Ingest", "ingest reads")?;
    let ori = c.node.ori().to_owned();
    let csv = f.get("csv").to_owned();
    if csv.len() > MAX_INGEST_FILE {
        return Err(message(
            &ori,
            StatusCode::PAYLOAD_TOO_LARGE,
            "Ingest",
            &format!(
                "The file holds {} bytes, over the {} MiB this page takes: nothing was ingested. Use alpr-node ingest on the node's host.",
                csv.len(),
                MAX_INGEST_FILE / (1024 * 1024)
            ),
            Some(&s),
        ));
    }
    if csv.trim().is_empty() {
        return Err(message(
            &ori,
            StatusCode::BAD_REQUEST,
            "Ingest",
            "The file is empty: nothing was ingested.",
            Some(&s),
        ));
    }
    let file = match f.get("filename").trim() {
        "" => "pasted rows".to_owned(),
        name => name.chars().filter(|c| !c.is_control()).take(200).collect(),
    };
    let source = format!("{file} (web console upload by {}@{ori})", s.user);
    let user = s.user.clone();
    let done = on_node(&c, move |n| {
        n.ingest_file_by(
            Some(&user),
            &source,
            std::io::Cursor::new(csv.into_bytes()),
            |_| {},
            None,
        )
    })
    .await;
    let r = match done {
        Ok(r) => r,
        Err(e) => {
            // Logged as an ingest error by the node; the admin reads why.
            return Err(message(
                &ori,
                StatusCode::BAD_REQUEST,
                "Ingest",
                &format!("Nothing more was ingested: {e}"),
                Some(&s),
            ));
        }
    };
    let rejected = r.report.rejects.len();
    Ok(respond(
        if r.report.accepted == 0 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        layout(
            &ori,
            "Ingested",
            Some(&s),
            html! {
                p class=(if rejected == 0 { "notice" } else { "error" }) role="status" { (r.summary) "." }
                @if !r.hits.is_empty() {
                    h2 { "Hot-list hits" }
                    ul { @for h in &r.hits { li { (h) } } }
                }
                @if rejected > 0 {
                    table {
                        caption { "Rejected rows" @if rejected > LISTED { " (the first " (LISTED) " of " (rejected) ")" } }
                        thead { tr { th scope="col" { "Line" } th scope="col" { "Why" } } }
                        tbody { @for j in r.report.rejects.iter().take(LISTED) { tr { td { (j.line) } td { (j.reason) } } } }
                    }
                    p { "Correct those rows and ingest the file again: rows already stored are skipped." }
                }
                p { a href="/admin/ingest" { "Ingest another file" } " · " a href="/admin" { "Back to the node" } }
            },
        ),
    ))
}
