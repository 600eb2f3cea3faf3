//! The controller manager: publishes the allocation ranges, wins leader election
//! on the `capstan-controller-manager` Lease, repairs allocations, then runs the
//! EndpointSlice and node lifecycle controllers while it leads. Losing the lease
//! ends the run (the process exits and restarts, as kube-controller-manager does),
//! so two managers never act at once.

use std::time::Duration;

use capstan_api::k8s_openapi::api::core::v1::Namespace;
use capstan_api::leader;
use capstan_api::Client;

use crate::alloc::{repair, Ranges};
use crate::endpointslice::Options;

/// Controller manager settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cluster IP and node port ranges.
    pub ranges: Ranges,
    /// EndpointSlice size limit (`--max-endpoints-per-slice`).
    pub max_endpoints_per_slice: usize,
    /// Heartbeat age after which a node is Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How often nodes are checked (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// Concurrent EndpointSlice syncs (`--concurrent-service-endpoint-syncs`).
    pub endpoint_workers: usize,
    /// Leader election identity; `None` runs without election (one manager only).
    pub identity: Option<String>,
}

/// Why the manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    /// Another manager holds the lease now.
    #[error("leader election lost")]
    LostLease,
    /// A store error at start-up.
    #[error(transparent)]
    Api(#[from] capstan_api::Error),
}

/// The namespaces a cluster always has; the API server's system namespaces
/// controller creates them in Kubernetes.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the system namespaces that do not exist yet.
pub async fn ensure_system_namespaces(client: &Client) -> Result<(), capstan_api::Error> {
    for name in SYSTEM_NAMESPACES {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.into());
        match client.create(ns).await {
            Ok(_) | Err(capstan_api::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs the manager; returns only when leadership is lost or start-up fails.
pub async fn run(client: Client, config: Config) -> Result<(), Stopped> {
    // Namespaces first: the leader Lease lives in kube-system, and writers wait for
    // the published ranges, by which time the namespaces exist.
    ensure_system_namespaces(&client).await?;
    config.ranges.publish(&client).await?;
    let election = config.identity.clone().map(|id| {
        leader::spawn(
            client.clone(),
            leader::Config::new("capstan-controller-manager", id),
        )
    });
    let mut leading = election.as_ref().map(|(rx, _)| rx.clone());
    if let Some(rx) = leading.as_mut() {
        tracing::info!("waiting to become the leading controller manager");
        let _ = rx.wait_for(|l| *l).await;
        tracing::info!("leading; starting controllers");
    }
    let report = repair::repair(&client).await?;
    if !report.released.is_empty() || !report.restored.is_empty() {
        tracing::info!(
            released = report.released.len(),
            restored = report.restored.len(),
            "repaired allocations"
        );
    }
    let opts = Options {
        max_endpoints_per_slice: config.max_endpoints_per_slice,
    };
    let slices = tokio::spawn(crate::slices::run(
        client.clone(),
        opts,
        config.endpoint_workers,
    ));
    let nodes = tokio::spawn(crate::nodes::run(
        client.clone(),
        config.node_monitor_grace_period,
        config.node_monitor_period,
    ));
    let result = match leading.as_mut() {
        Some(rx) => {
            let _ = rx.wait_for(|l| !*l).await;
            Err(Stopped::LostLease)
        }
        None => {
            std::future::pending::<()>().await;
            Ok(())
        }
    };
    slices.abort();
    nodes.abort();
    if let Some((_, task)) = election {
        task.abort();
    }
    result
}
