//! Keeps the [`View`](crate::view::View) in step with the store: informers on
//! Services, EndpointSlices, Namespaces (and Pods, for verified pod records) mark
//! services dirty; one updater task rebuilds the dirty entries and applies a whole
//! burst of changes under one write lock, so an answer is never built from half an
//! update and encoded answers are invalidated once per burst.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use capstan_api::informer::{self, indexers, Event, Store, TaskGuard};
use capstan_api::{Client, Kind, ObjectRef};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::{mpsc, oneshot};

use crate::handler::Shared;
use crate::view::{slice_service, ServiceEntry};

const BY_SERVICE: &str = "service";

fn slice_by_service(s: &EndpointSlice) -> Vec<String> {
    slice_service(s)
        .map(|(ns, name)| format!("{ns}/{name}"))
        .into_iter()
        .collect()
}

enum Dirty {
    Service(String, String),
    AllServices,
    Namespaces,
    Pod(String, String),
    AllPods,
    /// Answered once everything sent before it is in the view.
    Barrier(oneshot::Sender<()>),
}

/// The informer caches the view is built from.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    namespaces: Store<Namespace>,
    pods: Option<Store<Pod>>,
}

/// Starts the informers and the updater. Returns their tasks (aborted on drop) once
/// the caches have synced and the view holds their content, or after `sync_wait`
/// (CoreDNS serves after 5 s even when the API is not reachable).
pub async fn start(
    client: Client,
    shared: Arc<Shared>,
    with_pods: bool,
    sync_wait: Duration,
) -> TaskGuard {
    let mut slice_idx = indexers::standard::<EndpointSlice>();
    slice_idx.push((BY_SERVICE, slice_by_service));
    let caches = Caches {
        services: Store::new(vec![]),
        slices: Store::new(slice_idx),
        namespaces: Store::new(vec![]),
        pods: with_pods.then(|| Store::new(vec![])),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = TaskGuard::default();
    {
        let tx = tx.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            caches.services.clone(),
            move |ev: &Event<Service>| {
                let _ = match ev {
                    Event::Apply(s) | Event::Delete(s) => tx.send(service_key(&s.metadata)),
                    Event::Remove(r) => tx.send(Dirty::Service(
                        r.namespace.clone().unwrap_or_default(),
                        r.name.clone(),
                    )),
                    Event::Restart { .. } => tx.send(Dirty::AllServices),
                };
            },
        ));
    }
    {
        let tx = tx.clone();
        let slices = caches.slices.clone();
        // A removed slice leaves only its name: which service it served is known from
        // the last state this closure saw.
        let mut owner: HashMap<ObjectRef, (String, String)> = HashMap::new();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            slices,
            move |ev: &Event<EndpointSlice>| match ev {
                Event::Apply(s) | Event::Delete(s) => {
                    let r = ObjectRef::of(s.as_ref());
                    let now = slice_service(s);
                    let before = if matches!(ev, Event::Delete(_)) {
                        owner.remove(&r)
                    } else {
                        match &now {
                            Some(k) => owner.insert(r, k.clone()),
                            None => owner.remove(&r),
                        }
                    };
                    for (ns, name) in before.into_iter().chain(now) {
                        let _ = tx.send(Dirty::Service(ns, name));
                    }
                }
                Event::Remove(r) => {
                    if let Some((ns, name)) = owner.remove(r) {
                        let _ = tx.send(Dirty::Service(ns, name));
                    }
                }
                Event::Restart { objects, .. } => {
                    owner = objects
                        .iter()
                        .filter_map(|s| Some((ObjectRef::of(s.as_ref()), slice_service(s)?)))
                        .collect();
                    let _ = tx.send(Dirty::AllServices);
                }
            },
        ));
    }
    {
        let tx = tx.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            caches.namespaces.clone(),
            move |_ev: &Event<Namespace>| {
                let _ = tx.send(Dirty::Namespaces);
            },
        ));
    }
    if let Some(pods) = &caches.pods {
        let tx = tx.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            pods.clone(),
            move |ev: &Event<Pod>| {
                let _ = match ev {
                    Event::Apply(p) | Event::Delete(p) => tx.send(Dirty::Pod(
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default(),
                    )),
                    Event::Remove(r) => tx.send(Dirty::Pod(
                        r.namespace.clone().unwrap_or_default(),
                        r.name.clone(),
                    )),
                    Event::Restart { .. } => tx.send(Dirty::AllPods),
                };
            },
        ));
    }
    tasks
        .0
        .push(tokio::spawn(updater(rx, caches.clone(), shared.clone())));

    let synced = async {
        caches.services.wait_ready().await;
        caches.slices.wait_ready().await;
        caches.namespaces.wait_ready().await;
        if let Some(p) = &caches.pods {
            p.wait_ready().await;
        }
        let (done, wait) = oneshot::channel();
        let _ = tx.send(Dirty::Barrier(done));
        let _ = wait.await;
    };
    if tokio::time::timeout(sync_wait, synced).await.is_err() {
        tracing::warn!(
            after = ?sync_wait,
            "the store's services are not synced yet: serving what is known so far"
        );
    }
    tasks
}

fn service_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Dirty {
    Dirty::Service(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The addresses a pod answers for: its IPs while it runs.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|s| s.parse::<IpAddr>().ok()),
        );
    }
    ips
}

async fn updater(mut rx: mpsc::UnboundedReceiver<Dirty>, caches: Caches, shared: Arc<Shared>) {
    // Pod IPs as last applied to the view, to remove them when they change.
    let mut applied_pods: HashMap<(String, String), Vec<IpAddr>> = HashMap::new();
    while let Some(first) = rx.recv().await {
        let mut services: HashSet<(String, String)> = HashSet::new();
        let mut all_services = false;
        let mut namespaces = false;
        let mut pods: HashSet<(String, String)> = HashSet::new();
        let mut all_pods = false;
        let mut barriers = Vec::new();
        let mut next = Some(first);
        // Take the whole burst that is queued now (bounded, so a flood cannot keep
        // the view from ever being updated).
        let mut taken = 0;
        while let Some(d) = next.take() {
            match d {
                Dirty::Service(ns, name) => {
                    services.insert((ns, name));
                }
                Dirty::AllServices => all_services = true,
                Dirty::Namespaces => namespaces = true,
                Dirty::Pod(ns, name) => {
                    pods.insert((ns, name));
                }
                Dirty::AllPods => all_pods = true,
                Dirty::Barrier(b) => barriers.push(b),
            }
            taken += 1;
            if taken < 100_000 {
                next = rx.try_recv().ok();
            }
        }
        if all_services {
            services.extend(shared.view.read().service_keys());
            for s in caches.services.list() {
                if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                    services.insert((ns.clone(), name.clone()));
                }
            }
        }
        let entries: Vec<(String, String, Option<ServiceEntry>)> = services
            .into_iter()
            .map(|(ns, name)| {
                let r = ObjectRef::namespaced(Kind::Service, ns.as_str(), name.as_str());
                let entry = caches.services.get(&r).and_then(|svc| {
                    let slices = caches.slices.by_index(BY_SERVICE, &format!("{ns}/{name}"));
                    ServiceEntry::build(&svc, &slices)
                });
                (ns, name, entry)
            })
            .collect();
        let namespace_names: Option<HashSet<String>> = namespaces.then(|| {
            caches
                .namespaces
                .list()
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect()
        });
        let mut pod_changes: Vec<((String, String), Vec<IpAddr>)> = Vec::new();
        if let Some(store) = &caches.pods {
            if all_pods {
                pods.extend(applied_pods.keys().cloned());
                for p in store.list() {
                    if let (Some(ns), Some(name)) = (&p.metadata.namespace, &p.metadata.name) {
                        pods.insert((ns.clone(), name.clone()));
                    }
                }
            }
            for (ns, name) in pods {
                let r = ObjectRef::namespaced(Kind::Pod, ns.as_str(), name.as_str());
                let ips = store.get(&r).map(|p| pod_ips(&p)).unwrap_or_default();
                pod_changes.push(((ns, name), ips));
            }
        }
        let changed = {
            let mut view = shared.view.write();
            let mut changed = false;
            for (ns, name, entry) in entries {
                changed |= view.set_service(&ns, &name, entry);
            }
            if let Some(names) = namespace_names {
                changed |= view.set_namespaces(names);
            }
            for (key, ips) in pod_changes {
                let old = applied_pods.remove(&key).unwrap_or_default();
                if old != ips {
                    changed = true;
                }
                for ip in &old {
                    view.pod(&key.0, *ip, false);
                }
                for ip in &ips {
                    view.pod(&key.0, *ip, true);
                }
                if !ips.is_empty() {
                    applied_pods.insert(key, ips);
                }
            }
            if changed {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                // Strictly increasing, also for several changes within one second.
                let serial = u32::try_from(now)
                    .unwrap_or(u32::MAX)
                    .max(view.serial() + 1);
                view.set_serial(serial);
            }
            changed
        };
        if changed {
            shared
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}
