//! `capstan`: the one binary. Argument parsing and wiring only; the logic
//! lives in the crates (`capstan-store` today).

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
    about = "A small, fast Kubernetes-style cluster core: an etcd v3 compatible Raft store (more components to come)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a store member. With no flags: one embedded member on 127.0.0.1:2379
    /// with its data in ./capstan-data. Flags follow etcd's names.
    Server(ServerArgs),
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

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn,h2=warn,tower=warn,hyper=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(a) => rt.block_on(run_server(a)),
    }
}
