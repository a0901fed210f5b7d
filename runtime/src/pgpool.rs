//! Connections to a PostgreSQL database for a party's store: what broker replicas share
//! their registry and routing log in, and what the largest agencies' nodes keep their reads
//! in. The client is the synchronous `postgres` crate (rust-postgres over tokio-postgres),
//! which cannot block inside an async task, so a small pool of worker threads owns the
//! connections and runs each call ([`Pool::call`]); a worker whose connection broke
//! reconnects before its next call. With a CA file the connection is TLS (rustls, ring) and
//! the server's certificate and host name are verified.

use std::sync::{Arc, Mutex, mpsc};

use postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::Error;

fn pg_err(what: impl std::fmt::Display) -> Error {
    Error::Postgres(what.to_string())
}

/// Parse a connection string (libpq `key=value` form or a `postgresql://` URL), naming
/// what is wrong with it.
pub fn parse(url: &str) -> Result<postgres::Config, Error> {
    url.parse::<postgres::Config>()
        .map_err(|e| Error::PostgresConfig(format!("postgres connection string: {e}")))
}

/// How connections are made: in the clear, or over TLS with the server verified.
#[derive(Clone)]
pub enum Connector {
    /// Not encrypted.
    Plain,
    /// TLS (rustls, ring), the server's certificate and host name verified.
    Tls(MakeRustlsConnect),
}

/// The connector for a server whose certificate `ca` (a PEM file) issued; plain without.
pub fn connector(ca: Option<&std::path::Path>) -> Result<Connector, Error> {
    let Some(ca) = ca else {
        return Ok(Connector::Plain);
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = alpr_pki::read_cert_chain(ca)?;
    if certs.is_empty() {
        return Err(Error::PostgresConfig(format!(
            "postgres_ca {}: no certificate in it",
            ca.display()
        )));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| Error::PostgresConfig(format!("postgres_ca {}: {e}", ca.display())))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| pg_err(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Tls(MakeRustlsConnect::new(cfg)))
}

/// Connect (from a thread that is not running async tasks). With TLS the connection is
/// encrypted or not made, whatever the connection string's `sslmode` says.
pub fn connect(config: &postgres::Config, tls: &Connector) -> Result<Client, Error> {
    let made = match tls {
        Connector::Plain => config.connect(NoTls),
        Connector::Tls(t) => {
            let mut c = config.clone();
            c.ssl_mode(postgres::config::SslMode::Require);
            c.connect(t.clone())
        }
    };
    made.map_err(|e| pg_err(format!("cannot connect: {}", one_line(&e))))
}

/// The database a connection string names and the hosts it is on, for status lines and
/// errors: `PostgreSQL database NAME on HOST, HOST`.
pub fn describe(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    format!(
        "PostgreSQL database {} on {}",
        config.get_dbname().unwrap_or("(default)"),
        hosts.join(", ")
    )
}

/// An error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s.replace('\n', " ")
}

/// A PostgreSQL error as one line: the server's own message (with its detail) where there
/// is one.
pub fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{}: {detail}", d.message()),
            None => d.message().to_owned(),
        },
        None => one_line(e),
    }
}

/// One pooled connection and the statements prepared on it, kept for its life: a statement
/// prepared once is planned once when the session plans generically (see
/// [`Pool::open_with`]), which matters for a query over many partitions.
pub struct Conn {
    client: Client,
    prepared: std::collections::HashMap<String, postgres::Statement>,
}

impl Conn {
    /// The statement for `sql` (with parameter `types`), prepared on this connection the
    /// first time it is asked for.
    pub fn prepared(
        &mut self,
        sql: &str,
        types: &[postgres::types::Type],
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare_typed(sql, types)?;
        self.prepared.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

type Job = Box<dyn FnOnce(Result<&mut Conn, Error>) + Send>;

/// A pool of connections to one PostgreSQL database, each owned by a worker thread.
#[derive(Debug, Clone)]
pub struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl Pool {
    /// Connect `workers` connections to the database of `url` (TLS with `ca`), each on a
    /// worker thread named `name-i`. Fails (with the server's reason) when the database
    /// cannot be reached. `name` also names the database in the alert a worker raises when
    /// it cannot reconnect.
    pub fn open(
        url: &str,
        ca: Option<&std::path::Path>,
        workers: usize,
        name: &'static str,
    ) -> Result<Self, Error> {
        Self::open_with(url, ca, workers, name, "")
    }

    /// [`Pool::open`], running `session` (SQL, e.g. `SET plan_cache_mode = …`) on every
    /// connection as it is made, before its first call.
    pub fn open_with(
        url: &str,
        ca: Option<&std::path::Path>,
        workers: usize,
        name: &'static str,
        session: &'static str,
    ) -> Result<Self, Error> {
        let config = parse(url)?;
        let tls = connector(ca)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel();
        let workers = workers.max(1);
        for i in 0..workers {
            let rx = rx.clone();
            let config = config.clone();
            let tls = tls.clone();
            let ready = ready_tx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || worker(&config, &tls, session, &rx, &ready, name))
                .map_err(|e| pg_err(format!("cannot start a worker: {e}")))?;
        }
        drop(ready_tx);
        for _ in 0..workers {
            ready_rx
                .recv()
                .map_err(|_| pg_err("a worker stopped while connecting"))??;
        }
        Ok(Self { jobs })
    }

    /// Run `f` on one of the pool's connections and wait for its result.
    pub fn call<R: Send + 'static, E: From<Error> + Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |c| {
                let _ = tx.send(c.map_err(E::from).and_then(f));
            }))
            .map_err(|_| pg_err("the connection pool stopped"))?;
        rx.recv()
            .map_err(|_| E::from(pg_err("a connection worker stopped")))?
    }
}

/// A connection with `session` run on it.
fn connect_conn(config: &postgres::Config, tls: &Connector, session: &str) -> Result<Conn, Error> {
    let mut client = connect(config, tls)?;
    if !session.is_empty() {
        client
            .batch_execute(session)
            .map_err(|e| pg_err(format!("session setup: {}", message(&e))))?;
    }
    Ok(Conn {
        client,
        prepared: Default::default(),
    })
}

fn worker(
    config: &postgres::Config,
    tls: &Connector,
    session: &str,
    rx: &Mutex<mpsc::Receiver<Job>>,
    ready: &mpsc::Sender<Result<(), Error>>,
    name: &str,
) {
    let mut client = match connect_conn(config, tls, session) {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            Some(c)
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match connect_conn(config, tls, session) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "ALERT: {name} database unreachable");
                    None
                }
            };
        }
        match client.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err(pg_err("database unreachable"))),
        }
    }
}
