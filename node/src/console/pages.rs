//! The console's page frame and shared pieces: layout with a skip link and role-based
//! navigation, messages, dates people read.

use alpr_pki::Role;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::state::Session;

/// A handler's outcome: a page either way (an error is a page too, never a bare status).
pub type Page = Result<Response, Response>;

/// The page frame.
pub fn layout(ori: &str, title: &str, who: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — ALPR console, " (ori) }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body data-ori=(ori) {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/" { "ALPR console" }
                    span.agency { (ori) }
                    @if let Some(s) = who {
                        nav aria-label="Main" {
                            @match s.role {
                                Role::Investigator => {
                                    a href="/search" { "Search" }
                                    a href="/history" { "My searches" }
                                }
                                Role::Supervisor => {
                                    a href="/supervisor" { "Enrollments" }
                                    a href="/supervisor/accounts" { "Accounts" }
                                    a href="/supervisor/reviews" { "Reviews" }
                                    a href="/supervisor/holds" { "Holds" }
                                    a href="/audit" { "Audit log" }
                                    a href="/audit/reports" { "Reports" }
                                }
                                Role::Admin => {
                                    a href="/admin" { "Node" }
                                    a href="/admin/agreements" { "Agreements" }
                                    a href="/admin/hotlists" { "Hot lists" }
                                }
                                _ => {
                                    a href="/audit" { "Audit log" }
                                    a href="/audit/reports" { "Reports" }
                                }
                            }
                        }
                        form.signout method="post" action="/signout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span { (s.user) " (" (s.role.as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A rendered page with `status`.
pub fn respond(status: StatusCode, m: Markup) -> Response {
    (status, Html(m.into_string())).into_response()
}

/// A page that says one thing (an error, a refusal, a confirmation).
pub fn message(
    ori: &str,
    status: StatusCode,
    title: &str,
    text: &str,
    who: Option<&Session>,
) -> Response {
    let class = if status.is_success() {
        "notice"
    } else {
        "error"
    };
    respond(
        status,
        layout(
            ori,
            title,
            who,
            html! {
                p class=(class) role="alert" { (text) }
                p { a href="/" { "Back to the start page" } }
            },
        ),
    )
}

/// What the console could not do for a reason of its own (database, disk): said on a
/// page, logged for the operators.
pub fn internal(ori: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console request failed");
    message(
        ori,
        StatusCode::SERVICE_UNAVAILABLE,
        "Not available",
        &format!(
            "The node could not complete this request ({e}). Nothing was sent; try again, or tell your administrator."
        ),
        None,
    )
}

/// Unknown address.
pub async fn not_found() -> Response {
    respond(
        StatusCode::NOT_FOUND,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Not found — ALPR console" } link rel="stylesheet" href="/assets/console.css"; }
                body { main id="main" { h1 { "Not found" } p { "There is no such page. " a href="/" { "Start page" } } } }
            }
        },
    )
}

/// A time as people read it (UTC).
pub use alpr_pki::fmt_when as when;

/// The value of a `datetime-local` field for `t` (UTC).
pub fn datetime_value(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// A time as an HTML `<time>` element: its UTC text, which the console's script shows in
/// the browser's own time zone (keeping the UTC text as its tooltip).
pub fn time(t: i64) -> Markup {
    html! { time datetime=(alpr_pki::fmt_time(t)) { (when(t)) } }
}

/// The field `name`'s time as the browser sent it: its hidden twin `<name>_utc` (RFC 3339,
/// which the console's script fills from the local time typed), else the field itself read
/// as UTC (a browser without the script); `label` names the field in errors.
pub fn form_datetime(f: &super::auth::Form, name: &str, label: &str) -> Result<i64, String> {
    let utc = f.get(&format!("{name}_utc")).trim();
    if !utc.is_empty() {
        return time::OffsetDateTime::parse(utc, &time::format_description::well_known::Rfc3339)
            .map(|d| d.unix_timestamp())
            .map_err(|_| format!("{label}: {utc:?} is not a date and time"));
    }
    parse_datetime(label, f.get(name))
}

/// The UTC value to put back into the `datetime-local` field `name` of a form shown again
/// (marked `data-utc` for the script to show in local time): what was sent, else
/// `default`.
pub fn datetime_again(f: &super::auth::Form, name: &str, default: i64) -> String {
    match form_datetime(f, name, name) {
        Ok(t) if !f.get(name).trim().is_empty() => datetime_value(t),
        _ if !f.get(name).trim().is_empty() => f.get(name).trim().to_owned(),
        _ => datetime_value(default),
    }
}

/// Parse a `datetime-local` field (read as UTC).
pub fn parse_datetime(field: &str, v: &str) -> Result<i64, String> {
    let v = v.trim();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let fmt_s = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(v, fmt)
        .or_else(|_| time::PrimitiveDateTime::parse(v, fmt_s))
        .map(|d| d.assume_utc().unix_timestamp())
        .map_err(|_| format!("{field}: {v:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"))
}
