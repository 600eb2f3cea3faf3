//! Hints for `spec.trafficDistribution`: `PreferClose` / `PreferSameZone` hint
//! every ready endpoint for its own zone, `PreferSameNode` also for its own node.
//! Unlike the topology annotation there is no balancing and no fallback: an
//! endpoint without a zone (or node) simply gets no hint of that kind.
//! Not-ready endpoints are left as they are, as in Kubernetes.

use capstan_api::k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointHints, EndpointSlice, ForNode, ForZone,
};

use super::endpoints::is_ready;
use super::reconcile::Plan;

/// Which hints a recognised `trafficDistribution` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Heuristic {
    /// `PreferClose` (deprecated name) and `PreferSameZone`.
    SameZone,
    /// `PreferSameNode`: node hints plus zone hints for consumers that only
    /// understand zones.
    SameNode,
}

/// Hints the slices being written and moves unchanged slices whose hints are
/// missing or wrong to `update`.
pub(super) fn reconcile_hints(plan: &mut Plan, heuristic: Heuristic) {
    let mut still_unchanged = Vec::with_capacity(plan.unchanged.len());
    for slice in std::mem::take(&mut plan.unchanged) {
        if needs_update(&slice, heuristic) {
            plan.update.push(slice);
        } else {
            still_unchanged.push(slice);
        }
    }
    plan.unchanged = still_unchanged;
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for endpoint in slice.endpoints.iter_mut().flatten() {
            if is_ready(endpoint) {
                endpoint.hints = wanted(endpoint, heuristic);
            }
        }
    }
}

fn wanted(endpoint: &Endpoint, heuristic: Heuristic) -> Option<EndpointHints> {
    let for_zones = endpoint.zone.clone().map(|name| vec![ForZone { name }]);
    let for_nodes = match heuristic {
        Heuristic::SameNode => endpoint
            .node_name
            .clone()
            .map(|name| vec![ForNode { name }]),
        Heuristic::SameZone => None,
    };
    if for_zones.is_none() && for_nodes.is_none() {
        return None;
    }
    Some(EndpointHints {
        for_zones,
        for_nodes,
    })
}

/// Whether a ready endpoint's hints differ from what the heuristic wants, in
/// the loose sense Kubernetes checks: one zone hint naming its zone (none if it
/// has no zone), likewise for nodes.
fn needs_update(slice: &EndpointSlice, heuristic: Heuristic) -> bool {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| is_ready(e))
        .any(|e| {
            let hints = e.hints.as_ref();
            let zones = hints
                .and_then(|h| h.for_zones.as_deref())
                .unwrap_or_default();
            let nodes = hints
                .and_then(|h| h.for_nodes.as_deref())
                .unwrap_or_default();
            let zone_wrong = match e.zone.as_deref() {
                Some(zone) => zones.len() != 1 || zones[0].name != zone,
                None => !zones.is_empty(),
            };
            let node_wrong = match (heuristic, e.node_name.as_deref()) {
                (Heuristic::SameNode, Some(node)) => nodes.len() != 1 || nodes[0].name != node,
                _ => !nodes.is_empty(),
            };
            zone_wrong || node_wrong
        })
}
