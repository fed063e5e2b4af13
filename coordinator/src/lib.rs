//! authpulse coordinator: agents stream probe results to it over gRPC
//! ([`ingest`]), it stores them ([`store`]), evaluates SLOs ([`slo`]) and
//! serves the HTTP API and `/metrics` ([`api`]). [`start`] wires these
//! together from a [`CoordinatorConfig`] and returns a [`Running`] handle;
//! the `authpulse-coordinator` binary and the CLI's standalone mode are thin
//! shells around it.
pub mod admission;
pub mod agent_tls;
pub mod alerting;
pub mod api;
pub mod api_access;
pub mod audit;
pub mod catalog_docs;
pub mod catalog_watch;
pub mod certs;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod fleet;
pub mod gates;
pub mod http_server;
pub mod ingest;
pub mod latency_sketch;
pub mod leadership;
pub mod openslo;
pub mod private_files;
pub mod prometheus_rules;
pub mod rollup;
pub mod slo;
pub mod slo_cache;
pub mod statuspage;
pub mod store;
pub mod telemetry;
pub mod tls_rotation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use authpulse_proto::catalog::{Catalog, CatalogErrors, load_files};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::metrics_handle;
pub use config::CoordinatorConfig;
use store::Store;

/// How often raw results older than `raw_retention` are deleted.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long shutdown waits for servers and agent streams before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The catalog being served, with the assignment version agents see.
#[derive(Clone, Debug, Default)]
pub struct CatalogSnapshot {
    pub catalog: Arc<Catalog>,
    /// Increases with every change; unchanged catalog = unchanged version,
    /// also across restarts (kept in the database).
    pub version: u64,
    /// False when no catalog files are configured (readiness fails).
    pub loaded: bool,
}

/// A stable text form of everything the catalog means, to tell whether a
/// reload changed anything (source locations excluded).
pub(crate) fn canonical(catalog: &Catalog) -> String {
    let probes: Vec<String> = catalog.probes.iter().map(|p| p.to_json()).collect();
    // Components (and maintenances) only when there are some, so catalogs
    // without them keep the version they had before those existed.
    if !catalog.maintenances.is_empty() {
        serde_json::to_string(&(
            probes,
            &catalog.slos,
            &catalog.gates,
            &catalog.components,
            &catalog.maintenances,
        ))
        .unwrap_or_default()
    } else if catalog.components.is_empty() {
        serde_json::to_string(&(probes, &catalog.slos, &catalog.gates)).unwrap_or_default()
    } else {
        serde_json::to_string(&(probes, &catalog.slos, &catalog.gates, &catalog.components))
            .unwrap_or_default()
    }
}

/// A started coordinator. Dropping it without [`shutdown`](Self::shutdown)
/// still stops the servers, just without waiting for them.
pub struct Running {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    store: Store,
    reloader: Arc<catalog_watch::CatalogReloader>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    sessions: TaskTracker,
}

/// Where agents reach the gRPC service.
enum GrpcDoor {
    /// `grpc_listen`, with mTLS when `tls` is set.
    Listen,
    /// Only connections handed over in this process (standalone).
    InProcess(tokio::sync::mpsc::Receiver<tokio::io::DuplexStream>),
}

/// How the gRPC server gets its connections.
enum GrpcIncoming {
    Tcp(TcpListener, Option<agent_tls::AgentTlsAcceptor>),
    InProcess(tokio::sync::mpsc::Receiver<tokio::io::DuplexStream>),
}

/// One in-process agent connection, as the gRPC server sees it.
struct InProcessStream(tokio::io::DuplexStream);

impl tonic::transport::server::Connected for InProcessStream {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for InProcessStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for InProcessStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Loads the catalog, opens the store, binds both listeners and starts
/// serving. Fails with the full list of catalog errors if the catalog is
/// invalid, or if a port can't be bound.
pub async fn start(config: CoordinatorConfig) -> anyhow::Result<Running> {
    start_with(config, GrpcDoor::Listen).await
}

/// Like [`start`], but opens no gRPC port: agents reach the service only
/// through the returned sender, each `DuplexStream` sent being one
/// connection (the agent's in-process connector makes them). For `authpulse
/// standalone`, whose agent runs in this process: no other process can reach
/// the agent service, so it needs neither TLS nor trust in the network.
/// `grpc_listen`, `tls` and `insecure` are ignored; [`Running::grpc_addr`]
/// is `0.0.0.0:0`.
pub async fn start_in_process(
    mut config: CoordinatorConfig,
) -> anyhow::Result<(Running, tokio::sync::mpsc::Sender<tokio::io::DuplexStream>)> {
    // They describe a port that won't exist (`insecure` only satisfies the
    // configuration check's "tls or insecure" rule).
    config.tls = None;
    config.insecure = true;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let running = start_with(config, GrpcDoor::InProcess(rx)).await?;
    Ok((running, tx))
}

async fn start_with(config: CoordinatorConfig, door: GrpcDoor) -> anyhow::Result<Running> {
    config.check()?;
    // mTLS material is loaded before anything else starts, so a bad file is
    // a startup error naming it.
    let agent_tls = match &config.tls {
        Some(tls) => Some(agent_tls::AgentTlsAcceptor::from_config(tls)?),
        None if matches!(door, GrpcDoor::InProcess(_)) => None,
        None => {
            tracing::warn!(
                grpc_listen = %config.grpc_listen,
                "insecure mode: agents connect over plaintext gRPC without client certificates \
                 and are not authenticated; run only on a trusted network (configure `tls` for mTLS)"
            );
            None
        }
    };

    // Checked first: a coordinator that would serve an open API on the
    // network must not start at all.
    let access = Arc::new(
        api_access::ApiAccess::from_config(
            &config.api,
            config.http_listen,
            config.api.insecure_open,
        )
        .context("HTTP API access")?
        .with_allowed_hosts(&config.http.allowed_hosts),
    );

    // Before reading: a change from here on must trigger a reload.
    let loaded_signature = catalog_watch::signature(&config.catalog);
    let catalog = match load_files(&config.catalog) {
        Ok(c) => c,
        Err(errs) => {
            let n = errs.0.len();
            return Err(
                anyhow::Error::new(errs).context(format!("the catalog is invalid ({n} problems)"))
            );
        }
    };
    let loaded = !config.catalog.is_empty();
    if !loaded {
        tracing::warn!(
            "no catalog files configured (`catalog`); serving an empty catalog and reporting not ready"
        );
    }
    warn_retention(&catalog, config.raw_retention);

    // The recorder first: gauges set before it exists are lost.
    let metrics = metrics_handle();
    let database = config.database()?;
    // Only the coordinator reads its data (results, audit log): 0700.
    // (Not `.` or `/`: a directory that is clearly not ours alone.)
    audit::private_dir(&config.data_dir, config.data_dir.file_name().is_some())
        .with_context(|| format!("data directory {}", config.data_dir.display()))?;
    let store = Store::connect(&database)
        .await
        .with_context(|| format!("cannot open the database {}", database.describe()))?;
    // Other replicas' agents are connected to them: only a coordinator that
    // owns the database alone may declare every stream gone.
    if store.backend() == store::Backend::Sqlite {
        store.mark_all_disconnected().await?;
    }
    let version = store.catalog_version(&canonical(&catalog)).await?;
    slo::sync_store(&store, &catalog).await?;
    tracing::info!(
        version,
        probes = catalog.probes.len(),
        slos = catalog.slos.len(),
        db = %store.location(),
        "catalog loaded"
    );
    metrics::gauge!("authpulse_coordinator_catalog_version").set(version as f64);
    let (catalog_tx, catalog_rx) = watch::channel(Arc::new(CatalogSnapshot {
        catalog: Arc::new(catalog),
        version,
        loaded,
    }));

    telemetry::describe_metrics();
    slo::describe_metrics();
    alerting::describe_metrics();
    leadership::describe_metrics();
    let shutdown = CancellationToken::new();
    let leader = leadership::start(store.clone(), shutdown.clone());

    let (grpc_incoming, grpc_addr) = match door {
        GrpcDoor::Listen => {
            let listener = TcpListener::bind(config.grpc_listen)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (grpc_listen)", config.grpc_listen)
                })?;
            let addr = listener.local_addr()?;
            (GrpcIncoming::Tcp(listener, agent_tls), addr)
        }
        GrpcDoor::InProcess(rx) => (
            GrpcIncoming::InProcess(rx),
            SocketAddr::from(([0, 0, 0, 0], 0)),
        ),
    };
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (http_listen)", config.http_listen))?;
    let http_addr = http_listener.local_addr()?;

    // Ingest tells the alerter about escalation results right after commit,
    // so they page without waiting for the next evaluation.
    let (escalation_tx, escalation_rx) = tokio::sync::mpsc::unbounded_channel();
    let audit_path = config
        .audit_log
        .clone()
        .unwrap_or_else(|| config.data_dir.join("audit.jsonl"));
    let audit_dir = audit_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let audit_key = audit::configured_key(&config.audit, &[&config.data_dir, audit_dir])?;
    let audit = audit::AuditLog::open_with(&audit_path, audit_key)
        .with_context(|| format!("audit log {}", audit_path.display()))?;
    access.watch_catalog(catalog_rx.clone());
    let ingest = ingest::IngestService::new(store.clone(), catalog_rx.clone(), shutdown.clone())
        .with_fleet(config.fleet.clone())
        .with_raw_retention(config.raw_retention)
        .with_escalations(escalation_tx)
        .with_audit(audit.clone());
    let sessions = ingest.tasks();
    let mut tasks = Vec::new();

    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let server = tonic::transport::Server::builder()
            // Finds agents whose connection died silently, so they show as
            // disconnected and their slot frees up.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // An agent needs one stream; a few more cover a reconnect racing
            // the old stream. More on one connection is abuse (each stream
            // is a session task waiting for a Hello).
            .max_concurrent_streams(ingest::MAX_STREAMS_PER_CONNECTION)
            .http2_max_pending_accept_reset_streams(Some(16))
            .tcp_nodelay(true)
            .add_service(ingest.into_server());
        let served = match grpc_incoming {
            // TLS accepted here (agent_tls), so refusals are logged with reasons.
            GrpcIncoming::Tcp(listener, Some(acceptor)) => {
                server
                    .serve_with_incoming_shutdown(
                        agent_tls::incoming(listener, acceptor, stop.clone()),
                        stop.clone().cancelled_owned(),
                    )
                    .await
            }
            GrpcIncoming::Tcp(listener, None) => {
                server
                    .serve_with_incoming_shutdown(
                        TcpListenerStream::new(listener),
                        stop.clone().cancelled_owned(),
                    )
                    .await
            }
            GrpcIncoming::InProcess(rx) => {
                use tokio_stream::StreamExt as _;
                let connections = tokio_stream::wrappers::ReceiverStream::new(rx)
                    .map(|s| Ok::<_, std::io::Error>(InProcessStream(s)));
                server
                    .serve_with_incoming_shutdown(connections, stop.clone().cancelled_owned())
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "gRPC server failed; stopping");
            stop.cancel();
        }
    }));

    let mut reloader = catalog_watch::CatalogReloader::new(
        config.catalog.clone(),
        store.clone(),
        config.raw_retention,
        catalog_tx,
    );
    reloader.audit = audit.clone();
    let reloader = Arc::new(reloader);
    let router = api::router(api::ApiState {
        leader: leader.clone(),
        gate_decisions: Default::default(),
        slo_cache: Default::default(),
        feed_cache: Default::default(),
        store: store.clone(),
        catalog: catalog_rx.clone(),
        metrics,
        fleet: config.fleet.clone(),
        audit: audit.clone(),
        access: access.clone(),
        reloader: (!config.catalog.is_empty()).then(|| reloader.clone()),
        storage: Arc::new(http_server::StorageGuard::new(config.http.storage_timeout)),
        status_page: Arc::new(config.status_page.clone()),
    });
    let stop = shutdown.clone();
    let http_config = config.http.clone();
    tasks.push(tokio::spawn(async move {
        // Header-read timeout and connection cap: see `http_server`.
        http_server::serve(http_listener, router, &http_config, stop).await;
    }));

    let generator_url = format!(
        "{}/api/v1/alerts",
        config
            .alerting
            .external_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_addr}"))
            .trim_end_matches('/')
    );
    let alerter = alerting::Alerter::start(store.clone(), &config.alerting, generator_url)
        .await
        .context("alerting")?;
    tasks.push(tokio::spawn(evaluate_slos(
        store.clone(),
        catalog_rx,
        alerter,
        escalation_rx,
        leader,
        shutdown.clone(),
    )));
    if store.backend() == store::Backend::Postgres {
        tasks.push(tokio::spawn(refresh_rollups(
            store.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(fleet::watch(
        store.clone(),
        config.fleet.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(prune(
        store.clone(),
        config.raw_retention,
        shutdown.clone(),
    )));

    tasks.push(tokio::spawn(
        reloader.clone().watch(loaded_signature, shutdown.clone()),
    ));

    if grpc_addr.port() == 0 {
        // In process (standalone): no gRPC port exists.
        tracing::info!(%http_addr, grpc = "in-process", "coordinator started");
    } else {
        tracing::info!(%grpc_addr, %http_addr, "coordinator started");
    }
    Ok(Running {
        grpc_addr,
        http_addr,
        store,
        reloader,
        shutdown,
        tasks,
        sessions,
    })
}

/// SLOs read per-minute aggregates kept for their whole window, but a
/// latency threshold seen for the first time can only be backfilled from the
/// raw results still retained: say so when its window reaches further back.
pub(crate) fn warn_retention(catalog: &Catalog, retention: Duration) {
    for slo in &catalog.slos {
        if let authpulse_proto::catalog::Window::Rolling(w) = slo.window
            && matches!(slo.sli, authpulse_proto::catalog::Sli::Latency { .. })
            && w > retention
        {
            tracing::info!(
                slo = %slo.id,
                window = %humantime::format_duration(w),
                raw_retention = %humantime::format_duration(retention),
                "a new latency threshold is backfilled from raw results only; until the window has \
                 passed, its older minutes are empty"
            );
        }
    }
}

/// How often a replica sharing PostgreSQL reads the other replicas'
/// minute aggregates into its roll-ups.
pub const ROLLUP_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// PostgreSQL mode: keeps the in-memory roll-ups equal to the shared
/// `minute_counts`, so every replica answers with the same numbers.
async fn refresh_rollups(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(ROLLUP_REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = store.refresh_rollup().await {
            tracing::warn!(error = %e, "refreshing the SLO roll-ups from the database failed");
        }
    }
}

/// Evaluates every SLO every [`slo::GAUGE_INTERVAL`] and right after a
/// catalog change: refreshes the SLO gauges and, on the leader, steps the
/// burn-rate alerts and incidents from the same evaluation.
async fn evaluate_slos(
    store: Store,
    mut catalog: watch::Receiver<Arc<CatalogSnapshot>>,
    mut alerter: alerting::Alerter,
    mut escalations: tokio::sync::mpsc::UnboundedReceiver<std::collections::BTreeSet<String>>,
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(slo::GAUGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = *leader.borrow_and_update();
    // Where the leader's look for escalations other replicas stored starts.
    let mut escalations_from = store::now_ms();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            // A closed channel disables this branch; the tick goes on.
            Ok(()) = catalog.changed() => {}
            Ok(()) = leader.changed() => {}
            Some(probes) = escalations.recv() => {
                if !*leader.borrow() {
                    // The leader finds it in the store (below).
                    continue;
                }
                // Pages at once: no burn math, no waiting for the tick.
                let snapshot = catalog.borrow().clone();
                if let Err(e) = alerter.escalation_seen(&snapshot.catalog, &probes, store::now_ms()).await {
                    tracing::warn!(error = %e, "storing escalation alert state failed");
                }
                continue;
            }
        }
        let snapshot = catalog.borrow_and_update().clone();
        let now = store::now_ms();
        let was_leading = leading;
        leading = *leader.borrow_and_update();
        if leading && !was_leading {
            // Take over what the previous leader fired, so nothing is sent twice.
            if let Err(e) = alerter.reload().await {
                tracing::warn!(error = %e, "loading the alert state failed");
            }
            escalations_from = now - 5 * 60_000;
        }
        match slo::evaluate(&store, &snapshot.catalog, now).await {
            Ok(statuses) => {
                slo::export_gauges(&statuses);
                alerting::routing::export_slo_info(&snapshot.catalog);
                if !leading {
                    if let Err(e) = alerter.follow().await {
                        tracing::warn!(error = %e, "reading the leader's alert state failed");
                    }
                    continue;
                }
                if store.backend() == store::Backend::Postgres {
                    // Escalations another replica ingested.
                    let class = authpulse_proto::v1::FailureClass::Escalation as i32;
                    match store.probes_with_class_since(class, escalations_from).await {
                        Ok(probes) if !probes.is_empty() => {
                            if let Err(e) = alerter
                                .escalation_seen(&snapshot.catalog, &probes, now)
                                .await
                            {
                                tracing::warn!(error = %e, "storing escalation alert state failed");
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "looking for escalations failed"),
                    }
                    // Overlap: results arrive a little after they start.
                    escalations_from = now - 2 * slo::GAUGE_INTERVAL.as_millis() as i64;
                }
                if let Err(e) = alerter.evaluate(&snapshot.catalog, &statuses, now).await {
                    tracing::warn!(error = %e, "storing alert state failed");
                }
                metrics::counter!("authpulse_coordinator_alert_evaluations_total").increment(1);
                // Incidents follow alerts within one evaluation, not only
                // when someone reads the status page.
                if let Err(e) = statuspage::sync(&store, &snapshot.catalog, &statuses, now).await {
                    tracing::warn!(error = %e, "status page sync failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "SLO evaluation failed"),
        }
    }
}

/// Deletes raw results past retention, once at start and then hourly.
async fn prune(store: Store, retention: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = store::now_ms().saturating_sub(retention_ms);
        match store.prune(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned results past raw_retention"),
            Err(e) => tracing::warn!(error = %e, "pruning old results failed"),
        }
    }
}

impl Running {
    /// The bound gRPC address (the real port when the config said 0;
    /// `0.0.0.0:0` after [`start_in_process`], which binds none).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address (the real port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The catalog currently served.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.reloader.catalog_tx.borrow().catalog.clone()
    }

    /// The assignment version currently served.
    pub fn catalog_version(&self) -> u64 {
        self.reloader.catalog_tx.borrow().version
    }

    /// Re-reads the catalog files. If they are invalid, the running catalog
    /// stays and the errors are logged and returned; if they changed, the
    /// new version is pushed to every connected agent.
    pub async fn reload_catalog(&self) -> Result<(), CatalogErrors> {
        self.reloader.reload().await
    }

    /// Resolves when the coordinator stops on its own (a server failed) or
    /// [`shutdown`](Self::shutdown) began.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await
    }

    /// Graceful stop: no new connections, agent streams end with
    /// `UNAVAILABLE` (agents reconnect and resend anything unacked), in-flight
    /// commits finish, then the database is closed.
    pub async fn shutdown(mut self) {
        tracing::info!("coordinator shutting down");
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!("a server did not stop in time; aborting it");
                abort.abort();
            }
        }
        self.sessions.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("agent streams did not finish in time");
        }
        self.store.close().await;
        tracing::info!("coordinator stopped");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
