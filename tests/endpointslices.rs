//! The controller manager as a real process (`capstan controllers`) against a real
//! `capstan server`: EndpointSlices follow pods through create, ready, terminating
//! and delete; a silent node turns Unknown, gets the unreachable taints, and its
//! pods' endpoints stop being ready; a deleted Service loses its slices.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_api::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use capstan_api::k8s_openapi::api::core::v1::{
    Container, ContainerPort, Event, Namespace, Node, NodeCondition, NodeStatus, Pod, PodCondition,
    PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use capstan_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use capstan_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use capstan_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use capstan_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use capstan_api::{Client, Kind, ObjectRef};
use common::{server_command_for, Cluster, WAIT};

/// A `capstan controllers` process, killed by PID on drop.
struct Controllers(Child);

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_controllers(endpoint: &str, dir: &std::path::Path) -> Controllers {
    let log = std::fs::File::create(dir.join("controllers.log")).unwrap();
    let child = server_command_for("controllers")
        .args(["--endpoints", &format!("http://{endpoint}")])
        .args(["--service-cluster-ip-range", "10.96.0.0/16"])
        .args([
            "--node-monitor-grace-period",
            "3s",
            "--node-monitor-period",
            "500ms",
        ])
        .args(["--max-endpoints-per-slice", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Controllers(child)
}

/// Polls `f` until it returns `Some`, panicking after `WAIT`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > WAIT {
            panic!("{what}: not reached within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node(name: &str, zone: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels =
        Some([("topology.kubernetes.io/zone".to_string(), zone.to_string())].into());
    n.status = Some(NodeStatus {
        allocatable: Some([("cpu".to_string(), Quantity("4".into()))].into()),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    n
}

fn lease(node: &str) -> Lease {
    let mut l = Lease::default();
    l.metadata.namespace = Some("kube-node-lease".into());
    l.metadata.name = Some(node.into());
    l.spec = Some(LeaseSpec {
        holder_identity: Some(node.into()),
        lease_duration_seconds: Some(40),
        renew_time: Some(MicroTime(capstan_api::k8s_openapi::jiff::Timestamp::now())),
        ..Default::default()
    });
    l
}

fn pod(name: &str, ip: &str, node: &str, ready: bool) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some("shop".into());
    p.metadata.name = Some(name.into());
    p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    p.spec = Some(PodSpec {
        node_name: Some(node.into()),
        containers: vec![Container {
            name: "web".into(),
            image: Some("nginx".into()),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    });
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.into()),
        pod_ips: Some(vec![PodIP { ip: ip.into() }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

/// (address, ready, serving, terminating) per endpoint of the Service's slices.
async fn endpoints(client: &Client) -> BTreeMap<String, (bool, bool, bool)> {
    let slices = client
        .list::<EndpointSlice>(Some("shop"))
        .await
        .unwrap()
        .items;
    let mut out = BTreeMap::new();
    for s in slices {
        if s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .map(String::as_str)
            != Some("web")
        {
            continue;
        }
        assert_eq!(s.address_type, "IPv4");
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!(port.port, Some(8080), "named targetPort resolved");
        assert_eq!(port.name.as_deref(), Some("http"));
        for e in s.endpoints.iter().flatten() {
            let c = e.conditions.clone().unwrap_or_default();
            out.insert(
                e.addresses[0].clone(),
                (
                    c.ready == Some(true),
                    c.serving == Some(true),
                    c.terminating == Some(true),
                ),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_follow_pods_and_nodes() {
    let cluster = Cluster::start(1);
    let _controllers = start_controllers(cluster.endpoint(0), cluster.dir());
    let plain = Client::connect(&[cluster.endpoint(0).to_string()])
        .await
        .unwrap();
    // The manager publishes its ranges first; writers allocate from them.
    eventually("ranges published", || async {
        capstan_controllers::alloc::Ranges::read(&plain)
            .await
            .ok()
            .flatten()
    })
    .await;
    let allocator = capstan_controllers::alloc::Allocator::load(&plain)
        .await
        .unwrap();
    let client = plain.with_service_allocator(Arc::new(allocator));

    let mut n = Namespace::default();
    n.metadata.name = Some("shop".into());
    client.create(n).await.unwrap();
    for (n, z) in [("n1", "a"), ("n2", "b")] {
        client.create(node(n, z)).await.unwrap();
        client.create(lease(n)).await.unwrap();
    }
    let mut svc = Service::default();
    svc.metadata.namespace = Some("shop".into());
    svc.metadata.name = Some("web".into());
    svc.spec = Some(ServiceSpec {
        selector: Some([("app".to_string(), "web".to_string())].into()),
        ports: Some(vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            target_port: Some(IntOrString::String("http".into())),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let svc = client.create(svc).await.unwrap();
    assert!(svc.spec.unwrap().cluster_ip.unwrap().starts_with("10.96."));

    // Five pods, not ready: two slices (max 3 per slice), nothing ready.
    for i in 1..=5 {
        let n = if i % 2 == 0 { "n2" } else { "n1" };
        client
            .create(pod(&format!("web-{i}"), &format!("10.244.0.{i}"), n, false))
            .await
            .unwrap();
    }
    eventually("five endpoints, not ready", || async {
        let e = endpoints(&client).await;
        (e.len() == 5 && e.values().all(|(r, s, t)| !r && !s && !t)).then_some(())
    })
    .await;
    let slices = client
        .list::<EndpointSlice>(Some("shop"))
        .await
        .unwrap()
        .items;
    assert_eq!(slices.len(), 2, "5 endpoints at 3 per slice");
    let slice = &slices[0];
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Service", "web")
    );

    // Pods become ready.
    for i in 1..=5 {
        let r = ObjectRef::namespaced(Kind::Pod, "shop", format!("web-{i}"));
        let mut p: Pod = client.get(&r).await.unwrap();
        p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        client.update(p).await.unwrap();
    }
    eventually("all ready", || async {
        let e = endpoints(&client).await;
        (e.len() == 5 && e.values().all(|(r, s, t)| *r && *s && !*t)).then_some(())
    })
    .await;

    // Topology hints asked for with too few endpoints for two zones: Kubernetes'
    // Warning event, stored as an Event on the Service that expires with its lease.
    let r = ObjectRef::namespaced(Kind::Service, "shop", "web");
    let mut auto: Service = client.get(&r).await.unwrap();
    auto.metadata.annotations = Some(
        [(
            "service.kubernetes.io/topology-mode".to_string(),
            "Auto".to_string(),
        )]
        .into(),
    );
    client.update(auto).await.unwrap();
    let event = eventually("a TopologyAwareHintsDisabled event", || async {
        client
            .list::<Event>(Some("shop"))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("TopologyAwareHintsDisabled")
                    && e.involved_object.name.as_deref() == Some("web")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Service"));
    assert_eq!(
        event.source.and_then(|s| s.component).as_deref(),
        Some("endpoint-slice-controller")
    );
    let stored = client
        .etcd()
        .kv_client()
        .get(
            ObjectRef::namespaced(Kind::Event, "shop", event.metadata.name.unwrap()).key(),
            None,
        )
        .await
        .unwrap();
    assert_ne!(stored.kvs()[0].lease(), 0, "events expire with a lease");

    // One terminates: still listed, terminating and serving, not ready.
    client
        .mark_deleting::<Pod>(&ObjectRef::namespaced(Kind::Pod, "shop", "web-1"), 30)
        .await
        .unwrap();
    eventually("web-1 terminating", || async {
        let e = endpoints(&client).await;
        (e.get("10.244.0.1") == Some(&(false, true, true))).then_some(())
    })
    .await;
    // And is deleted: gone.
    client
        .delete::<Pod>(&ObjectRef::namespaced(Kind::Pod, "shop", "web-1"), None)
        .await
        .unwrap();
    eventually("web-1 gone", || async {
        let e = endpoints(&client).await;
        (e.len() == 4 && !e.contains_key("10.244.0.1")).then_some(())
    })
    .await;

    // n2 stops renewing its lease (n1 keeps going): n2 becomes Unknown, tainted,
    // and its pods' endpoints are no longer ready.
    let renew = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                let r = ObjectRef::namespaced(Kind::Lease, "kube-node-lease", "n1");
                if let Ok(mut l) = client.get::<Lease>(&r).await {
                    l.spec.as_mut().unwrap().renew_time =
                        Some(MicroTime(capstan_api::k8s_openapi::jiff::Timestamp::now()));
                    let _ = client.update(l).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let n2: Node = eventually("n2 unreachable", || async {
        let n: Node = client
            .get(&ObjectRef::cluster(Kind::Node, "n2"))
            .await
            .unwrap();
        let tainted = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
            });
        tainted.then_some(n)
    })
    .await;
    let ready = n2
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    eventually("n2's endpoints not ready, n1's still ready", || async {
        let e = endpoints(&client).await;
        let ok = e.len() == 4
            && !e["10.244.0.2"].0
            && !e["10.244.0.4"].0
            && e["10.244.0.3"].0
            && e["10.244.0.5"].0;
        ok.then_some(())
    })
    .await;
    let n1: Node = client
        .get(&ObjectRef::cluster(Kind::Node, "n1"))
        .await
        .unwrap();
    assert!(
        n1.spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .is_empty(),
        "n1 kept renewing"
    );
    renew.abort();

    // The Service goes: so do its slices.
    client
        .delete::<Service>(&ObjectRef::namespaced(Kind::Service, "shop", "web"), None)
        .await
        .unwrap();
    eventually("slices removed", || async {
        client
            .list::<EndpointSlice>(Some("shop"))
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
}
