//! The `alpr-pki` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::claims::{AgencyClaims, AgencyKind, Jurisdiction, Role};
use crate::issue::{self, Authority, LeafSpec, Revoked};
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
    /// Revoke a certificate and reissue its CA's CRL (agencies/<ORI>/ca.crl or root.crl).
    Revoke {
        /// The certificate file to revoke.
        cert: PathBuf,
        /// The agency whose CA issued it; omit for certificates issued by the root.
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
    let mut out = Vec::new();
    match cli.command {
        Command::Root { name, days } => {
            let root = issue::new_root(&name, days)?;
            root.write(&l.root_cert(), &l.root_key())?;
            let a = Authority::from_issued(&root)?;
            issue::write_file(&l.root_crl(), issue::new_crl(&a, &[], 1, 30)?.as_bytes())?;
            out.push(format!("wrote {}", l.root_cert().display()));
        }
        Command::Agency {
            ori,
            name,
            jurisdiction,
            kind,
            days,
        } => {
            let claims = AgencyClaims::new(
                &ori,
                &name,
                jurisdiction.parse::<Jurisdiction>()?,
                kind.parse::<AgencyKind>()?,
            )?;
            let root = Authority::load(&l.root_cert(), &l.root_key())?;
            let ca = issue::new_agency_ca(&root, &claims, days)?;
            ca.write(&l.agency_ca_cert(&ori), &l.agency_ca_key(&ori))?;
            let a = Authority::from_issued(&ca)?;
            issue::write_file(
                &l.agency_crl(&ori),
                issue::new_crl(&a, &[], 1, 30)?.as_bytes(),
            )?;
            out.push(format!("wrote {}", l.agency_ca_cert(&ori).display()));
        }
        Command::Node { ori, hosts, days } => {
            let ca = Authority::load(&l.agency_ca_cert(&ori), &l.agency_ca_key(&ori))?;
            let spec = LeafSpec {
                role: Role::Node,
                user: None,
                agency: ca.agency()?,
                jurisdiction: None,
                hosts,
                days,
            };
            let (c, k) = l.node(&ori);
            issue::new_leaf(&ca, &spec)?.write(&c, &k)?;
            out.push(format!("wrote {}", c.display()));
        }
        Command::Person {
            ori,
            role,
            user,
            days,
        } => {
            let role: Role = role.parse()?;
            if !role.is_person() || role == Role::Regulator {
                return Err(Error::InvalidClaim(format!(
                    "{role} is not an agency person role (investigator, supervisor, admin, auditor)"
                )));
            }
            let ca = Authority::load(&l.agency_ca_cert(&ori), &l.agency_ca_key(&ori))?;
            let spec = LeafSpec {
                role,
                user: Some(user.clone()),
                agency: ca.agency()?,
                jurisdiction: None,
                hosts: vec![],
                days,
            };
            let (c, k) = l.person(&ori, &user);
            issue::new_leaf(&ca, &spec)?.write(&c, &k)?;
            out.push(format!("wrote {}", c.display()));
        }
        Command::Broker { hosts, days } => {
            let root = Authority::load(&l.root_cert(), &l.root_key())?;
            let spec = LeafSpec {
                role: Role::Broker,
                user: None,
                agency: None,
                jurisdiction: None,
                hosts,
                days,
            };
            let (c, k) = l.broker();
            issue::new_leaf(&root, &spec)?.write(&c, &k)?;
            out.push(format!("wrote {}", c.display()));
        }
        Command::Regulator {
            user,
            jurisdiction,
            days,
        } => {
            let root = Authority::load(&l.root_cert(), &l.root_key())?;
            let spec = LeafSpec {
                role: Role::Regulator,
                user: Some(user.clone()),
                agency: None,
                jurisdiction: Some(jurisdiction.parse()?),
                hosts: vec![],
                days,
            };
            let (c, k) = l.regulator(&user);
            issue::new_leaf(&root, &spec)?.write(&c, &k)?;
            out.push(format!("wrote {}", c.display()));
        }
        Command::Revoke { cert, ori } => {
            let der = crate::read_cert_chain(&cert)?.remove(0);
            let (_, serial, _, _) = crate::verify::inspect(&der)?;
            let (ca_cert, ca_key, crl, list) = match &ori {
                Some(o) => (
                    l.agency_ca_cert(o),
                    l.agency_ca_key(o),
                    l.agency_crl(o),
                    l.agency_dir(o).join("revoked.txt"),
                ),
                None => (
                    l.root_cert(),
                    l.root_key(),
                    l.root_crl(),
                    l.dir().join("revoked.txt"),
                ),
            };
            let ca = Authority::load(&ca_cert, &ca_key)?;
            let mut text = std::fs::read_to_string(&list).unwrap_or_default();
            text.push_str(&format!("{serial} {}\n", crate::now_unix()));
            let revoked = parse_revoked(&text, &list)?;
            issue::write_file(&list, text.as_bytes())?;
            let pem = issue::new_crl(&ca, &revoked, revoked.len() as u64 + 1, 30)?;
            issue::write_file(&crl, pem.as_bytes())?;
            out.push(format!("revoked serial {serial}; wrote {}", crl.display()));
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

fn parse_revoked(text: &str, path: &std::path::Path) -> Result<Vec<Revoked>, Error> {
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || Error::Pem {
            path: path.into(),
            reason: format!("line {}: expected `<serial-hex> <unix-time>`", i + 1),
        };
        let (s, t) = line.split_once(' ').ok_or_else(bad)?;
        let serial = (0..s.len())
            .step_by(2)
            .map(|j| s.get(j..j + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        out.push(Revoked {
            serial,
            revoked_at: t.trim().parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}
