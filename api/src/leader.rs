//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does it: acquire or renew by compare-and-swap, judge a foreign
//! lease expired by the local clock (from when we last saw it change, never from the
//! timestamps in it, so clock skew between machines does not matter), and give up
//! leadership when renewals fail for `renew_deadline`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kind::{Kind, ObjectRef};

/// Leader election settings (kube's defaults: 15 s lease, 10 s renew deadline, 2 s
/// retry period).
#[derive(Clone, Debug)]
pub struct Config {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name (one per component: `capstan-scheduler`, ...).
    pub name: String,
    /// This candidate's identity (unique per process).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl Config {
    /// kube's defaults, in `kube-system`.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Config {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

fn micro_now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Runs the election until the returned task is aborted. The receiver says whether
/// this candidate leads now; it turns false as soon as leadership is lost.
pub fn spawn(
    client: Client,
    config: Config,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut elector = Elector {
            client,
            config,
            observed: None,
            observed_at: Instant::now(),
            last_renew: None,
        };
        loop {
            let leading = elector.try_acquire_or_renew().await;
            let now = Instant::now();
            let is_leader = match leading {
                Ok(true) => {
                    elector.last_renew = Some(now);
                    true
                }
                Ok(false) => {
                    elector.last_renew = None;
                    false
                }
                Err(e) => {
                    tracing::warn!(lease = %elector.config.name, error = %e, "leader election: lease update failed");
                    // Keep leading until the renew deadline runs out.
                    match elector.last_renew {
                        Some(at) if now.duration_since(at) < elector.config.renew_deadline => true,
                        _ => {
                            elector.last_renew = None;
                            false
                        }
                    }
                }
            };
            if *tx.borrow() != is_leader {
                tracing::info!(lease = %elector.config.name, identity = %elector.config.identity, is_leader, "leadership changed");
                tx.send_replace(is_leader);
            }
            tokio::time::sleep(elector.config.retry_period).await;
        }
    });
    (rx, task)
}

struct Elector {
    client: Client,
    config: Config,
    /// The lease record last seen (holder, renewTime, resourceVersion) and when we
    /// saw it change, by our clock.
    observed: Option<(Option<String>, Option<MicroTime>, Option<String>)>,
    observed_at: Instant,
    last_renew: Option<Instant>,
}

impl Elector {
    fn lease_ref(&self) -> ObjectRef {
        ObjectRef::namespaced(Kind::Lease, &self.config.namespace, &self.config.name)
    }

    /// Ok(true) if we hold the lease after this attempt.
    async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let r = self.lease_ref();
        let seconds = self.config.lease_duration.as_secs().max(1) as i32;
        let existing: Option<Lease> = self.client.get_opt(&r).await?;
        let Some(mut lease) = existing else {
            let mut lease = Lease::default();
            lease.metadata.namespace = Some(self.config.namespace.clone());
            lease.metadata.name = Some(self.config.name.clone());
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(micro_now()),
                renew_time: Some(micro_now()),
                lease_transitions: Some(0),
                ..Default::default()
            });
            return match self.client.create(lease).await {
                Ok(_) => Ok(true),
                Err(Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            lease.metadata.resource_version.clone(),
        );
        if self.observed.as_ref() != Some(&record) {
            self.observed = Some(record);
            self.observed_at = Instant::now();
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.config.identity;
        let duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
        let expired = holder.is_empty() || self.observed_at.elapsed() > duration;
        if !ours && !expired {
            return Ok(false);
        }
        let mut new = spec.clone();
        new.holder_identity = Some(self.config.identity.clone());
        new.lease_duration_seconds = Some(seconds);
        new.renew_time = Some(micro_now());
        if !ours {
            new.acquire_time = Some(micro_now());
            new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new);
        match self.client.update(lease).await {
            Ok(_) => Ok(true),
            // Someone else wrote first: re-read next round.
            Err(Error::Conflict { .. }) | Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Gives the lease up (holder cleared), so another candidate takes over at once
/// instead of after the lease duration, as client-go's ReleaseOnCancel does.
pub async fn release(client: &Client, config: &Config) -> Result<()> {
    let r = ObjectRef::namespaced(Kind::Lease, &config.namespace, &config.name);
    let Some(mut lease) = client.get_opt::<Lease>(&r).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(micro_now());
    client.update(lease).await.map(|_| ())
}
