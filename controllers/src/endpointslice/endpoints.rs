//! The desired side: which address types a Service has, the endpoint a pod
//! becomes and the ports it resolves to, the labels and owner of a slice, and the
//! keys that identify endpoints and port lists across slices.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use capstan_api::k8s_openapi::api::core::v1::{
    ObjectReference, Pod, Service, ServicePort, ServiceSpec,
};
use capstan_api::k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use capstan_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use capstan_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::trafficdist::Heuristic;
use super::{
    NodeInfo, ANNOTATION_TOPOLOGY_AWARE_HINTS, ANNOTATION_TOPOLOGY_MODE, CONTROLLER_NAME,
    LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};

/// An EndpointSlice address type this controller writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AddressType {
    IPv4,
    IPv6,
}

impl AddressType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }
}

/// A Service with the defaults the API server would have applied, read once.
pub(super) struct Svc<'a> {
    service: &'a Service,
    spec: &'a ServiceSpec,
}

impl<'a> Svc<'a> {
    /// `None` for a Service the controller does not manage (no selector: its
    /// endpoints are written by someone else).
    pub(super) fn new(service: &'a Service) -> Option<Self> {
        let spec = service.spec.as_ref()?;
        // An empty selector does not survive the API server's round trip (it is
        // omitted), so it means "no selector" too.
        if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
            return None;
        }
        Some(Svc { service, spec })
    }

    pub(super) fn name(&self) -> &str {
        self.service.metadata.name.as_deref().unwrap_or_default()
    }

    pub(super) fn namespace(&self) -> &str {
        self.service
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default()
    }

    fn uid(&self) -> &str {
        self.service.metadata.uid.as_deref().unwrap_or_default()
    }

    pub(super) fn is_deleting(&self) -> bool {
        self.service.metadata.deletion_timestamp.is_some()
    }

    fn cluster_ip(&self) -> &str {
        self.spec.cluster_ip.as_deref().unwrap_or_default()
    }

    /// Headless for labelling purposes: no cluster IP set, `None` or empty.
    fn headless(&self) -> bool {
        matches!(self.cluster_ip(), "" | "None")
    }

    pub(super) fn publish_not_ready(&self) -> bool {
        self.spec.publish_not_ready_addresses.unwrap_or(false)
    }

    /// The address types from `ipFamilies`, primary first. Without families
    /// (an object written before dual-stack), Kubernetes uses the cluster IP's
    /// family, or both for a headless Service, so that no traffic is lost until
    /// the API server defaults the field.
    pub(super) fn address_types(&self) -> Vec<AddressType> {
        let mut types = Vec::new();
        for family in self.spec.ip_families.iter().flatten() {
            let t = match family.as_str() {
                "IPv4" => AddressType::IPv4,
                "IPv6" => AddressType::IPv6,
                _ => continue,
            };
            if !types.contains(&t) {
                types.push(t);
            }
        }
        if !types.is_empty() {
            return types;
        }
        match self.cluster_ip() {
            "" | "None" => vec![AddressType::IPv4, AddressType::IPv6],
            ip if ip.parse::<std::net::Ipv6Addr>().is_ok() => vec![AddressType::IPv6],
            _ => vec![AddressType::IPv4],
        }
    }

    /// Whether the topology annotation asks for the `Auto` heuristic; the
    /// deprecated annotation takes precedence when both are present.
    pub(super) fn topology_annotation_enabled(&self) -> bool {
        let annotations = self.service.metadata.annotations.as_ref();
        let value = annotations.and_then(|a| {
            a.get(ANNOTATION_TOPOLOGY_AWARE_HINTS)
                .or_else(|| a.get(ANNOTATION_TOPOLOGY_MODE))
        });
        matches!(value.map(String::as_str), Some("Auto" | "auto"))
    }

    /// Whether either topology annotation is set, to any value.
    pub(super) fn has_topology_annotation(&self) -> bool {
        self.service.metadata.annotations.as_ref().is_some_and(|a| {
            [ANNOTATION_TOPOLOGY_AWARE_HINTS, ANNOTATION_TOPOLOGY_MODE]
                .iter()
                .any(|k| a.get(*k).is_some_and(|v| !v.is_empty()))
        })
    }

    /// The hint heuristic `spec.trafficDistribution` asks for, if it is one
    /// this controller knows (PreferSameZone / PreferSameNode are GA in 1.35);
    /// ignored when the topology annotation is on.
    pub(super) fn traffic_distribution(&self) -> Option<Heuristic> {
        if self.topology_annotation_enabled() {
            return None;
        }
        match self.spec.traffic_distribution.as_deref()? {
            "PreferClose" | "PreferSameZone" => Some(Heuristic::SameZone),
            "PreferSameNode" => Some(Heuristic::SameNode),
            _ => None,
        }
    }

    /// The labels a slice of this Service carries: the Service's own labels
    /// except the reserved ones, then the reserved ones.
    pub(super) fn slice_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.own_labels();
        if self.headless() {
            labels.insert(LABEL_HEADLESS.to_string(), String::new());
        }
        labels.insert(LABEL_SERVICE_NAME.to_string(), self.name().to_string());
        labels.insert(LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string());
        labels
    }

    fn own_labels(&self) -> BTreeMap<String, String> {
        self.service
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| !is_reserved_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether an existing slice's labels lag the Service's. Only the copied
    /// labels count: Kubernetes does not rewrite a slice for its reserved ones.
    pub(super) fn labels_changed(&self, slice: &EndpointSlice) -> bool {
        let copied: BTreeMap<&String, &String> = slice
            .metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| !is_reserved_label(k))
            .collect();
        let own = self.own_labels();
        copied.len() != own.len() || own.iter().any(|(k, v)| copied.get(k) != Some(&v))
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".to_string(),
            kind: "Service".to_string(),
            name: self.name().to_string(),
            uid: self.uid().to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Whether the slice belongs to this incarnation of the Service (a Service
    /// deleted and recreated under the same name has another uid).
    pub(super) fn owns(&self, slice: &EndpointSlice) -> bool {
        slice
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == self.uid() && o.kind == "Service" && o.api_version == "v1")
    }

    /// A slice to create, with no endpoints yet.
    pub(super) fn new_slice(
        &self,
        address_type: AddressType,
        ports: &[EndpointPort],
    ) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", self.name())),
                namespace: Some(self.namespace().to_string()),
                labels: Some(self.slice_labels()),
                owner_references: Some(vec![self.owner_reference()]),
                ..ObjectMeta::default()
            },
            address_type: address_type.as_str().to_string(),
            endpoints: Some(Vec::new()),
            ports: Some(ports.to_vec()),
        }
    }

    /// The ports a pod serves for this Service, in Service port order; a named
    /// target port the pod lacks is left out, so such a pod lands in another
    /// slice group. A headless Service may have no ports at all.
    pub(super) fn endpoint_ports(&self, pod: &Pod) -> Vec<EndpointPort> {
        let ports = self.spec.ports.as_deref().unwrap_or_default();
        ports
            .iter()
            .filter_map(|sp| {
                let port = find_port(pod, sp)?;
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(port),
                    protocol: Some(protocol(sp.protocol.as_deref()).to_string()),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect()
    }

    /// The endpoint a pod contributes for one address type (no addresses when
    /// the pod has no IP of that family).
    pub(super) fn pod_endpoint(
        &self,
        pod: &Pod,
        node: Option<&NodeInfo>,
        address_type: AddressType,
    ) -> Endpoint {
        let serving = pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        // Kubernetes keeps ready false for terminating pods for compatibility,
        // unless the Service publishes not-ready addresses.
        let ready = self.publish_not_ready() || (serving && !terminating);
        let spec = pod.spec.as_ref();
        let node_name = spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let hostname = spec
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty())
            .filter(|_| {
                spec.and_then(|s| s.subdomain.as_deref()) == Some(self.name())
                    && pod.metadata.namespace.as_deref().unwrap_or_default() == self.namespace()
            });
        Endpoint {
            addresses: pod_addresses(pod, address_type),
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname,
            node_name,
            zone: node.and_then(|n| n.zone.clone()).filter(|z| !z.is_empty()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_string()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            hints: None,
            deprecated_topology: None,
        }
    }
}

fn is_reserved_label(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

fn protocol(p: Option<&str>) -> &str {
    p.unwrap_or("TCP")
}

/// Whether a pod belongs in a slice at all: terminal pods never, pods without an
/// IP not yet. Terminating pods do (with their conditions saying so).
pub(super) fn pod_wanted(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return false;
    }
    status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        || status.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The container port a Service port targets on this pod: a number as is, a
/// name looked up (with the protocol) in the containers, then in the sidecars
/// (init containers that always restart).
pub(super) fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let name = match &sp.target_port {
        None => return Some(sp.port),
        Some(IntOrString::Int(p)) => return Some(*p),
        Some(IntOrString::String(name)) => name,
    };
    let want = protocol(sp.protocol.as_deref());
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name) && protocol(p.protocol.as_deref()) == want)
        .map(|p| p.container_port)
}

/// The pod's IPs of one family, re-printed canonically. `status.podIPs` is the
/// source, as in Kubernetes; `status.podIP` stands in when the list is absent.
fn pod_addresses(pod: &Pod, address_type: AddressType) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = match status.pod_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(|ip| ip.ip.as_str()).collect(),
        _ => status.pod_ip.as_deref().into_iter().collect(),
    };
    listed
        .into_iter()
        .filter_map(parse_ip_sloppy)
        .filter(|ip| match address_type {
            AddressType::IPv4 => ip.is_ipv4(),
            AddressType::IPv6 => ip.is_ipv6(),
        })
        .map(|ip| ip.to_string())
        .collect()
}

/// Parses an IP the way Kubernetes' `ParseIPSloppy` does: IPv4 octets may carry
/// leading zeros, and an IPv4-mapped IPv6 address is IPv4. Garbage is skipped.
fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
    }
    let octets: Vec<u8> = s
        .split('.')
        .map(|o| {
            if o.is_empty() || o.len() > 3 || !o.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            o.parse::<u8>().ok()
        })
        .collect::<Option<_>>()?;
    let [a, b, c, d] = octets[..] else {
        return None;
    };
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// What makes two endpoints "the same endpoint" across syncs: addresses,
/// hostname and the pod. Conditions, node, zone and hints may change in place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EndpointKey {
    addresses: Vec<String>,
    hostname: String,
    namespace: String,
    name: String,
}

impl EndpointKey {
    pub(super) fn of(e: &Endpoint) -> Self {
        let mut addresses = e.addresses.clone();
        addresses.sort();
        let target = e.target_ref.as_ref();
        EndpointKey {
            addresses,
            hostname: e.hostname.clone().unwrap_or_default(),
            namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
            name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        }
    }
}

/// Identifies a slice group: the port list regardless of order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PortKey(Vec<PortTuple>);

type PortTuple = (Option<String>, Option<i32>, Option<String>, Option<String>);

impl PortKey {
    pub(super) fn of(ports: &[EndpointPort]) -> Self {
        let mut tuples: Vec<PortTuple> = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.port,
                    p.protocol.clone(),
                    p.app_protocol.clone(),
                )
            })
            .collect();
        tuples.sort();
        PortKey(tuples)
    }
}

/// Whether the existing endpoint must be rewritten to become `desired`, beyond
/// the key both share: hints are not compared (they are decided afterwards) and
/// neither is the pod's resourceVersion.
pub(super) fn endpoint_changed(desired: &Endpoint, existing: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    desired.node_name != existing.node_name
        || desired.zone != existing.zone
        || conditions(desired) != conditions(existing)
        || target(desired) != target(existing)
}

pub(super) fn is_ready(e: &Endpoint) -> bool {
    e.conditions.as_ref().and_then(|c| c.ready) == Some(true)
}

/// Equality as the API server stores it: an empty list and an absent one are
/// the same.
pub(super) fn same_slice(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.metadata == b.metadata
        && a.address_type == b.address_type
        && a.endpoints.as_deref().unwrap_or_default() == b.endpoints.as_deref().unwrap_or_default()
        && a.ports.as_deref().unwrap_or_default() == b.ports.as_deref().unwrap_or_default()
}
