//! The EndpointSlice controller's decision: given a Service, the pods its
//! selector matches, the nodes and the slices that exist, which EndpointSlices to
//! create, update and delete, and which events to record on the Service.
//!
//! [`desired_slices`] is a pure function with the semantics of Kubernetes'
//! EndpointSlice reconciler (`k8s.io/endpointslice`, 1.33–1.35): endpoints are
//! grouped by address type and by resolved port list, existing slices are reused
//! with as few writes as possible, a placeholder slice stands in for a Service
//! without endpoints, and topology hints come either from the
//! `service.kubernetes.io/topology-mode: Auto` heuristic (zones weighted by
//! allocatable CPU) or from `spec.trafficDistribution`. The async shell around it
//! lists the inputs from informer caches and writes the result with
//! compare-and-swap; it also requeues a Service when
//! [`Changes::pods_on_unknown_nodes`] is not empty, as Kubernetes retries then.
//!
//! Data flows `desired_slices` → per address type `reconcile` (desired
//! endpoints from `endpoints`, diff against the existing slices, placeholder) →
//! hints (`topology` for the annotation, `trafficdist` for the field) →
//! recycling of slices to delete for slices to create → [`Changes`].
//!
//! Kubernetes keeps a cluster-wide topology cache across syncs; here the zone
//! CPU shares are recomputed from `nodes` on every call, and whether hints were
//! "already populated" (which decides the `TopologyAwareHintsEnabled` and
//! `TopologyAwareHintsDisabled` events) is read from the existing slices.

mod endpoints;
mod node;
mod reconcile;
mod topology;
mod trafficdist;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use capstan_api::k8s_openapi::api::core::v1::{Pod, Service};
use capstan_api::k8s_openapi::api::discovery::v1::EndpointSlice;

pub use node::NodeInfo;

use endpoints::{AddressType, Svc};
use reconcile::Plan;

/// The `endpointslice.kubernetes.io/managed-by` value of the slices this
/// controller owns, the same as Kubernetes' so that either can take over.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label marking the slices of a headless Service.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// The annotation that turns on topology-aware routing (`Auto`).
pub const ANNOTATION_TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
/// The deprecated form of [`ANNOTATION_TOPOLOGY_MODE`]; it wins when both are set.
pub const ANNOTATION_TOPOLOGY_AWARE_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
/// The node label giving a node's zone.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// Knobs of the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The most endpoints one slice holds (`--max-endpoints-per-slice`,
    /// Kubernetes' default 100). Zero is treated as one.
    pub max_endpoints_per_slice: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_endpoints_per_slice: 100,
        }
    }
}

/// An event to record on the Service, as Kubernetes' controller records them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintEvent {
    /// `"Normal"` or `"Warning"`.
    pub type_: &'static str,
    /// `TopologyAwareHintsEnabled` or `TopologyAwareHintsDisabled`.
    pub reason: String,
    /// Kubernetes' message, ending in `, addressType: IPv4` (or IPv6).
    pub message: String,
}

/// What to write so that the slices match the Service's pods.
///
/// Nothing to do is `Changes::default()` (a fallback of topology hints still
/// repeats its warning event on every call, as Kubernetes does).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// New slices: `metadata.generateName = "<service>-"`, no name; the client
    /// fills the name. Never set while the Service is being deleted.
    pub create: Vec<EndpointSlice>,
    /// Changed slices, sorted by name, each keeping the existing slice's
    /// metadata (name, uid, resourceVersion…) for a compare-and-swap write;
    /// never identical to the existing slice.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete, sorted by name, as they exist.
    pub delete: Vec<EndpointSlice>,
    /// Events to record on the Service.
    pub events: Vec<HintEvent>,
    /// Names of pods skipped because their node is not in `nodes` (Kubernetes
    /// leaves them out and returns an error so the Service is retried; the
    /// caller should requeue with backoff). Sorted.
    pub pods_on_unknown_nodes: Vec<String>,
}

impl Changes {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Decides the EndpointSlice writes for `service`.
///
/// - `pods`: the pods of the Service's namespace that its selector matches.
///   Pods in a terminal phase, without an IP or from another namespace are
///   skipped here anyway.
/// - `nodes`: every node of the cluster by name. A pod whose node is missing is
///   left out (unless `publishNotReadyAddresses`) and reported in
///   [`Changes::pods_on_unknown_nodes`]; the zone CPU shares for topology hints
///   come from all of them.
/// - `existing`: the slices labelled with the Service's name. Slices managed by
///   another controller (another `managed-by` label), slices of another Service
///   and slices already being deleted are ignored.
///
/// A Service without selector is not managed: no changes.
pub fn desired_slices(
    service: &Service,
    pods: &[&Pod],
    nodes: &HashMap<String, NodeInfo>,
    existing: &[EndpointSlice],
    opts: &Options,
) -> Changes {
    let Some(svc) = Svc::new(service) else {
        return Changes::default();
    };
    let max = opts.max_endpoints_per_slice.max(1);

    let mut managed: Vec<&EndpointSlice> = existing
        .iter()
        .filter(|s| is_managed_slice_of(s, &svc))
        .collect();
    managed.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let mut pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or_default() == svc.namespace())
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    let address_types = svc.address_types();
    let ratios = topology::zone_cpu_ratios(nodes);
    let mut hint_state = HintState::new(&svc, &managed);

    let mut changes = Changes::default();
    let mut unknown_nodes = BTreeSet::new();
    for &address_type in &address_types {
        let of_type: Vec<&EndpointSlice> = managed
            .iter()
            .copied()
            .filter(|s| s.address_type == address_type.as_str())
            .collect();
        let mut plan = reconcile::reconcile_address_type(
            &svc,
            address_type,
            &pods,
            nodes,
            &of_type,
            max,
            &mut unknown_nodes,
        );
        hint_state.apply(
            &svc,
            address_type,
            ratios.as_ref(),
            &mut plan,
            &mut changes.events,
        );
        reconcile::recycle_deleted_for_creates(&svc, &mut plan);
        if !svc.is_deleting() {
            changes.create.append(&mut plan.create);
        }
        changes.update.append(&mut plan.update);
        changes.delete.append(&mut plan.delete);
    }
    // Slices of an address type the Service no longer has (a dual-stack Service
    // made single-stack, or the deprecated "IP" type) go, without recycling.
    changes.delete.extend(
        managed
            .iter()
            .filter(|s| !address_types.iter().any(|t| t.as_str() == s.address_type))
            .map(|s| (*s).clone()),
    );

    let by_name: BTreeMap<&str, &EndpointSlice> = managed
        .iter()
        .filter_map(|s| Some((s.metadata.name.as_deref()?, *s)))
        .collect();
    changes.update.retain(|u| {
        let name = u.metadata.name.as_deref().unwrap_or_default();
        by_name
            .get(name)
            .is_none_or(|old| !endpoints::same_slice(old, u))
    });
    changes
        .update
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    changes
        .delete
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    changes.pods_on_unknown_nodes = unknown_nodes.into_iter().collect();
    changes
}

/// Whether the controller manages `slice` for this Service: Kubernetes lists by
/// the service-name and managed-by labels and drops slices pending deletion.
fn is_managed_slice_of(slice: &EndpointSlice, svc: &Svc<'_>) -> bool {
    let labels = slice.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    label(LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
        && label(LABEL_SERVICE_NAME) == Some(svc.name())
        && slice
            .metadata
            .namespace
            .as_deref()
            .unwrap_or(svc.namespace())
            == svc.namespace()
        && slice.metadata.deletion_timestamp.is_none()
}

/// Kubernetes' topology cache remembers, per Service, whether the annotation
/// heuristic has populated hints; that decides the Enabled / Disabled events.
/// This is the same state machine, seeded from the existing slices and carried
/// across the address types of one call (the cache key is per Service, so a
/// dual-stack Service gets one event, not two).
struct HintState {
    populated: bool,
}

impl HintState {
    fn new(svc: &Svc<'_>, existing: &[&EndpointSlice]) -> Self {
        let hinted: Vec<_> = existing
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| has_zone_hints(e))
            .collect();
        if svc.topology_annotation_enabled() {
            return HintState {
                populated: !hinted.is_empty(),
            };
        }
        // With the annotation off, the hints may be trafficDistribution's (own
        // zone only). A cross-zone hint proves the annotation wrote them; so
        // does a topology annotation still present with another value, when
        // trafficDistribution is not in use.
        let cross_zone = hinted.iter().any(|e| {
            e.hints
                .iter()
                .flat_map(|h| h.for_zones.iter().flatten())
                .any(|z| Some(z.name.as_str()) != e.zone.as_deref())
        });
        let populated = cross_zone
            || (!hinted.is_empty()
                && svc.traffic_distribution().is_none()
                && svc.has_topology_annotation());
        HintState { populated }
    }

    fn apply(
        &mut self,
        svc: &Svc<'_>,
        address_type: AddressType,
        ratios: Option<&BTreeMap<String, f64>>,
        plan: &mut Plan,
        events: &mut Vec<HintEvent>,
    ) {
        let traffic = svc.traffic_distribution();
        if svc.topology_annotation_enabled() {
            match topology::add_hints(plan, ratios) {
                Ok(()) => {
                    if !self.populated {
                        events.push(HintEvent::normal(
                            "TopologyAwareHintsEnabled",
                            topology::msg::ENABLED,
                            address_type,
                        ));
                    }
                    self.populated = true;
                }
                Err(message) => {
                    events.push(HintEvent::disabled(&message, address_type));
                    self.populated = false;
                }
            }
            return;
        }
        if self.populated {
            events.push(HintEvent::disabled(topology::msg::DISABLED, address_type));
            self.populated = false;
        }
        match traffic {
            Some(heuristic) => trafficdist::reconcile_hints(plan, heuristic),
            None => topology::remove_hints(plan),
        }
    }
}

fn has_zone_hints(e: &capstan_api::k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    e.hints
        .as_ref()
        .and_then(|h| h.for_zones.as_ref())
        .is_some_and(|z| !z.is_empty())
}

impl HintEvent {
    fn normal(reason: &str, message: &str, address_type: AddressType) -> Self {
        HintEvent {
            type_: "Normal",
            reason: reason.to_string(),
            message: format!("{message}, addressType: {}", address_type.as_str()),
        }
    }

    fn disabled(message: &str, address_type: AddressType) -> Self {
        HintEvent {
            type_: "Warning",
            reason: "TopologyAwareHintsDisabled".to_string(),
            message: format!("{message}, addressType: {}", address_type.as_str()),
        }
    }
}
