//! Starting and stopping a node's server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alpr_proto::pb::node_admin_server::NodeAdminServer;
use alpr_proto::pb::node_inbound_server::NodeInboundServer;
use alpr_proto::pb::node_local_server::NodeLocalServer;
use alpr_runtime::tasks::{self, First};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Error;
use crate::config::NodeConfig;
use crate::node::Node;
use crate::service::NodeService;

/// Seconds between rounds of sending queued hit reports.
const HIT_RETRY_SECS: u64 = 5;

/// A node serving on its address.
pub struct RunningNode {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The node's state.
    pub node: Arc<Node>,
    /// Where `/metrics` is served, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the web console is served, if configured.
    pub console_addr: Option<SocketAddr>,
    console: Option<crate::console::RunningConsole>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    crl_task: JoinHandle<()>,
    audit_task: JoinHandle<()>,
    purge_task: JoinHandle<()>,
    sync_task: JoinHandle<()>,
    hit_task: JoinHandle<()>,
    anchor_task: JoinHandle<()>,
    /// Held while serving: one daemon per data directory.
    _lock: DataDirLock,
}

/// An exclusive lock on a node's data directory (`serve.lock` in it), held by the one
/// daemon that serves it; released when dropped, or by the kernel if the process dies.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Take the lock, or fail at once if another process holds it.
    pub fn acquire(data_dir: &std::path::Path) -> Result<Self, Error> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::io(data_dir, e))?;
        let path = data_dir.join("serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::DataDirBusy {
                dir: data_dir.to_owned(),
                lock: path,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

impl RunningNode {
    /// Stop accepting, finish in-flight requests, and wait for the server to end.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.crl_task.abort();
        self.audit_task.abort();
        if let Some(c) = self.console.as_mut() {
            c.stop();
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.purge_task.abort();
        self.sync_task.abort();
        self.hit_task.abort();
        self.anchor_task.abort();
        let served = match self.task.await {
            Ok(r) => r.map_err(|e| alpr_runtime::Error::Serve(e.to_string()).into()),
            Err(e) => Err(alpr_runtime::Error::Serve(e.to_string()).into()),
        };
        // In-flight requests have finished and their entries are durable; seal the log
        // with a signed checkpoint of its final head, and anchor it (bounded: a broker that
        // does not answer does not hold the shutdown).
        self.node.checkpoint()?;
        if self.node.cfg.broker.is_some() {
            let anchor = self.node.anchor_audit_logged();
            if tokio::time::timeout(Duration::from_secs(5), anchor)
                .await
                .is_err()
            {
                tracing::warn!("the final audit anchor did not complete within 5 s");
            }
        }
        served
    }

    /// Wait until the server ends by itself (or forever).
    pub async fn wait(self) -> Result<(), Error> {
        match self.task.await {
            Ok(r) => r.map_err(|e| alpr_runtime::Error::Serve(e.to_string()).into()),
            Err(e) => Err(alpr_runtime::Error::Serve(e.to_string()).into()),
        }
    }
}

/// Open the node and serve it on `cfg.listen` over mTLS.
pub async fn start(cfg: &NodeConfig) -> Result<RunningNode, Error> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::io(format!("listen {}", cfg.listen), e))?;
    start_on(cfg, listener).await
}

/// Serve on an already bound listener (lets a caller learn every address before starting).
pub async fn start_on(cfg: &NodeConfig, listener: TcpListener) -> Result<RunningNode, Error> {
    let lock = DataDirLock::acquire(&cfg.data_dir)?;
    let node = Node::open(cfg)?;
    let changed = node.log_start()?;
    if !changed.is_empty() {
        tracing::warn!(changes = ?changed, "configuration changed since the last start");
    }
    let tls = node.tls.server_config();
    let addr = listener.local_addr().map_err(|e| Error::io("listen", e))?;
    let svc = NodeService::new(node.clone());
    // Requests the transport cannot decode are refused with INVALID_INPUT and logged.
    let logger = node.clone();
    let mut builder = alpr_runtime::server::guarded_server(std::sync::Arc::new(move |u| {
        let n = logger.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || n.log_undecodable(u)).await;
        })
    }));
    let (router, health) = alpr_runtime::server::with_standard_services(
        &mut builder,
        &[
            "alpr.v1.NodeInbound",
            "alpr.v1.NodeLocal",
            "alpr.v1.NodeAdmin",
        ],
    )
    .await?;
    // A node that cannot write its audit log refuses everything; health says so.
    node.set_health(health);
    let router = router
        .add_service(
            NodeInboundServer::new(svc.clone())
                .max_decoding_message_size(alpr_proto::limits::TRANSPORT_MAX_MESSAGE),
        )
        .add_service(
            NodeLocalServer::new(svc.clone())
                .max_decoding_message_size(alpr_proto::limits::TRANSPORT_MAX_MESSAGE),
        )
        .add_service(
            NodeAdminServer::new(svc)
                .max_decoding_message_size(alpr_proto::limits::TRANSPORT_MAX_MESSAGE),
        );
    // Scheduled retention purge: at start, then every interval, until the node stops.
    let purger = node.clone();
    let interval = Duration::from_secs(cfg.policy.purge_interval_secs);
    let purge_task = tasks::every(interval, First::Now, move || {
        let n = purger.clone();
        async move {
            let keys = n.clone();
            match tokio::task::spawn_blocking(move || {
                keys.drop_expired_sealing_keys(alpr_pki::now_unix())
            })
            .await
            {
                Ok(Err(e)) => tracing::error!(error = %e, "sealing-key expiry failed"),
                Err(e) => tracing::error!(error = %e, "sealing-key expiry task failed"),
                Ok(Ok(_)) => {}
            }
            let publisher = n.clone();
            match tokio::task::spawn_blocking(move || n.purge()).await {
                Ok(Ok((days, reads))) if !days.is_empty() => {
                    tracing::info!(days = days.len(), reads, "retention purge")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "retention purge failed"),
                _ => {}
            }
            // The public report the state's rules schedule, once its period has ended.
            match tokio::task::spawn_blocking(move || {
                publisher.publish_scheduled(alpr_pki::now_unix())
            })
            .await
            {
                Ok(Ok(Some(p))) => {
                    tracing::info!(period = %p.report.period.label, searches = p.report.searches.len(), "public report published")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "ALERT: scheduled public report failed"),
                _ => {}
            }
        }
    });
    // Registry sync: at start, then every interval (only with a broker configured).
    let syncer = node.clone();
    let sync_every = Duration::from_secs(cfg.registry.sync_interval_secs);
    let sync_task = match cfg.broker {
        Some(_) => tasks::every(sync_every, First::Now, move || {
            let n = syncer.clone();
            async move {
                match n.sync_registry_and_key().await {
                    Ok(r) if !r.applied.is_empty() => {
                        tracing::info!(to = r.to, applied = r.applied.len(), "registry synced")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "registry sync failed"),
                }
                // A view past its bound is alerted even while no query arrives; so is state
                // edited around the log.
                let _ = n.stale_view(alpr_pki::now_unix());
                let c = n.clone();
                match tokio::task::spawn_blocking(move || c.check_state()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "state check failed"),
                    Err(e) => tracing::error!(error = %e, "state check task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        }),
        None => tokio::spawn(async {}),
    };
    // Hit reports of hot lists shared with this agency: sent as soon as ingest queues
    // them, and again every few seconds while some wait (broker or owner unreachable).
    let reporter = node.clone();
    let hit_task = match cfg.broker {
        Some(_) => tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(
                    Duration::from_secs(HIT_RETRY_SECS),
                    reporter.hits_queued.notified(),
                )
                .await;
                if let Err(e) = reporter.deliver_hits().await {
                    tracing::warn!(error = %e, "hit report delivery failed");
                }
            }
        }),
        None => tokio::spawn(async {}),
    };
    // Audit anchoring: at start, then every interval (only with a broker configured).
    let anchorer = node.clone();
    let anchor_task = match cfg.broker {
        Some(_) => tasks::every(
            Duration::from_secs(cfg.audit.anchor_interval_secs),
            First::Now,
            move || {
                let n = anchorer.clone();
                async move {
                    n.anchor_audit_logged().await;
                }
            },
        ),
        None => tokio::spawn(async {}),
    };
    // The scheduled self-audit (daily by default).
    let auditor = node.clone();
    let audit_task = tasks::every(
        Duration::from_secs(cfg.alerts.audit_interval_secs),
        First::AfterInterval,
        move || {
            let n = auditor.clone();
            async move {
                match tokio::task::spawn_blocking(move || n.self_audit()).await {
                    Ok(Ok(r)) if r.broken.is_none() => {
                        tracing::info!(entries = r.entries, "self-audit: audit log verified")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "self-audit failed"),
                    Err(e) => tracing::error!(error = %e, "self-audit task failed"),
                }
            }
        },
    );
    // CRL reload without restart.
    let reloader = node.clone();
    let crl_task = tasks::reload_crls(cfg.tls.crl_reload_secs, move || reloader.reload_crls());
    let metrics_addr = match cfg.metrics_listen {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| Error::io(format!("metrics {a}"), e))?;
            let addr = l.local_addr().map_err(|e| Error::io("metrics", e))?;
            alpr_runtime::metrics::serve(l, node.metrics.registry.clone());
            Some(addr)
        }
        None => None,
    };
    let console = match &cfg.console {
        Some(c) => Some(crate::console::start(node.clone(), c).await?),
        None => None,
    };
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(alpr_runtime::server::serve(router, listener, tls, async {
        let _ = rx.await;
    }));
    tracing::info!(ori = %node.ori(), %addr, "node serving");
    Ok(RunningNode {
        addr,
        node,
        metrics_addr,
        console_addr: console.as_ref().map(|c| c.addr),
        console,
        stop: Some(tx),
        task,
        purge_task,
        sync_task,
        hit_task,
        anchor_task,
        crl_task,
        audit_task,
        _lock: lock,
    })
}
