//! A local federation — state PKI, a broker and several agency nodes over real mutual TLS
//! on loopback — used by the demo (`examples/federation.rs`) and the end-to-end tests.
//!
//! Everything here drives the same library code the `alpr-pki`, `alpr-node` and
//! `alpr-broker` binaries run; config files are written to disk so the federation can be
//! inspected with those binaries afterwards.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balancer;
pub mod faults;
pub mod refusals;
pub mod replicas;
pub mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alpr_broker::{BrokerConfig, RunningBroker};
use alpr_node::audit::StoredEntry;
use alpr_node::config::{PeerConfig, PolicyConfig, TlsConfig};
use alpr_node::{NodeConfig, RunningNode, client};
use alpr_pki::issue::Overwrite;
use alpr_pki::{AgencyClaims, AgencyKind, PkiLayout, Role, Signer, TrustStore};
use alpr_proto::pb::node_inbound_client::NodeInboundClient;
use alpr_proto::pb::{Agreement, Query, RouteResponse, Signed};
use alpr_runtime::client::Target;
use alpr_runtime::tls::TlsIdentity;
use anyhow::{Context, Result, bail};
use prost::Message;
use tokio::net::TcpListener;

pub use alpr_node::client::SearchParams;

/// One agency of the federation.
#[derive(Clone, Debug)]
pub struct AgencySpec {
    /// ORI.
    pub ori: &'static str,
    /// Name.
    pub name: &'static str,
    /// Jurisdiction (`US-CA`, `US`).
    pub jurisdiction: &'static str,
    /// Kind (`local`, `federal`, ...).
    pub kind: &'static str,
}

/// The investigator user id the federation issues for an agency.
pub fn investigator_of(ori: &str) -> String {
    format!("inv-{}", ori.to_lowercase())
}

/// The supervisor user id the federation issues for an agency.
pub fn supervisor_of(ori: &str) -> String {
    format!("sup-{}", ori.to_lowercase())
}

/// A complete usage and privacy policy (all seven SB 34 elements) for the demo.
pub fn usage_policy(name: &str) -> alpr_node::config::UsagePolicy {
    alpr_node::config::UsagePolicy {
        authorized_purposes: "Locating stolen vehicles, wanted and missing persons, and vehicles tied to listed offenses".into(),
        authorized_users: format!("{name} sworn investigators approved by a sergeant, after ALPR privacy training every 12 months"),
        monitoring: "Every search is logged in a hash-chained audit log reviewed monthly by the ALPR administrator".into(),
        sharing: "Only with California public agencies under signed agreements naming purposes; never for immigration enforcement".into(),
        custodian: "Chief of Police, through the designated ALPR program administrator".into(),
        accuracy: "Hits are visually confirmed against the image and the plate before any action; errors are corrected on report".into(),
        retention: "Reads are kept 365 days unless held as evidence in a case, then purged by whole days automatically".into(),
    }
}

/// The admin user id the federation issues for an agency.
pub fn admin_of(ori: &str) -> String {
    format!("admin-{}", ori.to_lowercase())
}

/// A sealed query's key and its one ciphertext (`Endorsement.sealed_query`).
type SealedQuery = (alpr_proto::seal::QueryKey, Vec<u8>);

/// A running local federation.
pub struct Federation {
    /// Where its files live.
    pub dir: PathBuf,
    /// The PKI layout under `dir/pki`.
    pub pki: PkiLayout,
    /// Trust store (root + CRLs).
    pub trust: TrustStore,
    /// The broker.
    pub broker: RunningBroker,
    /// The nodes by ORI.
    pub nodes: BTreeMap<String, RunningNode>,
    /// On a broker store in PostgreSQL ([`Federation::start_replicated`]): the TCP load
    /// balancer the nodes reach the broker replicas through.
    pub balancer: Option<balancer::Balancer>,
    /// Node configs by ORI (also written to `dir/<ORI>/node.toml`).
    pub node_configs: BTreeMap<String, NodeConfig>,
    /// The reply keys of the boxes [`Federation::endorse`] sealed, by (query id, target),
    /// so that [`Federation::rogue_forward`] can open a sealed reply.
    reply_keys: std::sync::Mutex<BTreeMap<(Vec<u8>, String), alpr_proto::seal::ReplyKey>>,
    /// The query key and the one ciphertext of each query [`Federation::seal_box`] sealed,
    /// by query id, so that [`Federation::endorse_sealed`] attaches the matching one.
    sealed_queries: std::sync::Mutex<BTreeMap<Vec<u8>, SealedQuery>>,
    /// The stand-ins of [`Extras::failing`] and [`Extras::slow`], stopped with the
    /// federation.
    _stands: Vec<faults::Stand>,
    /// With `ALPR_TEST_READS=postgres`: the PostgreSQL server holding every node's reads
    /// ([`reads_backend`]), stopped with the federation (after its nodes).
    _reads_server: Option<alpr_runtime::pgserver::LocalPostgres>,
    _tmp: Option<tempfile::TempDir>,
}

/// A `tune` for the tests of what a node keeps on its own disk (encryption at rest, backup,
/// decommission's destroyed data key): its storage is SQLite encrypted at rest, as the
/// harness's default, also when `ALPR_TEST_READS=postgres` moves every other node's reads.
pub fn on_encrypted_sqlite(cfg: &mut NodeConfig) {
    let dir = cfg.data_dir.parent().unwrap_or(&cfg.data_dir).to_path_buf();
    if let Ok(kek) = kek_file(&dir, &cfg.ori) {
        cfg.storage = alpr_node::config::StorageConfig {
            kek_file: Some(kek),
            ..Default::default()
        };
    }
}

/// The read store the harness gives every node: `ALPR_TEST_READS=postgres` runs the
/// federation tests with every node's reads in PostgreSQL (one real server per federation,
/// one database per node; the nodes then keep them unencrypted, as a KEK and PostgreSQL
/// together are refused), anything else or unset: SQLite, encrypted at rest.
pub fn reads_backend() -> &'static str {
    match std::env::var("ALPR_TEST_READS").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

/// What [`Federation::start_full`] can add to a start.
#[derive(Default)]
pub struct Extras {
    /// Every byte the broker receives and sends recorded through this tap.
    pub tap: Option<alpr_runtime::wiretap::Wiretap>,
    /// The broker's store in this PostgreSQL database (a connection string), as in
    /// [`Federation::start_replicated`].
    pub postgres: Option<String>,
    /// Agencies with certificates, an admin, a published sealing key and a broker route
    /// but no node in this process: the route leads to a stand-in that fails as the
    /// [`faults::Fault`] says. Agreements with them are made as with any agency.
    pub failing: Vec<(AgencySpec, faults::Fault)>,
    /// Agencies (of those started) whose node the broker reaches over a slow link: every
    /// chunk of bytes either way delayed this long ([`faults::Stand::slow`]).
    pub slow: Vec<(String, Duration)>,
    /// The broker's deadline for one target's answer, ms (default 3000).
    pub deadline_ms: Option<u64>,
}

impl Federation {
    /// Build a fresh PKI, start a broker and one node per agency on loopback. With `keep`,
    /// files go to that directory (kept afterwards); otherwise to a temporary directory.
    /// `policy` gives each agency's node policy.
    pub async fn start(
        keep: Option<PathBuf>,
        agencies: &[AgencySpec],
        policy: impl Fn(&str) -> PolicyConfig,
    ) -> Result<Self> {
        Self::start_with(keep, agencies, policy, &[]).await
    }

    /// Like [`Federation::start`], leaving the nodes of `closed` with sharing off (as a
    /// new node starts). Every other node's admin turns sharing on, and each agency's
    /// investigator account is added by its admin, approved and trained by its supervisor.
    pub async fn start_with(
        keep: Option<PathBuf>,
        agencies: &[AgencySpec],
        policy: impl Fn(&str) -> PolicyConfig,
        closed: &[&str],
    ) -> Result<Self> {
        Self::start_tuned(keep, agencies, policy, closed, &|_| {}).await
    }

    /// Like [`Federation::start_with`], letting `tune` change each node's config (after
    /// the harness has filled it in, before the node starts).
    pub async fn start_tuned(
        keep: Option<PathBuf>,
        agencies: &[AgencySpec],
        policy: impl Fn(&str) -> PolicyConfig,
        closed: &[&str],
        tune: &dyn Fn(&mut NodeConfig),
    ) -> Result<Self> {
        Self::start_recorded(keep, agencies, policy, closed, tune, None).await
    }

    /// Like [`Federation::start_tuned`], with every byte the broker receives and sends
    /// recorded through `tap` (its server and its calls to the nodes).
    pub async fn start_recorded(
        keep: Option<PathBuf>,
        agencies: &[AgencySpec],
        policy: impl Fn(&str) -> PolicyConfig,
        closed: &[&str],
        tune: &dyn Fn(&mut NodeConfig),
        tap: Option<alpr_runtime::wiretap::Wiretap>,
    ) -> Result<Self> {
        let extras = Extras {
            tap,
            ..Extras::default()
        };
        Self::start_full(keep, agencies, policy, closed, tune, extras).await
    }

    /// Like [`Federation::start`], with the broker's store in the PostgreSQL database of
    /// `postgres` (a connection string), so that more replicas can join it
    /// ([`Federation::start_replica`]); the nodes reach the broker through a TCP load
    /// balancer in front of every replica ([`Federation::balancer`]).
    pub async fn start_replicated(
        agencies: &[AgencySpec],
        policy: impl Fn(&str) -> PolicyConfig,
        postgres: &str,
    ) -> Result<Self> {
        let extras = Extras {
            postgres: Some(postgres.to_owned()),
            ..Extras::default()
        };
        Self::start_full(None, agencies, policy, &[], &|_| {}, extras).await
    }

    /// The most general start: [`Federation::start_tuned`] with the [`Extras`] (a tap, a
    /// broker store in PostgreSQL, failing agencies, slow links, the broker's deadline).
    pub async fn start_full(
        keep: Option<PathBuf>,
        agencies: &[AgencySpec],
        policy: impl Fn(&str) -> PolicyConfig,
        closed: &[&str],
        tune: &dyn Fn(&mut NodeConfig),
        extras: Extras,
    ) -> Result<Self> {
        let Extras {
            tap,
            postgres,
            failing,
            slow,
            deadline_ms,
        } = extras;
        let (dir, tmp) = match keep {
            Some(d) => {
                if d.exists() && std::fs::read_dir(&d)?.next().is_some() {
                    bail!(
                        "{} exists and is not empty; choose a new directory",
                        d.display()
                    );
                }
                std::fs::create_dir_all(&d)?;
                (d, None)
            }
            None => {
                let t = tempfile::tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let reads_server = match reads_backend() {
            "postgres" => Some(alpr_runtime::pgserver::LocalPostgres::start()?),
            _ => None,
        };
        let pki_dir = dir.join("pki");
        let layout = PkiLayout::new(&pki_dir);
        let ow = Overwrite::Refuse;
        let hosts = || vec!["localhost".to_string(), "127.0.0.1".to_string()];
        layout.create_root("Demo State ALPR Root", 3650, ow)?;
        layout.issue_broker(hosts(), 365, ow)?;
        layout.issue_regulator("reg-ca", "US-CA".parse()?, 365, ow)?;
        layout.issue_regulator("reg-nv", "US-NV".parse()?, 365, ow)?;
        for a in agencies {
            let claims = AgencyClaims::new(
                a.ori,
                a.name,
                a.jurisdiction.parse()?,
                a.kind.parse::<AgencyKind>()?,
            )?;
            layout.create_agency(&claims, 1825, ow)?;
            layout.issue_node(a.ori, hosts(), 365, ow)?;
            for (role, user) in [
                (Role::Investigator, investigator_of(a.ori)),
                (Role::Admin, admin_of(a.ori)),
                (Role::Supervisor, supervisor_of(a.ori)),
            ] {
                layout.issue_person(a.ori, role, &user, 365, ow)?;
            }
        }
        for (a, _) in &failing {
            let claims = AgencyClaims::new(
                a.ori,
                a.name,
                a.jurisdiction.parse()?,
                a.kind.parse::<AgencyKind>()?,
            )?;
            layout.create_agency(&claims, 1825, ow)?;
            layout.issue_node(a.ori, hosts(), 365, ow)?;
            layout.issue_person(a.ori, Role::Admin, &admin_of(a.ori), 365, ow)?;
        }
        let crls = layout.all_crls();
        let trust = TrustStore::load(&layout.root_cert(), &crls)?;

        // Bind every listener first so each config can name every address.
        let broker_listener = TcpListener::bind("127.0.0.1:0").await?;
        let broker_addr = broker_listener.local_addr()?;
        let mut node_listeners = Vec::new();
        for a in agencies {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            node_listeners.push((a.ori.to_string(), l.local_addr()?, l));
        }

        // The broker's route to each agency: its node, a slow link to it, or a stand-in.
        let mut stands = Vec::new();
        let mut routes = Vec::new();
        for (ori, addr, _) in &node_listeners {
            let delay = slow.iter().find(|(o, _)| o == ori).map(|(_, d)| *d);
            let at = match delay {
                Some(d) => {
                    let stand = faults::Stand::slow(*addr, d).await?;
                    let at = stand.addr;
                    stands.push(stand);
                    at
                }
                None => *addr,
            };
            routes.push((ori.clone(), at));
        }
        for (a, fault) in &failing {
            let stand = faults::Stand::failing(*fault).await?;
            routes.push((a.ori.to_string(), stand.addr));
            stands.push(stand);
        }
        let (bcert, bkey) = layout.broker();
        let broker_cfg = BrokerConfig {
            listen: broker_addr,
            data_dir: dir.join("broker"),
            postgres: postgres.clone(),
            postgres_ca: None,
            tls: alpr_broker::config::TlsConfig {
                root: layout.root_cert(),
                cert: bcert,
                key: bkey,
                crls: crls.clone(),
                crl_reload_secs: 30,
            },
            deadline_ms: deadline_ms.unwrap_or(3000),
            max_agreement_days: 365,
            head_interval_secs: 60,
            regulator_page: Some("127.0.0.1:0".parse()?),
            telemetry: Default::default(),
            metrics_listen: None,
            nodes: routes
                .iter()
                .map(|(ori, addr)| alpr_broker::config::NodeRoute {
                    ori: ori.clone(),
                    addr: addr.to_string(),
                    server_name: "localhost".into(),
                })
                .collect(),
        };
        std::fs::create_dir_all(&broker_cfg.data_dir)?;
        std::fs::write(
            dir.join("broker").join("broker.toml"),
            toml::to_string(&broker_cfg)?,
        )?;
        let broker = alpr_broker::start_tapped(&broker_cfg, broker_listener, tap).await?;
        let balancer = match postgres {
            Some(_) => Some(balancer::Balancer::start(vec![broker.addr]).await?),
            None => None,
        };
        let nodes_reach = balancer.as_ref().map_or(broker_addr, |b| b.addr);

        let mut nodes = BTreeMap::new();
        let mut node_configs = BTreeMap::new();
        for (ori, addr, listener) in node_listeners {
            let (cert, key) = layout.node(&ori);
            let cfg = NodeConfig {
                ori: ori.clone(),
                listen: addr,
                data_dir: dir.join(&ori),
                tls: TlsConfig {
                    root: layout.root_cert(),
                    cert,
                    key,
                    crls: crls.clone(),
                    crl_reload_secs: 30,
                },
                broker: Some(PeerConfig {
                    addr: nodes_reach.to_string(),
                    server_name: "localhost".into(),
                    timeout_ms: 5000,
                }),
                policy: policy(&ori),
                usage_policy: usage_policy(
                    agencies
                        .iter()
                        .find(|a| a.ori == ori)
                        .map(|a| a.name)
                        .unwrap_or("Agency"),
                ),
                accounts: alpr_node::config::AccountsConfig::default(),
                registry: alpr_node::config::RegistryConfig::default(),
                telemetry: Default::default(),
                metrics_listen: Some("127.0.0.1:0".parse()?),
                alerts: Default::default(),
                // Sealed, every node's default. The tests of what the broker decides from a
                // query's content (which it cannot see sealed) tune `Federation::clear`;
                // `endorse`, `rogue_forward` and `forward_as` follow the node's mode.
                sealing: alpr_node::config::SealingConfig::default(),
                audit: alpr_node::config::AuditConfig::default(),
                // Encrypted at rest, every node's KEK in a file of its own outside its
                // data directory. Tests that edit stored entries as a key-holding insider
                // would tune `storage` back to plain.
                storage: alpr_node::config::StorageConfig {
                    kek_file: Some(kek_file(&dir, &ori)?),
                    ..Default::default()
                },
                // Every demo node serves its web console (the README shows how to open
                // one); people's certificates come from the agency's own CA.
                console: Some(alpr_node::config::ConsoleConfig::new(
                    "127.0.0.1:0".parse()?,
                    layout.agency_ca_cert(&ori),
                    layout.agency_ca_key(&ori),
                )),
            };
            let mut cfg = cfg;
            if let Some(server) = &reads_server {
                cfg.storage = alpr_node::config::StorageConfig {
                    postgres: Some(
                        server.create_database(&format!("reads_{}", ori.to_lowercase()))?,
                    ),
                    ..Default::default()
                };
            }
            tune(&mut cfg);
            std::fs::create_dir_all(&cfg.data_dir)?;
            std::fs::write(cfg.data_dir.join("node.toml"), toml::to_string(&cfg)?)?;
            let running = alpr_node::start_on(&cfg, listener).await?;
            anyhow::ensure!(
                cfg.storage.postgres.is_none() || running.node.db().postgres_reads().is_some(),
                "{ori}'s node was configured with its reads in PostgreSQL but opened them elsewhere"
            );
            nodes.insert(ori.clone(), running);
            node_configs.insert(ori, cfg);
        }
        let fed = Self {
            dir,
            pki: layout,
            trust,
            broker,
            nodes,
            balancer,
            node_configs,
            reply_keys: Default::default(),
            sealed_queries: Default::default(),
            _stands: stands,
            _reads_server: reads_server,
            _tmp: tmp,
        };
        // Every node's sealing key in the registry, and every node's view showing them all.
        for n in fed.nodes.values() {
            n.node.sync_registry_and_key().await?;
        }
        for (a, _) in &failing {
            fed.publish_stand_in_key(a.ori).await?;
        }
        let all: Vec<&str> = fed.nodes.keys().map(String::as_str).collect();
        fed.sync(&all).await?;
        for a in agencies {
            let inv = investigator_of(a.ori);
            fed.admin(
                a.ori,
                &admin_of(a.ori),
                client::user_cmd("add", &inv, "investigator", 0, ""),
            )
            .await?;
            fed.admin(
                a.ori,
                &supervisor_of(a.ori),
                client::user_cmd("approve", &inv, "", 0, ""),
            )
            .await?;
            fed.admin(
                a.ori,
                &supervisor_of(a.ori),
                client::user_cmd("training", &inv, "", alpr_pki::now_unix() - 86_400, ""),
            )
            .await?;
            if !closed.contains(&a.ori) {
                fed.admin(
                    a.ori,
                    &admin_of(a.ori),
                    client::switch(alpr_node::settings::Switch::Sharing, true, "", ""),
                )
                .await?;
            }
        }
        Ok(fed)
    }

    /// The tuning of a sealed federation: every node seals what it sends and answers
    /// only sealed queries (the node's default; [`Federation::start_tuned`] with it).
    pub fn sealed(cfg: &mut NodeConfig) {
        cfg.sealing.require = true;
    }

    /// [`Federation::start`] with every node sending and answering in the clear
    /// ([`Federation::clear`]): for the tests of what the broker decides from a query's
    /// content, which a sealed query hides from it.
    pub async fn start_clear(agencies: &[AgencySpec]) -> Result<Self> {
        Self::start_tuned(None, agencies, |_| open_policy(), &[], &Self::clear).await
    }

    /// The tuning of a clear federation: queries and answers travel in the clear, so the
    /// broker reads and decides on their content too (measurement, and the tests of what
    /// the broker decides from content).
    pub fn clear(cfg: &mut NodeConfig) {
        cfg.sealing.require = false;
    }

    /// Send an administrative command to an agency's node as one of its people.
    pub async fn admin(
        &self,
        ori: &str,
        user: &str,
        req: alpr_proto::pb::AdminRequest,
    ) -> Result<String> {
        self.admin_as(ori, ori, user, req).await
    }

    /// Send an administrative command to `node_ori`'s node as a person of `person_ori`
    /// (another agency's person, to show the refusal).
    pub async fn admin_as(
        &self,
        node_ori: &str,
        person_ori: &str,
        user: &str,
        req: alpr_proto::pb::AdminRequest,
    ) -> Result<String> {
        let (_, tls) = self.person(person_ori, user)?;
        let node = self.nodes.get(node_ori).context("no such node")?;
        let target = Target {
            addr: node.addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut c = client::admin_client(&target, &self.trust, &tls, Duration::from_secs(10))?;
        Ok(c.admin(req).await?.into_inner().message)
    }

    /// A person's signer and TLS identity.
    pub fn person(&self, ori: &str, user: &str) -> Result<(Signer, TlsIdentity)> {
        let (c, k) = self.pki.person(ori, user);
        Ok((Signer::load(&c, &k)?, TlsIdentity::load(&c, &k)?))
    }

    /// An agency node's signer.
    pub fn node_signer(&self, ori: &str) -> Result<Signer> {
        let (c, k) = self.pki.node(ori);
        Ok(Signer::load(&c, &k)?)
    }

    /// Ingest CSV text at an agency's node (the same code as `alpr-node ingest`).
    pub fn ingest_csv(&self, ori: &str, csv: &str) -> Result<alpr_node::ingest::IngestReport> {
        let node = &self.nodes.get(ori).context("no such node")?.node;
        Ok(alpr_node::ingest::ingest_csv(
            &mut |b| node.store_reads(b).map(|s| s.stored),
            csv.as_bytes(),
            |_| {},
            None,
        )?)
    }

    /// Draft an agreement, have both admins sign it, register it at the broker over mTLS
    /// and have both nodes sync it from the registry log. Returns the agreement id.
    pub async fn agree(&self, terms: Agreement) -> Result<String> {
        self.agree_at(self.broker.addr, terms).await
    }

    /// [`Federation::agree`] through the broker (replica) at `addr`.
    pub async fn agree_at(&self, addr: std::net::SocketAddr, terms: Agreement) -> Result<String> {
        let sa = self.signed_by_both(&terms)?;
        let id = self.submit_at(addr, &terms.provider_ori, &sa).await?;
        self.sync(&[&terms.provider_ori, &terms.requester_ori])
            .await?;
        Ok(id)
    }

    /// An agreement drafted from `terms` and signed by both parties' admins.
    fn signed_by_both(&self, terms: &Agreement) -> Result<alpr_proto::pb::SignedAgreement> {
        let mut sa = client::draft_agreement(terms)?;
        let (padmin, _) = self.person(&terms.provider_ori, &admin_of(&terms.provider_ori))?;
        let (radmin, _) = self.person(&terms.requester_ori, &admin_of(&terms.requester_ori))?;
        client::sign_agreement(&mut sa, &padmin, &self.trust)?;
        client::sign_agreement(&mut sa, &radmin, &self.trust)?;
        Ok(sa)
    }

    /// A broker client and signer for a person identified by certificate files
    /// (regulators: `self.pki.regulator(user)`; admins: `self.pki.person(ori, user)`).
    pub fn broker_client_as(
        &self,
        cert_key: (PathBuf, PathBuf),
    ) -> Result<(
        alpr_proto::pb::broker_client::BrokerClient<tonic::transport::Channel>,
        Signer,
    )> {
        let (c, k) = cert_key;
        let tls = TlsIdentity::load(&c, &k)?;
        let target = Target {
            addr: self.broker.addr.to_string(),
            server_name: "localhost".into(),
        };
        Ok((
            client::broker_client(&target, &self.trust, &tls, Duration::from_secs(10))?,
            Signer::load(&c, &k)?,
        ))
    }

    /// Revoke a certificate of this federation's PKI (`alpr-pki revoke`, as a function).
    pub fn revoke(&self, cert: &Path) -> Result<alpr_pki::directory::Revocation> {
        Ok(self.pki.revoke(cert, None)?)
    }

    /// Make every node and the broker re-read their CRL files now (they also do so on a
    /// schedule).
    pub fn reload_crls(&self) -> Result<()> {
        for n in self.nodes.values() {
            n.node.reload_crls()?;
        }
        self.broker.broker.reload_crls()?;
        Ok(())
    }

    /// Publish a sealing key for an agency that has no node here (an [`Extras::failing`]
    /// one), signed with its node's key and sent over mTLS as its node, as its node would.
    async fn publish_stand_in_key(&self, ori: &str) -> Result<u64> {
        let pair = alpr_proto::seal::KeyPair::generate(alpr_proto::seal::Suite::X25519ChaCha20);
        let key = alpr_proto::pb::SealingKey {
            ori: ori.to_owned(),
            suite: pair.suite.id(),
            public_key: pair.public.clone(),
            published_at: alpr_pki::now_unix(),
            product: alpr_proto::rules::SYSTEM_PRODUCT.into(),
            product_version: alpr_proto::rules::SYSTEM_VERSION.into(),
        };
        let signed = alpr_proto::envelope::seal(
            &self.node_signer(ori)?,
            alpr_proto::registry::SEALING_KEY,
            &key,
        )?;
        let (c, k) = self.pki.node(ori);
        let tls = TlsIdentity::load(&c, &k)?;
        let target = Target {
            addr: self.broker.addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut b = client::broker_client(&target, &self.trust, &tls, Duration::from_secs(10))?;
        Ok(b.publish_sealing_key(signed).await?.into_inner().index)
    }

    /// Draft, sign (both admins) and register every one of `terms`, then have the nodes
    /// concerned sync once: [`Federation::agree`] for many agreements at a time.
    pub async fn agree_many(&self, terms: &[Agreement]) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(terms.len());
        let mut concerned = std::collections::BTreeSet::new();
        for t in terms {
            let sa = self.signed_by_both(t)?;
            ids.push(self.submit(&t.provider_ori, &sa).await?);
            concerned.insert(t.provider_ori.as_str());
            concerned.insert(t.requester_ori.as_str());
        }
        self.sync(&concerned.into_iter().collect::<Vec<_>>())
            .await?;
        Ok(ids)
    }

    /// Have these agencies' nodes sync the registry now (they also do so on a schedule).
    pub async fn sync(&self, oris: &[&str]) -> Result<()> {
        for ori in oris {
            if let Some(n) = self.nodes.get(*ori) {
                n.node.sync_registry().await?;
            }
        }
        Ok(())
    }

    /// Submit a signed agreement to the broker from an agency's admin.
    pub async fn submit(&self, ori: &str, sa: &alpr_proto::pb::SignedAgreement) -> Result<String> {
        self.submit_at(self.broker.addr, ori, sa).await
    }

    /// Submit a signed agreement from an agency's admin to the broker (replica) at `addr`.
    pub async fn submit_at(
        &self,
        addr: std::net::SocketAddr,
        ori: &str,
        sa: &alpr_proto::pb::SignedAgreement,
    ) -> Result<String> {
        let (_, tls) = self.person(ori, &admin_of(ori))?;
        let target = Target {
            addr: addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut c = client::broker_client(&target, &self.trust, &tls, Duration::from_secs(10))?;
        Ok(client::submit_agreement(&mut c, sa).await?)
    }

    /// Send an endorsed query to the broker (replica) at `addr` as agency `ori`'s node
    /// would, over mTLS with the node's certificate.
    pub async fn route_at(
        &self,
        addr: std::net::SocketAddr,
        ori: &str,
        endorsed: Signed,
    ) -> Result<RouteResponse> {
        let (c, k) = self.pki.node(ori);
        let tls = TlsIdentity::load(&c, &k)?;
        let target = Target {
            addr: addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut b = client::broker_client(&target, &self.trust, &tls, Duration::from_secs(10))?;
        Ok(b.route_query(endorsed).await?.into_inner())
    }

    /// Standard agreement terms valid for `valid_secs` from now.
    pub fn terms(
        provider: &str,
        requester: &str,
        purposes: &[&str],
        lookback_days: u32,
        valid_secs: i64,
    ) -> Agreement {
        let now = alpr_pki::now_unix();
        Agreement {
            provider_ori: provider.into(),
            requester_ori: requester.into(),
            purposes: purposes.iter().map(|s| s.to_string()).collect(),
            data_types: vec!["reads".into()],
            max_lookback_days: lookback_days,
            valid_from: now - 60,
            valid_until: now + valid_secs,
            justification: format!(
                "Mutual aid between {provider} and {requester}: regional auto-theft and violent-crime task force"
            ),
            drafted_at: now,
            query_shapes: vec![],
        }
    }

    /// Sign a query as an agency's investigator.
    pub fn sign_query(&self, ori: &str, p: &SearchParams) -> Result<(Query, Signed)> {
        let (signer, _) = self.person(ori, &investigator_of(ori))?;
        Ok(client::sign_query(
            &signer,
            &self.trust,
            p,
            alpr_pki::now_unix(),
        )?)
    }

    /// An investigator's search through their own node over mTLS.
    pub async fn search(&self, ori: &str, p: &SearchParams) -> Result<(Query, RouteResponse)> {
        let (query, signed) = self.sign_query(ori, p)?;
        Ok((query.clone(), self.send_signed(ori, &signed).await?))
    }

    /// Send an already signed query through an agency's node as its investigator.
    pub async fn send_signed(&self, ori: &str, signed: &Signed) -> Result<RouteResponse> {
        let (_, tls) = self.person(ori, &investigator_of(ori))?;
        let node = self.nodes.get(ori).context("no such node")?;
        let target = Target {
            addr: node.addr.to_string(),
            server_name: "localhost".into(),
        };
        let mut c = client::node_client(&target, &self.trust, &tls, Duration::from_secs(10))?;
        Ok(client::search(&mut c, signed).await?)
    }

    /// What a misbehaving broker can do: send an endorsed query straight to a node,
    /// skipping the broker's admission. Uses the broker's real certificate. A sealed
    /// endorsement goes to `AnswerSealed`, and the reply is opened with the reply key
    /// [`Federation::endorse`] kept (or taken in the clear when the target could not open
    /// its box): either way the caller gets the target's signed reply.
    pub async fn rogue_forward(&self, target_ori: &str, endorsed: Signed) -> Result<Signed> {
        let (c, k) = self.pki.broker();
        let tls = TlsIdentity::load(&c, &k)?;
        self.forward_as(&tls, target_ori, endorsed).await
    }

    /// [`Federation::rogue_forward`] for a sealed endorsement (`AnswerSealed`).
    pub async fn rogue_forward_sealed(
        &self,
        target_ori: &str,
        endorsed: Signed,
    ) -> Result<alpr_proto::pb::SealedReply> {
        let (c, k) = self.pki.broker();
        let tls = TlsIdentity::load(&c, &k)?;
        let node = self.nodes.get(target_ori).context("no such node")?;
        let target = Target {
            addr: node.addr.to_string(),
            server_name: "localhost".into(),
        };
        let cfg =
            alpr_runtime::tls::client_config(&self.trust, &tls).map_err(anyhow::Error::msg)?;
        let mut c = NodeInboundClient::new(
            alpr_runtime::client::channel(&target, cfg, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?,
        );
        Ok(c.answer_sealed(endorsed).await?.into_inner())
    }

    /// Seal `signed` (an investigator's signed `query`) for `target_ori` as `via_ori`'s node
    /// would: the query encrypted once under its query key (made on the first box of this
    /// query id and kept for the next ones, as one endorsement shares it among its
    /// targets), and that key sealed to `target_ori`'s published key as `via_ori`'s node
    /// knows it, for the box's context `(context_target, query, requester)`: the raw
    /// material of the box tests. Returns the wire box (addressed to `target_ori`) and the
    /// reply key; [`Federation::endorse_sealed`] attaches the query's ciphertext.
    pub fn seal_box(
        &self,
        via_ori: &str,
        target_ori: &str,
        context_target: &str,
        query: &Query,
        requester: &str,
        signed: &Signed,
    ) -> Result<(alpr_proto::pb::SealedBox, alpr_proto::seal::ReplyKey)> {
        let node = &self.nodes.get(via_ori).context("no such node")?.node;
        let k = node
            .published_key(target_ori)
            .context("no published key for the target")?;
        let (key, _) = self.sealed_query(query, Some(signed))?;
        let ctx = alpr_proto::seal::Context {
            purpose: "query",
            target_ori: context_target,
            query_id: &query.query_id,
            requester,
        };
        let (b, reply) = alpr_proto::seal::seal_query_key(k.suite, &k.public, &ctx, &key)?;
        Ok((b.to_wire(target_ori), reply))
    }

    /// The query key of `query` and its ciphertext of `signed` (made when first asked
    /// for; with no `signed`, a ciphertext of nothing).
    fn sealed_query(
        &self,
        query: &Query,
        signed: Option<&Signed>,
    ) -> Result<(alpr_proto::seal::QueryKey, Vec<u8>)> {
        let mut all = self
            .sealed_queries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(found) = all.get(&query.query_id) {
            return Ok(found.clone());
        }
        let key = alpr_proto::seal::QueryKey::generate()?;
        let aad = alpr_proto::seal::sealed_query_aad(
            &query.query_id,
            &alpr_proto::admission::requester_label(query),
        );
        let body = key.seal(&aad, &signed.map(|s| s.encode_to_vec()).unwrap_or_default())?;
        all.insert(query.query_id.clone(), (key.clone(), body.clone()));
        Ok((key, body))
    }

    /// Endorse a sealed query as `ori`'s node would: its routing copy, its ciphertext (the
    /// one [`Federation::seal_box`] made for this query id) and `boxes`.
    pub fn endorse_sealed(
        &self,
        ori: &str,
        query: &Query,
        boxes: Vec<alpr_proto::pb::SealedBox>,
    ) -> Result<Signed> {
        let (_, body) = self.sealed_query(query, None)?;
        Ok(alpr_proto::envelope::endorse_sealed(
            &self.node_signer(ori)?,
            ori,
            alpr_proto::admission::routing_copy(query),
            body,
            boxes,
            alpr_pki::now_unix(),
        )?)
    }

    /// Send an endorsed query to a node's inbound side with any TLS identity: a clear one
    /// to `AnswerQuery`, a sealed one to `AnswerSealed`, its reply opened with the reply key
    /// [`Federation::endorse`] kept (or taken in the clear when the target could not open
    /// its box). Either way the caller gets the target's signed reply.
    pub async fn forward_as(
        &self,
        tls: &TlsIdentity,
        target_ori: &str,
        endorsed: Signed,
    ) -> Result<Signed> {
        let node = self.nodes.get(target_ori).context("no such node")?;
        let target = Target {
            addr: node.addr.to_string(),
            server_name: "localhost".into(),
        };
        let cfg = alpr_runtime::tls::client_config(&self.trust, tls).map_err(anyhow::Error::msg)?;
        let mut c = NodeInboundClient::new(
            alpr_runtime::client::channel(&target, cfg, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?,
        );
        let sealed = alpr_proto::pb::Endorsement::decode(endorsed.payload.as_slice())
            .is_ok_and(|e| e.routing.is_some());
        if !sealed {
            return Ok(c.answer_query(endorsed).await?.into_inner());
        }
        let reply = c.answer_sealed(endorsed).await?.into_inner();
        self.open_sealed_reply(target_ori, reply)
    }

    /// The signed reply inside a target's sealed reply (opened with the reply key
    /// [`Federation::endorse`] kept), or its clear refusal.
    pub fn open_sealed_reply(
        &self,
        target_ori: &str,
        reply: alpr_proto::pb::SealedReply,
    ) -> Result<Signed> {
        if let Some(clear) = reply.clear_refusal {
            return Ok(clear);
        }
        let keys = self.reply_keys.lock().unwrap_or_else(|p| p.into_inner());
        let key = keys
            .get(&(reply.query_id.clone(), target_ori.to_owned()))
            .context("no reply key for this sealed reply (the box was not sealed by Federation::endorse)")?;
        let aad = alpr_proto::seal::reply_aad(&reply.query_id, &reply.provider_ori);
        Ok(Signed::decode(
            key.open(&aad, &reply.nonce, &reply.ciphertext)?.as_slice(),
        )?)
    }

    /// A fresh clear query of `p` from `requester_ori`, endorsed by its node and handed to
    /// `node` as the broker (or a broker replica) would: the reply's payload type and, for
    /// a refusal, its reason and detail.
    pub fn forward_as_broker(
        &self,
        requester_ori: &str,
        p: &SearchParams,
        node: &alpr_node::Node,
    ) -> Result<(String, Option<(alpr_proto::RefusalReason, String)>)> {
        let (_, signed) = self.sign_query(requester_ori, p)?;
        let endorsed = self.endorse(requester_ori, &signed)?;
        let now = alpr_pki::now_unix();
        let broker = self
            .trust
            .verify(&alpr_pki::read_cert_chain(&self.pki.broker().0)?, now)?;
        let reply = node.answer_forwarded(Ok(broker), &endorsed)?;
        let refusal = if reply.payload_type == alpr_proto::envelope::REFUSAL {
            let (_, r): (_, alpr_proto::pb::Refusal) = alpr_proto::envelope::open_as(
                &self.trust,
                &reply,
                alpr_proto::envelope::REFUSAL,
                now,
            )?;
            Some((alpr_proto::RefusalReason::try_from(r.reason)?, r.detail))
        } else {
            None
        };
        Ok((reply.payload_type, refusal))
    }

    /// Endorse a signed query as an agency's node would: sealed to each target's published
    /// key when that node seals (`[sealing] require`), in the clear otherwise.
    pub fn endorse(&self, ori: &str, signed: &Signed) -> Result<Signed> {
        let seals = self
            .node_configs
            .get(ori)
            .is_some_and(|c| c.sealing.require);
        if !seals {
            return Ok(alpr_proto::envelope::endorse(
                &self.node_signer(ori)?,
                ori,
                signed.encode_to_vec(),
                alpr_pki::now_unix(),
            )?);
        }
        // The signed query may be malformed on purpose; seal whatever it decodes to.
        let query = Query::decode(signed.payload.as_slice()).unwrap_or_default();
        let requester = alpr_proto::admission::requester_label(&query);
        let mut boxes = Vec::new();
        for t in &query.targets {
            if let Ok((b, key)) = self.seal_box(ori, t, t, &query, &requester, signed) {
                boxes.push(b);
                self.reply_keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((query.query_id.clone(), t.clone()), key);
            }
        }
        self.endorse_sealed(ori, &query, boxes)
    }

    /// A node's audit log, or its entries of one event (by its string form; an unknown
    /// event is an error, not an empty list).
    pub fn audit(&self, ori: &str, event: Option<&str>) -> Result<Vec<StoredEntry>> {
        let cfg = self.node_configs.get(ori).context("no such node")?;
        let event = event
            .map(str::parse::<alpr_node::audit::Event>)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let conn = cfg.open_audit()?;
        Ok(alpr_node::store::audit::list(&conn, event)?)
    }

    /// Verify a node's audit log (hash chain and signed checkpoints).
    pub fn verify_audit(&self, ori: &str) -> Result<alpr_node::audit::VerifyReport> {
        let cfg = self.node_configs.get(ori).context("no such node")?;
        let conn = cfg.open_audit()?;
        Ok(alpr_node::store::audit::verify(
            &conn,
            Some((&self.trust, ori)),
        )?)
    }

    /// The broker's routing log.
    pub fn broker_log(&self) -> Result<Vec<alpr_broker::store::LogEntry>> {
        Ok(self.broker.broker.log()?)
    }

    /// Stop every server.
    pub async fn stop(self) -> Result<()> {
        for (_, n) in self.nodes {
            n.stop().await?;
        }
        self.broker.stop().await?;
        Ok(())
    }
}

/// Copy `files` into the directory `to` from a child process (`cp`), as a thief copying a
/// running node's disk would. Never open a running node's database files in this process:
/// closing any descriptor of a file drops every POSIX lock this process holds on it
/// (fcntl semantics), so the nodes' SQLite connections here would go on writing without
/// locks while other processes (`alpr-node` host commands) write too.
pub fn copy_out_of_process(files: &[PathBuf], to: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(to)?;
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let status = std::process::Command::new("cp")
        .arg("--")
        .args(files)
        .arg(to)
        .status()?;
    anyhow::ensure!(status.success(), "cp failed: {status}");
    Ok(files
        .iter()
        .filter_map(|f| f.file_name().map(|n| to.join(n)))
        .collect())
}

/// The KEK file of node `ori` in a federation directory (made on first use, mode 0600).
pub fn kek_file(dir: &Path, ori: &str) -> Result<PathBuf> {
    let keys = dir.join("keks");
    std::fs::create_dir_all(&keys)?;
    let path = keys.join(format!("{ori}.kek"));
    if !path.exists() {
        alpr_node::keyring::write_new_kek(&path)?;
    }
    Ok(path)
}

/// The demo's agencies: two California local agencies that share, one more California
/// agency, one out-of-state agency and one federal agency.
pub fn demo_agencies() -> Vec<AgencySpec> {
    vec![
        AgencySpec {
            ori: "CA0560100",
            name: "Ventura Police Department",
            jurisdiction: "US-CA",
            kind: "local",
        },
        AgencySpec {
            ori: "CA0340000",
            name: "Sacramento County Sheriff",
            jurisdiction: "US-CA",
            kind: "local",
        },
        AgencySpec {
            ori: "CA0100500",
            name: "Fresno Police Department",
            jurisdiction: "US-CA",
            kind: "local",
        },
        AgencySpec {
            ori: "NV0020100",
            name: "Las Vegas Metropolitan Police",
            jurisdiction: "US-NV",
            kind: "local",
        },
        AgencySpec {
            ori: "USDHS0100",
            name: "Federal Immigration Enforcement Office",
            jurisdiction: "US",
            kind: "federal",
        },
    ]
}

/// The default node policy (sharing itself is a runtime switch the harness turns on).
pub fn open_policy() -> PolicyConfig {
    PolicyConfig::default()
}

/// Synthetic reads for an agency: `plates` each seen at a few cameras over the last days,
/// plus noise plates.
pub fn synthetic_csv(ori: &str, plates: &[&str], days: i64) -> String {
    let now = alpr_pki::now_unix();
    // Every synthetic car carries its agency's home-state plates.
    let state = &ori[..2];
    let mut out = String::from("plate,captured_at,camera_id,latitude,longitude,plate_state\n");
    let (lat0, lon0) = match &ori[..2] {
        "CA" => (34.27, -119.23),
        "NV" => (36.17, -115.14),
        _ => (38.90, -77.03),
    };
    for (i, p) in plates.iter().enumerate() {
        for d in 0..days {
            let t = now - d * 86_400 - (i as i64 * 3_517) % 80_000 - 600;
            let cam = format!("{}-CAM-{:02}", &ori[..5], (d + i as i64) % 12);
            out.push_str(&format!(
                "{p},{},{cam},{:.5},{:.5},{state}\n",
                alpr_node::cli::fmt_time(t),
                lat0 + 0.001 * d as f64,
                lon0 - 0.001 * i as f64
            ));
        }
    }
    for n in 0..200i64 {
        let t = now - (n * 7_919) % (86_400 * days.max(1));
        out.push_str(&format!(
            "{}{:04},{},{}-CAM-00,{lat0:.5},{lon0:.5},{state}\n",
            &ori[..2],
            n,
            alpr_node::cli::fmt_time(t),
            &ori[..5]
        ));
    }
    out
}

/// Search parameters for a typical, well-formed search over the last `days`.
pub fn params(plate: &str, targets: &[&str], purpose: &str, days: i64) -> SearchParams {
    let now = alpr_pki::now_unix();
    SearchParams {
        plate: plate.into(),
        plate_state: "CA".into(),
        window_start: now - days * 86_400,
        window_end: now,
        purpose: purpose.into(),
        case_number: "SSD-2026-018832".into(),
        reason:
            "Silver Honda Civic stolen from Fair Oaks driveway; owner reported this plate on 11/20"
                .into(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
        ttl_secs: 300,
        ..Default::default()
    }
}
