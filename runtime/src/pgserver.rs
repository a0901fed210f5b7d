//! A PostgreSQL server of its own, in a temporary directory, on a free loopback port: what
//! the tests, the benchmarks and the demo federation run broker replicas on. It is Debian's
//! `postgresql` package (`initdb`, `pg_ctl`, `createdb` under `/usr/lib/postgresql/*/bin`
//! or on `PATH`), a real server, never a stand-in. Started with `fsync` on (the durability
//! the tests assert is the server's own) and stopped when dropped.
//!
//! PostgreSQL refuses to run as root; run as root (as CI does), the server runs as the
//! `postgres` user the package creates, through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The database user the server is initialized with (trust authentication on loopback).
pub const USER: &str = "alpr";

/// A running local server; stopped (immediately) when dropped.
#[derive(Debug)]
pub struct LocalPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn err(what: impl std::fmt::Display) -> Error {
    Error::LocalPostgres(what.to_string())
}

/// The directory holding `initdb` and `pg_ctl`: Debian's newest version, else `PATH`.
fn bin_dir() -> Result<PathBuf, Error> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some(b) = versions.pop() {
        return Ok(b);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        })
        .ok_or_else(|| {
            err("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package (.ci/run does)")
        })
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str, user: &str) -> Result<u32, Error> {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .map_err(|e| err(format!("id {flag} {user}: {e}")))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            err(format!(
                "no user {user} (the postgresql package creates it)"
            ))
        })
}

fn chown_to_postgres(path: &Path) -> Result<(), Error> {
    let (uid, gid) = (id_of("-u", "postgres")?, id_of("-g", "postgres")?);
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| err(format!("chown {}: {e}", path.display())))
}

fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("no free port: {e}")))
}

impl LocalPostgres {
    /// Create a cluster in a new temporary directory and start it on a free loopback port.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(None)
    }

    /// [`LocalPostgres::start`] serving TLS only on its TCP port, with this certificate
    /// chain and key (PEM): a client that does not encrypt is refused (`pg_hba.conf`
    /// `hostnossl … reject`).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Self, Error> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Result<Self, Error> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("alpr-pg-")
            .tempdir()
            .map_err(|e| err(format!("temporary directory: {e}")))?;
        let as_postgres = running_as_root();
        if as_postgres {
            chown_to_postgres(dir.path())?;
        }
        let mut me = Self {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        let data = me.data_dir();
        me.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let mut extra = String::new();
        if let Some((cert, key)) = tls {
            let (cert_file, key_file) = (data.join("server.crt"), data.join("server.key"));
            let write = |path: &Path, text: &str, mode: u32| -> Result<(), Error> {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(path, text)
                    .and_then(|()| {
                        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    })
                    .map_err(|e| err(format!("{}: {e}", path.display())))?;
                if me.as_postgres {
                    chown_to_postgres(path)?;
                }
                Ok(())
            };
            write(&cert_file, cert, 0o644)?;
            write(&key_file, key, 0o600)?;
            write(
                &data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
                0o600,
            )?;
            extra = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_file.display(),
                key_file.display()
            );
        }
        // A port can be taken between choosing and binding: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            me.port = free_port()?;
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{extra}",
                me.port,
                me.dir.path().display()
            );
            match me.run(
                "pg_ctl",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-l",
                    &me.dir.path().join("server.log").to_string_lossy(),
                    "-o",
                    &opts,
                    "-w",
                    "start",
                ],
            ) {
                Ok(()) => return Ok(me),
                Err(e) => last = e.to_string(),
            }
        }
        Err(err(format!(
            "the server did not start: {last}; see {}",
            me.dir.path().join("server.log").display()
        )))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), Error> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| err(format!("{}: {e}", exe.display())))?;
        if !out.status.success() {
            return Err(err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            )));
        }
        Ok(())
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Create database `name` and return its connection string.
    pub fn create_database(&self, name: &str) -> Result<String, Error> {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", USER, name],
        )?;
        Ok(self.url(name))
    }

    /// The connection string of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname={name} connect_timeout=5",
            self.port
        )
    }

    /// Stop the server at once (as a crash would; nothing is flushed beyond what was
    /// committed).
    pub fn stop(&self) -> Result<(), Error> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
