//! The `alpr-pki` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::claims::{AgencyClaims, AgencyKind, Jurisdiction};
use crate::issue::Overwrite;
use crate::{Error, PkiLayout, fmt_time};

/// Issue and inspect the certificates of an ALPR federation.
///
/// Files are written under DIR in a fixed layout (root.crt, broker.crt,
/// agencies/<ORI>/ca.crt, agencies/<ORI>/node.crt, agencies/<ORI>/people/<user>.crt, ...).
/// Private keys are written beside their certificates; protect them.
#[derive(Parser, Debug)]
#[command(name = "alpr-pki", version)]
pub struct Cli {
    /// Directory holding the PKI files.
    #[arg(long, global = true, default_value = "pki", env = "ALPR_PKI_DIR")]
    pub dir: PathBuf,
    /// Replace existing certificate and key files (the old ones are kept beside them as
    /// `<name>.old-<unix time>`). Without it, nothing is ever overwritten.
    #[arg(long, global = true)]
    pub force: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `alpr-pki` subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the state root CA (root.crt, root.key).
    Root {
        /// Root name, e.g. "California DOJ ALPR Root".
        #[arg(long)]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Create an agency CA under the root, carrying the agency's claims.
    Agency {
        /// NCIC ORI, 9 characters, e.g. CA0560100.
        #[arg(long)]
        ori: String,
        /// Agency name.
        #[arg(long)]
        name: String,
        /// ISO 3166-2 jurisdiction, e.g. US-CA; `US` for federal agencies.
        #[arg(long)]
        jurisdiction: String,
        /// local, state, federal, tribal or private.
        #[arg(long)]
        kind: String,
        /// Validity in days.
        #[arg(long, default_value_t = 1825)]
        days: u32,
        /// Issue for the key of the agency's own signing request (made on the agency CA's
        /// machine with `alpr-pki request`); the agency then runs `alpr-pki crl`.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// With --csr: where to write the CA certificate (default: its place under --dir).
        #[arg(long, requires = "csr")]
        out: Option<PathBuf>,
    },
    /// Issue an agency's node certificate (server and client auth).
    Node {
        /// The agency's ORI.
        #[arg(long)]
        ori: String,
        /// DNS names or IPs the node serves on.
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Issue for the key of this signing request (made on the node's host with
        /// `alpr-pki request`) instead of generating a key here; the claims are the agency
        /// CA's, never the request's.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// With --csr: where to write the certificate (default: its place under --dir).
        #[arg(long, requires = "csr")]
        out: Option<PathBuf>,
    },
    /// Issue a person certificate (investigator, supervisor, admin, auditor).
    Person {
        /// The agency's ORI.
        #[arg(long)]
        ori: String,
        /// investigator, supervisor, admin or auditor.
        #[arg(long)]
        role: String,
        /// Badge number or login.
        #[arg(long)]
        user: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Issue for the key of this signing request (made by the person with
        /// `alpr-pki request`) instead of generating a key here.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// With --csr: where to write the certificate (default: its place under --dir).
        #[arg(long, requires = "csr")]
        out: Option<PathBuf>,
    },
    /// Write an agency CA's CRL (again) from its revocation list, signed with its own key
    /// (agencies/<ORI>/ca.key under --dir): the first CRL of a CA whose key was made on
    /// the agency's machine, or a refresh before the old one expires.
    Crl {
        /// The agency's ORI.
        #[arg(long)]
        ori: String,
    },
    /// Make a new private key (mode 0600; an existing file is never overwritten) and a
    /// certificate signing request for it, on the machine where the key will be used; give
    /// the request (never the key) to the issuer (`alpr-pki node|person --csr`).
    Request {
        /// Where to write the new private key.
        #[arg(long)]
        key: PathBuf,
        /// Where to write the request.
        #[arg(long)]
        out: PathBuf,
        /// A name for the issuer's eyes (the issued certificate's claims come from the
        /// issuer's own records).
        #[arg(long, default_value = "ALPR key")]
        name: String,
    },
    /// Issue the broker certificate (signed by the root).
    Broker {
        /// DNS names or IPs the broker serves on.
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue a regulator certificate (signed by the root).
    Regulator {
        /// Regulator's login.
        #[arg(long)]
        user: String,
        /// The state the regulator oversees, e.g. US-CA.
        #[arg(long)]
        jurisdiction: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke a certificate and reissue the CRL of the CA that issued it (found from the
    /// certificate itself: agencies/<ORI>/ca.crl or root.crl). Revoking twice is harmless.
    Revoke {
        /// The certificate file to revoke.
        cert: PathBuf,
        /// Refuse unless the certificate was issued by this agency's CA (a check; the
        /// issuer is always found from the certificate).
        #[arg(long)]
        ori: Option<String>,
    },
    /// Show a certificate's claims, serial and validity.
    Inspect {
        /// Certificate file.
        cert: PathBuf,
    },
}

/// Run the CLI; returns the lines to print.
pub fn run(cli: Cli) -> Result<Vec<String>, Error> {
    let l = PkiLayout::new(&cli.dir);
    let ow = if cli.force {
        Overwrite::KeepOld
    } else {
        Overwrite::Refuse
    };
    let mut out = Vec::new();
    let wrote = |p: PathBuf| format!("wrote {}", p.display());
    match cli.command {
        Command::Root { name, days } => out.push(wrote(l.create_root(&name, days, ow)?)),
        Command::Agency {
            ori,
            name,
            jurisdiction,
            kind,
            days,
            csr,
            out: to,
        } => {
            let claims = AgencyClaims::new(
                &ori,
                &name,
                jurisdiction.parse::<Jurisdiction>()?,
                kind.parse::<AgencyKind>()?,
            )?;
            match csr {
                None => out.push(wrote(l.create_agency(&claims, days, ow)?)),
                Some(csr) => {
                    let request = crate::issue::Request::load(&csr)?;
                    let path = to.unwrap_or_else(|| l.agency_ca_cert(&ori));
                    l.agency_cert_for(&claims, days, &request)?
                        .write_cert(&path, ow)?;
                    out.push(format!(
                        "wrote {} (give it, with root.crt, to the agency; it writes its CRL with `alpr-pki crl --ori {ori}`)",
                        path.display()
                    ));
                }
            }
        }
        Command::Crl { ori } => out.push(wrote(l.write_agency_crl(&ori)?)),
        Command::Node {
            ori,
            hosts,
            days,
            csr: None,
            ..
        } => out.push(wrote(l.issue_node(&ori, hosts, days, ow)?)),
        Command::Node {
            ori,
            hosts,
            days,
            csr: Some(csr),
            out: to,
        } => {
            let request = crate::issue::Request::load(&csr)?;
            let path = to.unwrap_or_else(|| l.node(&ori).0);
            l.node_cert_for(&ori, hosts, days, &request)?
                .write_cert(&path, ow)?;
            out.push(wrote(path));
        }
        Command::Person {
            ori,
            role,
            user,
            days,
            csr: None,
            ..
        } => out.push(wrote(l.issue_person(
            &ori,
            role.parse()?,
            &user,
            days,
            ow,
        )?)),
        Command::Person {
            ori,
            role,
            user,
            days,
            csr: Some(csr),
            out: to,
        } => {
            let request = crate::issue::Request::load(&csr)?;
            let path = to.unwrap_or_else(|| l.person(&ori, &user).0);
            l.person_cert_for(&ori, role.parse()?, &user, days, &request)?
                .write_cert(&path, ow)?;
            out.push(wrote(path));
        }
        Command::Request { key, out: to, name } => {
            let (csr, key_pem) = crate::issue::new_request(&name)?;
            // The key first: a request is useless without it, and neither is overwritten.
            if ow == Overwrite::Refuse && to.exists() {
                return Err(Error::Exists(to));
            }
            crate::issue::write_new(&key, key_pem.as_bytes(), true, ow)?;
            crate::issue::write_new(&to, csr.as_bytes(), false, ow)?;
            out.push(format!(
                "wrote {} (private key, 0600: keep it here) and {} (give this to the issuer)",
                key.display(),
                to.display()
            ));
        }
        Command::Broker { hosts, days } => out.push(wrote(l.issue_broker(hosts, days, ow)?)),
        Command::Regulator {
            user,
            jurisdiction,
            days,
        } => out.push(wrote(l.issue_regulator(
            &user,
            jurisdiction.parse()?,
            days,
            ow,
        )?)),
        Command::Revoke { cert, ori } => {
            let r = l.revoke(&cert, ori.as_deref())?;
            if r.already {
                out.push(format!(
                    "serial {} ({}) was already revoked by {}; {} unchanged",
                    r.serial,
                    cert.display(),
                    r.issuer,
                    r.crl.display()
                ));
            } else {
                out.push(format!(
                    "revoked serial {} ({}), issued by {}; wrote {} — copy it to every node and the broker",
                    r.serial,
                    cert.display(),
                    r.issuer,
                    r.crl.display()
                ));
            }
        }
        Command::Inspect { cert } => {
            let now = crate::now_unix();
            let trust = crate::TrustStore::load(&l.root_cert(), &l.all_crls()).ok();
            let chain = crate::read_cert_chain(&cert)?;
            for (i, der) in chain.iter().enumerate() {
                let (claims, serial, nb, na) = crate::verify::inspect(der)?;
                out.push(format!(
                    "serial {serial} valid {} .. {}  role={} ori={} agency={} jurisdiction={} kind={} user={}",
                    fmt_time(nb),
                    fmt_time(na),
                    claims.role.map(|r| r.to_string()).unwrap_or_else(|| "(CA)".into()),
                    claims.ori.unwrap_or_default(),
                    claims.name.unwrap_or_default(),
                    claims.jurisdiction.map(|j| j.to_string()).unwrap_or_default(),
                    claims.kind.map(|k| k.to_string()).unwrap_or_default(),
                    claims.user.unwrap_or_default(),
                ));
                let days_left = (na - now) / 86_400;
                if na <= now {
                    out.push(format!("  EXPIRED {} days ago", -days_left));
                } else if days_left < 30 {
                    out.push(format!("  WARNING: expires in {days_left} days; issue a replacement now (overlapping validity)"));
                }
                if i == 0 {
                    match trust.as_ref().map(|t| t.verify(&chain, now)) {
                        Some(Ok(id)) => out.push(format!(
                            "  status: valid, verifies to the state root as {}",
                            id.describe()
                        )),
                        Some(Err(Error::CertRevoked)) => {
                            out.push("  status: REVOKED (listed on a CRL)".into())
                        }
                        Some(Err(e)) => out.push(format!("  status: NOT VALID: {e}")),
                        None => out.push(format!(
                            "  status: unknown (no root under {})",
                            l.dir().display()
                        )),
                    }
                }
            }
        }
    }
    Ok(out)
}
