//! `capstan`: the one binary. Argument parsing and wiring only; the logic
//! lives in the crates (store, api, controllers). `ctl` holds kubectl's verbs and
//! printers, which are a user interface rather than a library.

mod ctl;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use capstan_store::{ClusterState, Store, StoreConfig};
use clap::{Args, Parser, Subcommand};
use tracing::info;

#[derive(Parser, Debug)]
#[command(
    name = "capstan",
    version,
    about = "A small, fast Kubernetes-style cluster core: an etcd v3 compatible Raft store and its controllers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a store member. With no flags: one embedded member on 127.0.0.1:2379
    /// with its data in ./capstan-data. Flags follow etcd's names.
    Server(Box<ServerArgs>),
    /// Snapshot files written by `etcdctl snapshot save` against capstan.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Run the controller manager: ClusterIP/NodePort allocation ranges and repair,
    /// EndpointSlices with topology hints, node lifecycle. Leader-elected.
    Controllers(ControllersArgs),
    /// kubectl's everyday verbs against the store: apply -f, get, delete, describe.
    Ctl(ctl::CtlArgs),
    /// Run the cluster DNS server: Kubernetes DNS-based service discovery for the
    /// cluster zone from the store's Services and EndpointSlices; other names go
    /// to upstream resolvers.
    Dns(DnsArgs),
}

#[derive(Args, Debug)]
struct DnsArgs {
    /// Store client URLs, comma-separated.
    #[arg(
        long,
        env = "CAPSTAN_ENDPOINTS",
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: String,
    /// Address to answer on, UDP and TCP.
    #[arg(long, default_value = "127.0.0.1:1053")]
    listen: std::net::SocketAddr,
    /// The cluster domain (zone) answered from the store.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// TTL of the cluster zone's records and negative answers, in seconds.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    /// Upstream resolvers for other names (`IP` or `IP:PORT`, comma-separated).
    /// Default: the nameservers in /etc/resolv.conf. An empty value turns
    /// forwarding off: other names are REFUSED.
    #[arg(long)]
    upstream: Option<String>,
    /// Pod records `a-b-c-d.<ns>.pod.<zone>`: disabled, insecure (any address in an
    /// existing namespace) or verified (only a pod's own address).
    #[arg(long, default_value = "disabled")]
    pods: String,
    /// Most cached upstream answers.
    #[arg(long, default_value_t = 10_000)]
    cache_size: usize,
    /// Longest time an upstream answer is cached, in seconds (negative ones: at most
    /// 5 s, or the SOA's minimum when lower).
    #[arg(long, default_value_t = 30)]
    cache_max_ttl: u32,
    /// Address to serve /metrics on (CoreDNS's metric names); off when not given.
    #[arg(long)]
    listen_metrics: Option<std::net::SocketAddr>,
    /// UDP worker loops (sockets sharing the port); default: one per core.
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Args, Debug)]
struct ControllersArgs {
    /// Store client URLs, comma-separated.
    #[arg(
        long,
        env = "CAPSTAN_ENDPOINTS",
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: String,
    /// Cluster IP range(s): one CIDR, or an IPv4 and an IPv6 one for dual-stack.
    #[arg(long, default_value = capstan_controllers::alloc::DEFAULT_CLUSTER_IP_RANGE)]
    service_cluster_ip_range: String,
    /// Node port range.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Most endpoints in one EndpointSlice.
    #[arg(long, default_value_t = 100)]
    max_endpoints_per_slice: usize,
    /// Heartbeat age after which a node becomes Ready=Unknown and unreachable.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,
    /// How often node heartbeats are checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: Duration,
    /// EndpointSlice syncs run at once.
    #[arg(long, default_value_t = 5)]
    concurrent_service_endpoint_syncs: usize,
    /// Leader election (on by default; turn off only when one manager runs).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Builds a new member's data dir from a snapshot file, like
    /// `etcdctl snapshot restore`; then start it with the same flags.
    Restore(RestoreArgs),
    /// Checks a snapshot file and prints its hash, revision, keys and size.
    Status {
        /// The snapshot file.
        file: PathBuf,
        /// Output format: table, simple or json.
        #[arg(short = 'w', long = "write-out", default_value = "simple")]
        write_out: String,
    },
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// Data directory to create (must not exist or be empty).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Name of the restored member.
    #[arg(long, default_value = "default")]
    name: String,
    /// The new cluster, `name=peer-url,...` (default: this member alone).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// Token of the new cluster.
    #[arg(long, default_value = "capstan-cluster")]
    initial_cluster_token: String,
    /// This member's peer URLs.
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    initial_advertise_peer_urls: Vec<String>,
}

#[derive(Args, Debug)]
struct ServerArgs {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Directory of the member's data (Raft log and MVCC state, RocksDB).
    #[arg(long, default_value = "capstan-data")]
    data_dir: PathBuf,
    /// URLs to serve clients on (comma-separated).
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    listen_client_urls: Vec<String>,
    /// Client URLs advertised to the cluster (default: --listen-client-urls).
    #[arg(long, value_delimiter = ',')]
    advertise_client_urls: Option<Vec<String>>,
    /// URLs to serve peers on (comma-separated).
    #[arg(long, default_value = "http://127.0.0.1:2380", value_delimiter = ',')]
    listen_peer_urls: Vec<String>,
    /// Peer URLs advertised to the cluster (default: --listen-peer-urls).
    #[arg(long, value_delimiter = ',')]
    initial_advertise_peer_urls: Option<Vec<String>>,
    /// Initial cluster, `name=peer-url,...` (default: this member alone).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// `new` to form a cluster, `existing` to join one.
    #[arg(long, default_value = "new")]
    initial_cluster_state: String,
    /// Token that makes member and cluster ids unique to this cluster.
    #[arg(long, default_value = "capstan-cluster")]
    initial_cluster_token: String,
    /// URLs to serve /metrics and /health on (comma-separated; empty to disable).
    #[arg(long, default_value = "http://127.0.0.1:2381", value_delimiter = ',')]
    listen_metrics_urls: Vec<String>,
    /// Largest client request in bytes.
    #[arg(long, default_value_t = 1536 * 1024)]
    max_request_bytes: usize,
    /// Most operations in one txn.
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
    /// Backend size at which writes are refused (0 = 2 GiB).
    #[arg(long, default_value_t = 0)]
    quota_backend_bytes: u64,
    /// Applied entries between snapshots (the log is purged behind them).
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Interval of watch progress notifications (e.g. 10m, 5s).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    experimental_watch_progress_notify_interval: Duration,
    /// `periodic` (retention is a duration, or hours) or `revision` (a count).
    #[arg(long, default_value = "periodic")]
    auto_compaction_mode: String,
    /// History to keep when compacting automatically; 0 turns it off.
    #[arg(long, default_value = "0")]
    auto_compaction_retention: String,
    /// Client TLS certificate (PEM).
    #[arg(long)]
    cert_file: Option<PathBuf>,
    /// Client TLS key (PEM).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// CA bundle that client certificates must chain to (PEM).
    #[arg(long)]
    trusted_ca_file: Option<PathBuf>,
    /// Require clients to present a certificate signed by --trusted-ca-file.
    #[arg(long)]
    client_cert_auth: bool,
    /// Peer TLS certificate (PEM), served to and presented to other members.
    #[arg(long)]
    peer_cert_file: Option<PathBuf>,
    /// Peer TLS key (PEM).
    #[arg(long)]
    peer_key_file: Option<PathBuf>,
    /// CA bundle for peer certificates (PEM).
    #[arg(long)]
    peer_trusted_ca_file: Option<PathBuf>,
    /// Require peers to present a certificate signed by --peer-trusted-ca-file.
    #[arg(long)]
    peer_client_cert_auth: bool,
    /// Source IP of outgoing peer connections (multi-homed hosts; fault tests).
    #[arg(long)]
    peer_source_ip: Option<std::net::IpAddr>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (examples: 500ms, 5s, 10m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("bad duration unit in {s:?} (use ms, s, m or h)")),
    }
}

fn parse_initial_cluster(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            bail!("--initial-cluster entry {part:?} is not name=peer-url");
        };
        out.push((name.to_string(), url.to_string()));
    }
    Ok(out)
}

impl ServerArgs {
    fn into_config(self) -> Result<StoreConfig> {
        let state = match self.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => bail!("--initial-cluster-state must be new or existing, not {other:?}"),
        };
        Ok(StoreConfig {
            name: self.name,
            data_dir: self.data_dir,
            listen_client_urls: self.listen_client_urls,
            advertise_client_urls: self.advertise_client_urls.unwrap_or_default(),
            listen_peer_urls: self.listen_peer_urls,
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.unwrap_or_default(),
            initial_cluster: match self.initial_cluster {
                Some(s) => parse_initial_cluster(&s)?,
                None => Vec::new(),
            },
            initial_cluster_state: state,
            initial_cluster_token: self.initial_cluster_token,
            listen_metrics_urls: self.listen_metrics_urls,
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            quota_backend_bytes: self.quota_backend_bytes,
            snapshot_count: self.snapshot_count,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            watch_progress_notify_interval: self.experimental_watch_progress_notify_interval,
            peer_source_ip: self.peer_source_ip,
            client_tls: capstan_store::tls::TlsFiles {
                cert: self.cert_file,
                key: self.key_file,
                trusted_ca: self.trusted_ca_file,
                client_cert_auth: self.client_cert_auth,
            },
            peer_tls: capstan_store::tls::TlsFiles {
                cert: self.peer_cert_file,
                key: self.peer_key_file,
                trusted_ca: self.peer_trusted_ca_file,
                client_cert_auth: self.peer_client_cert_auth,
            },
            auto_compaction: capstan_store::config::AutoCompaction::parse(
                &self.auto_compaction_mode,
                &self.auto_compaction_retention,
            )?,
        })
    }
}

async fn run_server(args: ServerArgs) -> Result<()> {
    let config = args.into_config()?;
    let store = Store::start(config)
        .await
        .context("starting the store member")?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(capstan_store::server::serve(store.clone(), rx));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut removed = store.removed();
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = removed.wait_for(|r| *r) => {
            info!("this member was removed from the cluster: shutting down");
        }
        _ = tokio::signal::ctrl_c() => info!("interrupt: shutting down"),
        r = serving => {
            store.shutdown().await;
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e).context("serving"),
                Err(e) => Err(e).context("serving task"),
            };
        }
    }
    let _ = tx.send(true);
    store.shutdown().await;
    Ok(())
}

fn restore(a: RestoreArgs) -> Result<()> {
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", a.name)));
    let config = StoreConfig {
        name: a.name,
        data_dir: data_dir.clone(),
        initial_advertise_peer_urls: a.initial_advertise_peer_urls.clone(),
        listen_peer_urls: a.initial_advertise_peer_urls,
        initial_cluster: match a.initial_cluster {
            Some(s) => parse_initial_cluster(&s)?,
            None => Vec::new(),
        },
        initial_cluster_token: a.initial_cluster_token,
        ..StoreConfig::default()
    };
    let r = capstan_store::node::restore(&a.file, config)
        .with_context(|| format!("restoring {}", a.file.display()))?;
    println!(
        "restored snapshot {} (revision {}) into {}: member {:x}, cluster {:x}",
        a.file.display(),
        r.revision,
        data_dir.display(),
        r.member_id,
        r.cluster_id
    );
    Ok(())
}

fn snapshot_status(file: &std::path::Path, write_out: &str) -> Result<()> {
    let s = capstan_store::snapshot::verify(file)
        .with_context(|| format!("checking {}", file.display()))?;
    // etcdctl's columns: hash, revision, total keys, total size.
    let (hash, rev, keys, size) = (s.hash, s.header.revision, s.kv_records, s.size);
    match write_out {
        "json" => println!(
            "{{\"hash\":{hash},\"revision\":{rev},\"totalKey\":{keys},\"totalSize\":{size}}}"
        ),
        "table" => {
            println!("+----------+----------+------------+------------+");
            println!("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |");
            println!("+----------+----------+------------+------------+");
            println!("| {hash:08x} | {rev:>8} | {keys:>10} | {size:>10} |");
            println!("+----------+----------+------------+------------+");
        }
        "simple" => println!("{hash:x}, {rev}, {keys}, {size}"),
        other => bail!("--write-out must be simple, table or json, not {other:?}"),
    }
    Ok(())
}

/// A store client for comma-separated `--endpoints`.
async fn connect(endpoints: &str) -> Result<capstan_api::Client> {
    let endpoints: Vec<String> = endpoints.split(',').map(|s| s.trim().to_string()).collect();
    capstan_api::Client::connect(&endpoints)
        .await
        .context("connecting to the store")
}

async fn run_controllers(a: ControllersArgs) -> Result<()> {
    let ranges = capstan_controllers::alloc::Ranges::parse(
        &a.service_cluster_ip_range,
        &a.service_node_port_range,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let client = connect(&a.endpoints).await?;
    let allocator = capstan_controllers::alloc::Allocator::load(&client).await?;
    let client = client.with_service_allocator(std::sync::Arc::new(allocator));
    let identity = a.leader_elect.then(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}_{}", host.trim(), std::process::id())
    });
    let config = capstan_controllers::manager::Config {
        ranges,
        max_endpoints_per_slice: a.max_endpoints_per_slice.max(1),
        node_monitor_grace_period: a.node_monitor_grace_period,
        node_monitor_period: a.node_monitor_period,
        endpoint_workers: a.concurrent_service_endpoint_syncs.max(1),
        identity,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = capstan_controllers::manager::run(client, config) => r.context("controller manager")?,
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt: shutting down"),
    }
    Ok(())
}

fn parse_upstreams(s: &str) -> Result<Vec<std::net::SocketAddr>> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<std::net::SocketAddr>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                .map_err(|_| anyhow::anyhow!("--upstream: {s:?} is not IP or IP:PORT"))
        })
        .collect()
}

async fn run_dns(a: DnsArgs) -> Result<()> {
    let mut zone = capstan_dns::Zone::new(&a.cluster_domain).map_err(|e| anyhow::anyhow!(e))?;
    zone.ttl = a.ttl;
    zone.pods = match a.pods.as_str() {
        "disabled" => capstan_dns::PodRecords::Disabled,
        "insecure" => capstan_dns::PodRecords::Insecure,
        "verified" => capstan_dns::PodRecords::Verified,
        other => bail!("--pods must be disabled, insecure or verified, not {other:?}"),
    };
    let upstreams = match &a.upstream {
        Some(s) => parse_upstreams(s)?,
        None => capstan_dns::resolv_conf_upstreams(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
    };
    let mut forward = capstan_dns::ForwardConfig::new(upstreams);
    forward.cache_size = a.cache_size.max(1);
    forward.max_ttl = a.cache_max_ttl;
    let client = connect(&a.endpoints).await?;
    let config = capstan_dns::Config {
        listen: a.listen,
        zone,
        forward,
        metrics_listen: a.listen_metrics,
        workers: a
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1),
        sync_wait: Duration::from_secs(5),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = capstan_dns::run(client, config) => r.context("cluster DNS")?,
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupt: shutting down"),
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // ctl's output is for people and scripts: only warnings go with it.
    let default_filter = match cli.command {
        Command::Ctl(_) => "warn",
        _ => "info,openraft=warn,h2=warn,tower=warn,hyper=warn,hickory_server=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(a) => rt.block_on(run_server(*a)),
        Command::Snapshot(SnapshotCommand::Restore(a)) => restore(a),
        Command::Controllers(a) => rt.block_on(run_controllers(a)),
        Command::Dns(a) => rt.block_on(run_dns(a)),
        Command::Ctl(a) => {
            // kubectl's style: one `error: ...` line and exit 1, no backtrace.
            if let Err(e) = rt.block_on(ctl::run(a)) {
                let msg = format!("{e:#}");
                if msg.starts_with("Error from server") {
                    eprintln!("{msg}");
                } else {
                    eprintln!("error: {msg}");
                }
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Snapshot(SnapshotCommand::Status { file, write_out }) => {
            snapshot_status(&file, &write_out)
        }
    }
}
