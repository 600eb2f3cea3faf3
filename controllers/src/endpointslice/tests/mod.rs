//! Table tests of [`super::desired_slices`], most rebuilt from Kubernetes' own
//! `reconciler_test.go`, `utils_test.go`, `topologycache` and `trafficdist`
//! tests, plus the topology-aware routing examples of the Kubernetes docs.
//!
//! Fixtures build objects the way Kubernetes' tests do (namespace `test`, pods
//! `pod<n>` on `node-1`, a Service selecting `foo=bar`), and [`Store`] plays the
//! API server: it names created slices, checks that updates compare-and-swap on
//! the stored resourceVersion, and feeds the result to the next sync.
// Tables are tuples so that each case stays one row.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod endpoints;
mod reconcile;
mod topology;
mod trafficdist;

use std::collections::{BTreeMap, HashMap};

use capstan_api::k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use capstan_api::k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice, ForNode, ForZone,
};
use capstan_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ObjectMeta, OwnerReference, Time,
};
use capstan_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

pub(super) const NS: &str = "test";

/// A ClusterIP Service `name` selecting `foo=bar`, IPv4, one TCP port named
/// after the Service, 80 → 80 (as Kubernetes' `newServiceAndEndpointMeta`).
fn service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NS.to_string()),
            uid: Some(format!("{NS}-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.10".to_string()),
            ip_families: Some(vec!["IPv4".to_string()]),
            selector: Some([("foo".to_string(), "bar".to_string())].into()),
            ports: Some(vec![ServicePort {
                name: Some(name.to_string()),
                port: 80,
                protocol: Some("TCP".to_string()),
                target_port: Some(IntOrString::Int(80)),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn spec_mut(svc: &mut Service) -> &mut ServiceSpec {
    svc.spec.as_mut().unwrap()
}

fn set_target_port(svc: &mut Service, target: IntOrString) {
    spec_mut(svc).ports.as_mut().unwrap()[0].target_port = Some(target);
}

fn annotate(svc: &mut Service, key: &str, value: &str) {
    svc.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
}

/// Pod `pod<n>` on `node-1` with IP `10.0.<n/250>.<n%250+1>` (Kubernetes'
/// `newPod`, with room for more than 250 pods).
fn pod(n: usize, ready: bool) -> Pod {
    let ip = format!("10.0.{}.{}", n / 250, n % 250 + 1);
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod{n}")),
            namespace: Some(NS.to_string()),
            uid: Some(format!("uid-{n}")),
            labels: Some([("foo".to_string(), "bar".to_string())].into()),
            resource_version: Some(n.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "container-1".to_string(),
                ..Container::default()
            }],
            node_name: Some("node-1".to_string()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_string(),
                status: if ready { "True" } else { "False" }.to_string(),
                ..PodCondition::default()
            }]),
            phase: Some("Running".to_string()),
            ..PodStatus::default()
        }),
    }
}

fn pods(n: usize) -> Vec<Pod> {
    (0..n).map(|i| pod(i, i % 3 != 0)).collect()
}

fn on_node(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().unwrap().node_name = Some(node.to_string());
    p
}

fn set_ready(p: &mut Pod, ready: bool) {
    p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status =
        if ready { "True" } else { "False" }.to_string();
}

fn terminating(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    p
}

fn with_container_port(mut p: Pod, name: &str, port: i32) -> Pod {
    p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }]);
    p
}

fn refs(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter().collect()
}

/// A ready worker node.
fn node(zone: Option<&str>, cpu_millis: i64) -> NodeInfo {
    NodeInfo {
        zone: zone.map(str::to_string),
        allocatable_cpu_millis: cpu_millis,
        ready: true,
        control_plane: false,
    }
}

/// `node-1` without a zone: what most reconciler tests run on.
fn one_node() -> HashMap<String, NodeInfo> {
    [("node-1".to_string(), node(None, 1000))].into()
}

/// The endpoint Kubernetes writes for `pod<n>` of [`pod`].
fn endpoint_of(n: usize, ready: bool, zone: Option<&str>) -> Endpoint {
    Endpoint {
        addresses: vec![format!("10.0.{}.{}", n / 250, n % 250 + 1)],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        }),
        node_name: Some("node-1".to_string()),
        zone: zone.map(str::to_string),
        target_ref: Some(capstan_api::k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".to_string()),
            namespace: Some(NS.to_string()),
            name: Some(format!("pod{n}")),
            uid: Some(format!("uid-{n}")),
            ..Default::default()
        }),
        ..Endpoint::default()
    }
}

fn zone_hints(zones: &[&str]) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(
            zones
                .iter()
                .map(|z| ForZone {
                    name: z.to_string(),
                })
                .collect(),
        ),
        for_nodes: None,
    })
}

fn node_and_zone_hints(node: &str, zone: &str) -> Option<EndpointHints> {
    Some(EndpointHints {
        for_zones: Some(vec![ForZone {
            name: zone.to_string(),
        }]),
        for_nodes: Some(vec![ForNode {
            name: node.to_string(),
        }]),
    })
}

/// The port list of [`service`]'s slices.
fn svc_ports(name: &str, port: i32) -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some(name.to_string()),
        port: Some(port),
        protocol: Some("TCP".to_string()),
        app_protocol: None,
    }]
}

/// An existing slice of `svc` as the controller would have written it.
fn existing_slice(
    svc: &Service,
    name: &str,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    let svc_name = svc.metadata.name.clone().unwrap();
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NS.to_string()),
            uid: Some(format!("slice-uid-{name}")),
            resource_version: Some("1".to_string()),
            labels: Some(
                [
                    (LABEL_SERVICE_NAME.to_string(), svc_name.clone()),
                    (LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Service".to_string(),
                name: svc_name,
                uid: svc.metadata.uid.clone().unwrap(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_string(),
        endpoints: Some(endpoints),
        ports: Some(ports),
    }
}

fn endpoints(slice: &EndpointSlice) -> &[Endpoint] {
    slice.endpoints.as_deref().unwrap_or_default()
}

/// Plays the API server for the slices of one namespace.
#[derive(Clone, Debug, Default)]
struct Store {
    slices: BTreeMap<String, EndpointSlice>,
    next_name: usize,
    revision: u64,
}

impl Store {
    fn with(slices: Vec<EndpointSlice>) -> Self {
        let mut store = Store {
            revision: 10,
            ..Store::default()
        };
        for s in slices {
            store.slices.insert(s.metadata.name.clone().unwrap(), s);
        }
        store
    }

    fn list(&self) -> Vec<EndpointSlice> {
        self.slices.values().cloned().collect()
    }

    fn sync(
        &self,
        svc: &Service,
        pods: &[Pod],
        nodes: &HashMap<String, NodeInfo>,
        opts: &Options,
    ) -> Changes {
        desired_slices(svc, &refs(pods), nodes, &self.list(), opts)
    }

    /// Writes `changes` like the API server would, checking the controller's
    /// contract: creates are named by the server, updates and deletes name a
    /// stored slice and carry its resourceVersion.
    fn apply(&mut self, changes: &Changes) {
        for slice in &changes.create {
            assert!(slice.metadata.name.is_none(), "create with a name");
            let prefix = slice.metadata.generate_name.clone().unwrap();
            let name = format!("{prefix}gen{}", self.next_name);
            assert!(!self.slices.contains_key(&name), "name {name} taken");
            self.next_name += 1;
            self.revision += 1;
            let mut slice = slice.clone();
            slice.metadata.name = Some(name.clone());
            slice.metadata.uid = Some(format!("slice-uid-{name}"));
            slice.metadata.resource_version = Some(self.revision.to_string());
            self.slices.insert(name, slice);
        }
        for slice in &changes.update {
            let name = slice.metadata.name.clone().unwrap();
            let stored = self.slices.get(&name).expect("update of a missing slice");
            assert_eq!(
                stored.metadata.resource_version, slice.metadata.resource_version,
                "update of {name} does not compare-and-swap on the stored revision"
            );
            assert_eq!(
                stored.metadata.uid, slice.metadata.uid,
                "{name} changed uid"
            );
            assert_eq!(
                stored.address_type, slice.address_type,
                "addressType is immutable"
            );
            self.revision += 1;
            let mut slice = slice.clone();
            slice.metadata.resource_version = Some(self.revision.to_string());
            self.slices.insert(name, slice);
        }
        for slice in &changes.delete {
            let name = slice.metadata.name.clone().unwrap();
            assert!(
                self.slices.remove(&name).is_some(),
                "delete of a missing slice {name}"
            );
        }
    }

    /// Syncs, applies, and checks that a second sync finds nothing to write.
    fn converge(
        &mut self,
        svc: &Service,
        pods: &[Pod],
        nodes: &HashMap<String, NodeInfo>,
        opts: &Options,
    ) -> Changes {
        let changes = self.sync(svc, pods, nodes, opts);
        self.apply(&changes);
        let again = self.sync(svc, pods, nodes, opts);
        assert!(again.is_empty(), "second sync is not a no-op: {again:#?}");
        changes
    }

    fn lengths(&self) -> Vec<usize> {
        let mut l: Vec<usize> = self.slices.values().map(|s| endpoints(s).len()).collect();
        l.sort_unstable();
        l
    }
}

/// (creates, updates, deletes)
fn counts(c: &Changes) -> (usize, usize, usize) {
    (c.create.len(), c.update.len(), c.delete.len())
}

fn sorted_lengths<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<usize> {
    let mut l: Vec<usize> = slices.into_iter().map(|s| endpoints(s).len()).collect();
    l.sort_unstable();
    l
}

fn opts(max: usize) -> Options {
    Options {
        max_endpoints_per_slice: max,
    }
}
