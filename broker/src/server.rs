//! Starting and stopping the broker's server.

use std::net::SocketAddr;
use std::sync::Arc;

use alpr_proto::pb::broker_server::BrokerServer;
use alpr_runtime::tasks;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Error;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::service::BrokerService;

/// A broker serving on its address.
pub struct RunningBroker {
    /// The address actually bound.
    pub addr: SocketAddr,
    /// The broker's state.
    pub broker: Arc<Broker>,
    /// Where the regulator page is served, if configured.
    pub page_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    page_stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    crl_task: JoinHandle<()>,
    head_task: JoinHandle<()>,
    probe_task: JoinHandle<()>,
}

impl RunningBroker {
    /// Stop accepting, finish in-flight requests, and wait for the server to end.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.halt().await
    }

    /// [`stop`](Self::stop) in place: the broker stops serving (as in an outage), and a
    /// later `stop` or `halt` does nothing more.
    pub async fn halt(&mut self) -> Result<(), Error> {
        self.crl_task.abort();
        self.head_task.abort();
        self.probe_task.abort();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.page_stop.take() {
            let _ = tx.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        let served = match task.await {
            Ok(r) => r.map_err(|e| alpr_runtime::Error::Serve(e.to_string()).into()),
            Err(e) => Err(alpr_runtime::Error::Serve(e.to_string()).into()),
        };
        // Outcome rows queued by the last queries reach the disk before the broker stops.
        self.broker.flush_log().await?;
        served
    }
}

/// Open the broker and serve it on `cfg.listen` over mTLS.
pub async fn start(cfg: &BrokerConfig) -> Result<RunningBroker, Error> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| Error::io(format!("listen {}", cfg.listen), e))?;
    start_on(cfg, listener).await
}

/// Serve on an already bound listener (lets a caller learn every address before starting).
pub async fn start_on(cfg: &BrokerConfig, listener: TcpListener) -> Result<RunningBroker, Error> {
    start_tapped(cfg, listener, None).await
}

/// [`start_on`] with every byte the broker's server receives and sends, and every byte of
/// its calls to the nodes, recorded through `tap` ([`alpr_runtime::wiretap`]).
pub async fn start_tapped(
    cfg: &BrokerConfig,
    listener: TcpListener,
    tap: Option<alpr_runtime::wiretap::Wiretap>,
) -> Result<RunningBroker, Error> {
    let broker = Broker::open_tapped(cfg, tap.clone())?;
    let tls = broker.tls.server_config();
    let addr = listener.local_addr().map_err(|e| Error::io("listen", e))?;
    // Requests the transport cannot decode are refused with INVALID_INPUT and logged.
    let logger = broker.clone();
    let mut builder = alpr_runtime::server::tapped_server(
        std::sync::Arc::new(move |u| {
            let b = logger.clone();
            Box::pin(async move { b.log_undecodable(u).await })
        }),
        tap,
    );
    let (router, health) =
        alpr_runtime::server::with_standard_services(&mut builder, &["alpr.v1.Broker"]).await?;
    // A broker that cannot write its routing log forwards nothing; health says so.
    broker.set_health(health);
    let router = router.add_service(
        BrokerServer::new(BrokerService::new(broker.clone()))
            .max_decoding_message_size(alpr_proto::limits::TRANSPORT_MAX_MESSAGE),
    );
    // CRL reload without restart.
    let reloader = broker.clone();
    let crl_task = tasks::reload_crls(cfg.tls.crl_reload_secs, move || reloader.reload_crls());
    // A fresh signed tree head at a fixed interval, even when nothing changed.
    let signer = broker.clone();
    let head_task = tasks::every(
        std::time::Duration::from_secs(cfg.head_interval_secs),
        tasks::First::AfterInterval,
        move || {
            let b = signer.clone();
            async move {
                match tokio::task::spawn_blocking(move || b.refresh_head(alpr_pki::now_unix()))
                    .await
                {
                    Ok(Err(e)) => tracing::error!(error = %e, "tree head refresh failed"),
                    Err(e) => tracing::error!(error = %e, "tree head refresh task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        },
    );
    // While NOT_SERVING, probe the routing log every second: health comes back when the
    // store does, even with no query arriving (a load balancer sends none to a replica it
    // took out).
    let prober = broker.clone();
    let probe_task = tasks::every(
        std::time::Duration::from_secs(1),
        tasks::First::AfterInterval,
        move || {
            let b = prober.clone();
            async move { b.probe_log().await }
        },
    );
    if let Some(a) = cfg.metrics_listen {
        let l = TcpListener::bind(a)
            .await
            .map_err(|e| Error::io(format!("metrics {a}"), e))?;
        alpr_runtime::metrics::serve(l, broker.metrics.registry.clone());
    }
    let (tx, rx) = oneshot::channel();
    let mut page_stop = None;
    let page_addr = match cfg.regulator_page {
        Some(a) => {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| Error::io(format!("regulator page {a}"), e))?;
            let addr = l.local_addr().map_err(|e| Error::io("regulator page", e))?;
            let identity = alpr_runtime::tls::TlsIdentity::load(&cfg.tls.cert, &cfg.tls.key)?;
            let web = alpr_runtime::tls::web_server_config(&identity)?;
            page_stop = Some(alpr_runtime::web::serve_https(
                l,
                web,
                crate::page::router(broker.clone()),
                "regulator page",
            ));
            tracing::info!(%addr, "regulator page serving (HTTPS)");
            Some(addr)
        }
        None => None,
    };
    let task = tokio::spawn(alpr_runtime::server::serve(router, listener, tls, async {
        let _ = rx.await;
    }));
    tracing::info!(%addr, "broker serving");
    Ok(RunningBroker {
        addr,
        broker,
        page_addr,
        stop: Some(tx),
        page_stop,
        task: Some(task),
        crl_task,
        head_task,
        probe_task,
    })
}
