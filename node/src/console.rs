//! The web console: the node's front end for its people, on its own HTTPS listener
//! (`[console]` in `node.toml`, off unless configured).
//!
//! - **Keys stay in browsers.** At enrollment the browser makes a non-extractable P-256
//!   key (WebCrypto) and proves it with a one-time code an admin issued (`user invite`); a
//!   supervisor approves it (never their own), and the node's agency CA certifies that
//!   public key. Every search is signed in the browser over exactly the bytes the node
//!   then checks, endorses and sends: the person's signature is theirs alone.
//! - **Two factors.** Signing in takes a signature by that key over a fresh challenge and
//!   an RFC 6238 code; 5 failures in 15 minutes lock sign-in (logged, alerted); a session
//!   locks after 30 minutes idle. Cookies are `__Host-`, HttpOnly, Secure,
//!   SameSite=Strict; every state-changing form carries the session's token.
//! - **Pages by role.** Investigators search (the node's [`Node::search`], the same path
//!   as the CLI), see results, export them (logged) and their history; supervisors approve
//!   enrollments, record training, disable accounts, review sampled searches and place
//!   evidence holds; auditors and supervisors read, filter and export the audit log and
//!   the reports (transparency, search age with its chart, anomalies). Auditors cannot
//!   search. Admins see the node at a glance and flip its switches, propose, sign and
//!   revoke agreements, see each registration proved in the registry log, and load hot
//!   lists.
//!
//! HTML comes from maud templates (escaped by default); scripts and styles are compiled
//! in and served from the console itself, under a strict Content-Security-Policy.

// Handlers return a page either way (`Result<Response, Response>`); boxing the error page
// would buy nothing on a request path.
#![allow(clippy::result_large_err)]

mod administer;
mod agreements;
mod assets;
mod auth;
mod enroll;
mod hotlists;
mod ingest;
mod pages;
mod records;
mod registration;
mod search;
mod state;
mod supervise;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::Error;
use crate::config::ConsoleConfig;
use crate::node::Node;

use state::Console;

/// A console being served.
pub struct RunningConsole {
    /// The address actually bound.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl RunningConsole {
    /// Stop accepting connections.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for RunningConsole {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serve the console of `node` as `cfg` says.
pub async fn start(node: Arc<Node>, cfg: &ConsoleConfig) -> Result<RunningConsole, Error> {
    cfg.person_ca(node.ori())?;
    let (cert, key) = match (&cfg.cert, &cfg.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => (node.cfg.tls.cert.clone(), node.cfg.tls.key.clone()),
        _ => {
            return Err(Error::Usage(
                "[console] cert and key go together: set both or neither".into(),
            ));
        }
    };
    let identity = alpr_runtime::tls::TlsIdentity::load(&cert, &key)?;
    let tls = alpr_runtime::tls::web_server_config(&identity)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::io(format!("console {}", cfg.listen), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("console", e))?;
    let console = Arc::new(Console {
        node,
        cfg: cfg.clone(),
        sessions: Default::default(),
        challenges: Default::default(),
        setups: Default::default(),
        pending: Default::default(),
        done: Default::default(),
        agreements: Default::default(),
        used_steps: Default::default(),
    });
    let stop = alpr_runtime::web::serve_https(listener, tls, router(console), "console");
    tracing::info!(%addr, "console serving");
    Ok(RunningConsole {
        addr,
        stop: Some(stop),
    })
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(auth::home))
        .route("/assets/console.js", get(assets::script))
        .route("/assets/console.css", get(assets::style))
        .route("/enroll", get(enroll::form).post(enroll::submit))
        .route("/signin", get(auth::signin_form))
        .route("/signin/start", post(auth::signin_start))
        .route("/signin/finish", post(auth::signin_finish))
        .route("/signin/setup", post(auth::signin_setup))
        .route("/signout", post(auth::signout))
        .route("/search", get(search::form))
        .route("/search/prepare", post(search::prepare))
        .route("/search/send", post(search::send))
        .route("/search/result/{id}", get(search::result))
        .route("/search/result/{id}/export.csv", get(search::export))
        .route("/history", get(search::history))
        .route("/supervisor", get(enroll::supervisor))
        .route("/supervisor/approve", post(enroll::approve))
        .route("/supervisor/accounts", get(supervise::accounts))
        .route("/supervisor/account", post(supervise::account))
        .route("/supervisor/reviews", get(supervise::reviews))
        .route("/supervisor/review", post(supervise::review))
        .route("/supervisor/holds", get(supervise::holds))
        .route("/supervisor/hold", post(supervise::hold))
        .route("/admin", get(administer::page))
        .route("/admin/switch", post(administer::switch))
        .route("/admin/ingest", get(ingest::page).post(ingest::ingest))
        .route("/admin/hotlists", get(hotlists::page))
        .route("/admin/hotlists/load", post(hotlists::load))
        .route("/admin/hotlists/withdraw", post(hotlists::withdraw))
        .route("/admin/agreements", get(agreements::list))
        .route("/admin/agreements/draft", post(agreements::draft))
        .route("/admin/agreements/open", post(agreements::open))
        .route("/admin/agreements/sign", post(agreements::sign))
        .route("/admin/agreements/declare", post(agreements::declare))
        .route(
            "/admin/agreements/declare/sign",
            post(agreements::declare_sign),
        )
        .route("/admin/agreements/file/{id}", get(agreements::file))
        .route("/admin/agreements/proof/{id}", get(registration::page))
        .route(
            "/admin/agreements/proof/{id}/proof.json",
            get(registration::download),
        )
        .route(
            "/admin/agreements/revoke",
            get(agreements::revoke_form).post(agreements::revoke_prepare),
        )
        .route(
            "/admin/agreements/revoke/send",
            post(agreements::revoke_send),
        )
        .route("/audit", get(records::audit_log))
        .route("/audit/export.csv", get(records::export))
        .route("/audit/reports", get(records::reports))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(console)
}

/// Every response: a strict CSP (scripts and styles from the console only, no inline
/// code, no framing), no caching, no sniffing, no referrer, HTTPS only.
async fn secure_headers(mut r: Response) -> Response {
    alpr_runtime::web::secure_headers(
        r.headers_mut(),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    r
}
