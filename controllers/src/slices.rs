//! The EndpointSlice controller's async shell: informers on Services, Pods, Nodes
//! and EndpointSlices feed a work queue of Service keys; each reconcile runs the
//! pure [`desired_slices`](crate::endpointslice::desired_slices) over the caches and
//! writes the difference with compare-and-swap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_api::client::resource_version;
use capstan_api::events::{self, Recorder};
use capstan_api::informer::{self, indexers, run_workers, Action, Event, Store, WorkQueue};
use capstan_api::k8s_openapi::api::core::v1::{Node, Pod, Service};
use capstan_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use capstan_api::selector::Selector;
use capstan_api::{Client, Error, Kind, ObjectRef};

use crate::endpointslice::{desired_slices, NodeInfo, Options};

use crate::endpointslice::{
    CONTROLLER_NAME as MANAGED_BY, LABEL_MANAGED_BY as MANAGED_BY_LABEL,
    LABEL_SERVICE_NAME as SERVICE_NAME_LABEL,
};

const POD_INDEX: &str = "pod";
/// The component named in the events this controller records (Kubernetes' name).
const EVENT_SOURCE: &str = "endpoint-slice-controller";

/// The caches the controller reads.
#[derive(Clone)]
pub struct Caches {
    /// Services.
    pub services: Store<Service>,
    /// Pods.
    pub pods: Store<Pod>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
}

fn slice_pods(s: &EndpointSlice) -> Vec<String> {
    s.endpoints
        .iter()
        .flatten()
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|t| t.kind.as_deref() == Some("Pod"))
        .map(|t| {
            format!(
                "{}/{}",
                t.namespace.clone().unwrap_or_default(),
                t.name.clone().unwrap_or_default()
            )
        })
        .collect()
}

impl Caches {
    fn new() -> Self {
        let mut slice_idx = indexers::standard::<EndpointSlice>();
        slice_idx.push((POD_INDEX, slice_pods));
        Caches {
            services: Store::default(),
            pods: Store::default(),
            nodes: Store::default(),
            slices: Store::new(slice_idx),
        }
    }
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client, opts: Options, workers: usize) {
    let caches = Caches::new();
    let queue: WorkQueue<ObjectRef> = WorkQueue::default();
    let mut tasks = informer::TaskGuard::default();
    {
        let q = queue.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            caches.services.clone(),
            move |ev: &Event<Service>| {
                for_each(ev, |s| q.add(ObjectRef::of(s)));
            },
        ));
    }
    {
        let q = queue.clone();
        let c = caches.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            caches.pods.clone(),
            move |ev: &Event<Pod>| {
                match ev {
                    // A relist can have changed anything.
                    Event::Restart { .. } | Event::Remove(_) => enqueue_all(&c, &q),
                    Event::Apply(p) | Event::Delete(p) => {
                        for s in services_for_pod(&c, p) {
                            q.add(s);
                        }
                    }
                }
            },
        ));
    }
    {
        let q = queue.clone();
        let c = caches.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            caches.nodes.clone(),
            move |_ev: &Event<Node>| {
                // Zones, CPU and readiness feed topology hints and endpoint zones.
                enqueue_all(&c, &q);
            },
        ));
    }
    {
        let q = queue.clone();
        tasks.0.push(informer::spawn(
            client.clone(),
            None,
            caches.slices.clone(),
            move |ev: &Event<EndpointSlice>| {
                for_each(ev, |s| {
                    if let (Some(ns), Some(svc)) = (
                        s.metadata.namespace.as_deref(),
                        s.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(SERVICE_NAME_LABEL)),
                    ) {
                        q.add(ObjectRef::namespaced(Kind::Service, ns, svc));
                    }
                });
            },
        ));
    }
    caches.services.wait_ready().await;
    caches.pods.wait_ready().await;
    caches.nodes.wait_ready().await;
    caches.slices.wait_ready().await;
    enqueue_all(&caches, &queue);
    let recorder = Arc::new(Recorder::new(client.clone(), EVENT_SOURCE));
    let reconcile = {
        let caches = caches.clone();
        let client = client.clone();
        move |key: ObjectRef| {
            let caches = caches.clone();
            let client = client.clone();
            let opts = opts.clone();
            let recorder = recorder.clone();
            async move { reconcile(&client, &caches, &opts, &recorder, &key).await }
        }
    };
    run_workers(queue, workers, reconcile).await;
    drop(tasks);
}

fn for_each<K>(ev: &Event<K>, mut f: impl FnMut(&K)) {
    match ev {
        Event::Apply(o) | Event::Delete(o) => f(o),
        Event::Restart { objects, .. } => objects.iter().for_each(|o| f(o)),
        Event::Remove(_) => {}
    }
}

fn enqueue_all(c: &Caches, q: &WorkQueue<ObjectRef>) {
    for s in c.services.list() {
        q.add(ObjectRef::of(s.as_ref()));
    }
}

/// Services whose selector matches the pod now, plus those whose slices list it
/// (its labels may have just stopped matching).
fn services_for_pod(c: &Caches, pod: &Pod) -> Vec<ObjectRef> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<ObjectRef> = c
        .services
        .by_index(indexers::NAMESPACE, &ns)
        .iter()
        .filter(|s| selects(s, pod))
        .map(|s| ObjectRef::of(s.as_ref()))
        .collect();
    let key = format!("{ns}/{}", pod.metadata.name.clone().unwrap_or_default());
    for slice in c.slices.by_index(POD_INDEX, &key) {
        if let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        {
            out.push(ObjectRef::namespaced(Kind::Service, &ns, svc));
        }
    }
    out
}

/// The pods a Service selects. Starts from the label index on one of its selector's
/// pairs, so a reconcile costs the Service's pods, not the namespace's.
fn selected_pods(c: &Caches, svc: &Service, ns: &str) -> Vec<Arc<Pod>> {
    let Some((k, v)) = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|m| m.iter().next())
    else {
        return Vec::new();
    };
    c.pods
        .by_index(indexers::LABEL, &format!("{k}={v}"))
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns) && selects(svc, p))
        .collect()
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    match svc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) if !sel.is_empty() => {
            Selector::from_map(sel).matches(pod.metadata.labels.as_ref())
        }
        _ => false,
    }
}

async fn reconcile(
    client: &Client,
    c: &Caches,
    opts: &Options,
    recorder: &Arc<Recorder>,
    key: &ObjectRef,
) -> Result<Action, Error> {
    let ns = key.namespace.clone().unwrap_or_default();
    let existing: Vec<EndpointSlice> = c
        .slices
        .by_index(
            indexers::LABEL,
            &format!("{SERVICE_NAME_LABEL}={}", key.name),
        )
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str)
                == Some(MANAGED_BY)
        })
        .map(|s| s.as_ref().clone())
        .collect();
    let svc = c.services.get(key);
    let managed = svc.as_ref().is_some_and(|s| {
        let spec = s.spec.as_ref();
        spec.and_then(|s| s.selector.as_ref())
            .is_some_and(|m| !m.is_empty())
            && spec.and_then(|s| s.type_.as_deref()) != Some("ExternalName")
    });
    let mut written = 0i64;
    let Some(svc) = svc.filter(|_| managed) else {
        // The Service is gone or unmanaged: its slices go (there is no garbage
        // collector yet to follow the owner references).
        for s in existing {
            let r = ObjectRef::of(&s);
            match client
                .delete::<EndpointSlice>(&r, resource_version(&s))
                .await
            {
                Ok(d) => written = written.max(resource_version(&d).unwrap_or(0)),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        c.slices
            .wait_revision(written, Duration::from_secs(5))
            .await;
        return Ok(Action::AwaitChange);
    };
    let pods = selected_pods(c, &svc, &ns);
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let nodes: HashMap<String, NodeInfo> = c
        .nodes
        .list()
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, NodeInfo::from_node(n))))
        .collect();
    let changes = desired_slices(&svc, &pod_refs, &nodes, &existing, opts);
    // Events are recorded beside the work, never in its way (client-go's recorder
    // is asynchronous too).
    for ev in &changes.events {
        tracing::info!(service = %key, kind = ev.type_, reason = %ev.reason, message = %ev.message, "event");
        let (recorder, object, ev) = (
            recorder.clone(),
            events::reference(svc.as_ref()),
            ev.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = recorder
                .record(&object, ev.type_, &ev.reason, &ev.message)
                .await
            {
                tracing::warn!(error = %e, reason = %ev.reason, "event not recorded");
            }
        });
    }
    for s in changes.delete {
        match client
            .delete::<EndpointSlice>(&ObjectRef::of(&s), resource_version(&s))
            .await
        {
            Ok(d) => written = written.max(resource_version(&d).unwrap_or(0)),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for s in changes.update {
        let s = client.update(s).await?;
        written = written.max(resource_version(&s).unwrap_or(0));
    }
    for mut s in changes.create {
        s.metadata.namespace = Some(ns.clone());
        let s = client.create(s).await?;
        written = written.max(resource_version(&s).unwrap_or(0));
    }
    if written > 0 {
        c.slices
            .wait_revision(written, Duration::from_secs(5))
            .await;
    }
    if !changes.pods_on_unknown_nodes.is_empty() {
        // Kubernetes retries these with backoff: the node may just not be cached yet.
        return Err(Error::BadRequest(format!(
            "{key}: pods on nodes not known yet: {}",
            changes.pods_on_unknown_nodes.join(", ")
        )));
    }
    Ok(Action::AwaitChange)
}
