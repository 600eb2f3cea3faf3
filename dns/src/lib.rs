//! `capstan-dns`: the cluster DNS server. It owns Kubernetes DNS-based service
//! discovery (schema 1.1.0, as CoreDNS's `kubernetes` plugin serves it) for the
//! cluster zone, answered from informer caches of Services, EndpointSlices,
//! Namespaces and (optionally) Pods, and the forwarding of every other name to
//! upstream resolvers with a bounded cache.
//!
//! - [`view`]: the zone's data, built from objects; [`sync`] keeps it current.
//! - [`answer`]: the pure function from a question and a view to records.
//! - [`handler`]: hickory-server's request handler around it (request checks,
//!   forwarding); [`server`]: the UDP and TCP listeners and `/metrics`.
//! - [`forward`]: upstream resolvers and their cache; [`metrics`]: CoreDNS's
//!   metric names.

pub mod answer;
pub mod forward;
pub mod handler;
pub mod metrics;
pub mod server;
pub mod sync;
pub mod view;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use answer::{answer, Outcome, PodRecords, Zone};
pub use forward::{ForwardConfig, Forwarder};
pub use handler::{Handler, Shared};
pub use view::View;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A listener failed.
    #[error("DNS listener: {0}")]
    Serve(std::io::Error),
}

/// Everything `capstan dns` is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP address to answer on.
    pub listen: SocketAddr,
    /// The cluster zone.
    pub zone: Zone,
    /// Upstream forwarding (no upstreams: other names are refused).
    pub forward: ForwardConfig,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// UDP loops (one socket each, sharing the port).
    pub workers: usize,
    /// Longest wait for the first sync before serving.
    pub sync_wait: Duration,
}

/// The `nameserver` entries of a resolv.conf, as port-53 addresses.
pub fn resolv_conf_upstreams(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // Scoped IPv6 addresses (`fe80::1%eth0`) are not supported: skipped.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Runs the DNS server against the store until a listener fails. Waits for the
/// caches' first sync (at most `sync_wait`) before answering, so a fresh server
/// does not deny names that exist.
pub async fn run(client: capstan_api::Client, mut config: Config) -> Result<(), Error> {
    let (udp, tcp) = server::bind(config.listen, config.workers)
        .await
        .map_err(|e| Error::Bind(config.listen, e))?;
    let local = tcp.local_addr().map_err(Error::Serve)?;
    if config.zone.ns_addrs.is_empty() && !local.ip().is_unspecified() {
        config.zone.ns_addrs.push(local.ip());
    }
    // Forwarding to ourselves would loop (also through loopback when listening on
    // every address).
    let is_self = |u: &SocketAddr| {
        u.port() == local.port()
            && (u.ip() == local.ip() || (local.ip().is_unspecified() && u.ip().is_loopback()))
    };
    config.forward.upstreams.retain(|u| !is_self(u));
    let forwarder = Forwarder::new(config.forward.clone());
    let shared = Arc::new(Shared::new(
        config.zone.clone(),
        forwarder,
        metrics::Metrics::new(&local.to_string()),
    ));
    let handler = Handler(shared.clone());
    let with_pods = config.zone.pods == PodRecords::Verified;
    let _informers = sync::start(client, shared.clone(), with_pods, config.sync_wait).await;
    let metrics_task = match config.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::Bind(addr, e))?;
            tracing::info!(%addr, "serving /metrics");
            Some(tokio::spawn(server::serve_metrics(handler.clone(), l)))
        }
        None => None,
    };
    tracing::info!(
        listen = %local,
        zone = %config.zone.origin,
        services = shared.view.read().services(),
        upstreams = ?shared.forwarder.as_ref().map(|f| f.upstreams().to_vec()).unwrap_or_default(),
        "cluster DNS serving"
    );
    let r = server::serve(handler, udp, tcp).await.map_err(Error::Serve);
    if let Some(t) = metrics_task {
        t.abort();
    }
    r
}
