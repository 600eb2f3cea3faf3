//! The diff for one address type: desired endpoints grouped by port list against
//! the existing slices, with Kubernetes' write-minimising placement, the
//! placeholder slice, and the recycling of slices to delete for slices to create.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use capstan_api::k8s_openapi::api::core::v1::Pod;
use capstan_api::k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use super::endpoints::{endpoint_changed, pod_wanted, AddressType, EndpointKey, PortKey, Svc};
use super::NodeInfo;

/// The slices of one address type, sorted into what happens to them. Hints are
/// decided on this before slices to delete are recycled.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) create: Vec<EndpointSlice>,
    pub(super) update: Vec<EndpointSlice>,
    pub(super) delete: Vec<EndpointSlice>,
    /// Existing slices nothing has touched yet; hint decisions may still move
    /// them to `update`.
    pub(super) unchanged: Vec<EndpointSlice>,
}

/// One slice group's desired state: its ports and endpoints by key (a
/// `BTreeMap` so that endpoints are placed in a stable order).
struct Group {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

/// Sorts the existing slices of one address type (already filtered to this
/// Service's managed ones) into create / update / delete / unchanged, before
/// hints. Pods on nodes missing from `nodes` are recorded in `unknown_nodes`.
pub(super) fn reconcile_address_type(
    svc: &Svc<'_>,
    address_type: AddressType,
    pods: &[&Pod],
    nodes: &HashMap<String, NodeInfo>,
    existing: &[&EndpointSlice],
    max: usize,
    unknown_nodes: &mut BTreeSet<String>,
) -> Plan {
    let mut plan = Plan::default();

    let mut existing_by_ports: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if svc.owns(slice) {
            let key = PortKey::of(slice.ports.as_deref().unwrap_or_default());
            existing_by_ports.entry(key).or_default().push(slice);
        } else {
            // Left over from an earlier Service of the same name.
            plan.delete.push((*slice).clone());
        }
    }

    let desired = desired_groups(svc, address_type, pods, nodes, unknown_nodes);

    for (key, group) in desired.iter() {
        let slices = existing_by_ports
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        reconcile_group(svc, address_type, slices, group, max, &mut plan);
    }
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            plan.delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }

    // A Service without endpoints keeps one empty slice, so that consumers can
    // tell "no endpoints" from "not synced yet".
    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        let placeholder = svc.new_slice(address_type, &[]);
        if plan.delete.len() == 1 && is_same_placeholder(&plan.delete[0], &placeholder) {
            plan.delete.clear();
        } else {
            plan.create.push(placeholder);
        }
    }

    let touched: BTreeSet<&str> = plan
        .update
        .iter()
        .chain(&plan.delete)
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    plan.unchanged = existing
        .iter()
        .filter(|s| !touched.contains(s.metadata.name.as_deref().unwrap_or_default()))
        .map(|s| (*s).clone())
        .collect();
    plan
}

fn desired_groups(
    svc: &Svc<'_>,
    address_type: AddressType,
    pods: &[&Pod],
    nodes: &HashMap<String, NodeInfo>,
    unknown_nodes: &mut BTreeSet<String>,
) -> BTreeMap<PortKey, Group> {
    let mut groups: BTreeMap<PortKey, Group> = BTreeMap::new();
    for pod in pods {
        if !pod_wanted(pod) {
            continue;
        }
        let ports = svc.endpoint_ports(pod);
        // The group exists even if this pod ends up without an endpoint, so its
        // slices are reconciled rather than dropped as "no longer wanted".
        let group = groups.entry(PortKey::of(&ports)).or_insert_with(|| Group {
            ports,
            endpoints: BTreeMap::new(),
        });
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        let node = nodes.get(node_name);
        if node.is_none() && !svc.publish_not_ready() {
            // Kubernetes drops the pod until its node shows up (or the pod is
            // collected) rather than publish an endpoint without topology.
            unknown_nodes.insert(pod.metadata.name.clone().unwrap_or_default());
            continue;
        }
        let endpoint = svc.pod_endpoint(pod, node, address_type);
        if !endpoint.addresses.is_empty() {
            group.endpoints.insert(EndpointKey::of(&endpoint), endpoint);
        }
    }
    groups
}

/// Kubernetes' three passes over one slice group:
/// 1. keep each existing slice's desired endpoints (refreshed), drop the rest;
///    a slice left empty is deleted, a changed one updated;
/// 2. fill the slices being updated anyway, fullest first;
/// 3. put what remains into the unchanged slice it fills best (only when less
///    than a whole slice remains), else into new slices.
fn reconcile_group(
    svc: &Svc<'_>,
    address_type: AddressType,
    existing: &[&EndpointSlice],
    group: &Group,
    max: usize,
    plan: &mut Plan,
) {
    let mut remaining = group.endpoints.clone();
    let mut to_update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&EndpointSlice> = Vec::new();

    for slice in existing {
        let old = slice.endpoints.as_deref().unwrap_or_default();
        let mut kept = Vec::with_capacity(old.len());
        let mut refreshed = false;
        for endpoint in old {
            if let Some(desired) = remaining.remove(&EndpointKey::of(endpoint)) {
                refreshed |= endpoint_changed(&desired, endpoint);
                kept.push(desired);
            }
        }
        if refreshed || kept.len() != old.len() {
            if kept.is_empty() {
                plan.delete.push((*slice).clone());
            } else {
                let mut copy = (*slice).clone();
                copy.endpoints = Some(kept);
                copy.metadata.labels = Some(svc.slice_labels());
                to_update.push(copy);
            }
        } else if svc.labels_changed(slice) {
            let mut copy = (*slice).clone();
            copy.metadata.labels = Some(svc.slice_labels());
            to_update.push(copy);
        } else {
            unchanged.push(slice);
        }
    }

    if !remaining.is_empty() {
        to_update.sort_by(|a, b| {
            endpoint_count(b)
                .cmp(&endpoint_count(a))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        for slice in &mut to_update {
            fill(slice, &mut remaining, max);
        }
    }

    while !remaining.is_empty() {
        let reuse = if remaining.len() < max {
            best_fit(&unchanged, remaining.len(), max)
        } else {
            None
        };
        match reuse {
            Some(i) => {
                let mut slice = unchanged.remove(i).clone();
                fill(&mut slice, &mut remaining, max);
                to_update.push(slice);
            }
            None => {
                let mut slice = svc.new_slice(address_type, &group.ports);
                fill(&mut slice, &mut remaining, max);
                plan.create.push(slice);
            }
        }
    }
    plan.update.append(&mut to_update);
}

fn endpoint_count(slice: &EndpointSlice) -> usize {
    slice.endpoints.as_ref().map_or(0, Vec::len)
}

fn fill(slice: &mut EndpointSlice, remaining: &mut BTreeMap<EndpointKey, Endpoint>, max: usize) {
    let endpoints = slice.endpoints.get_or_insert_with(Vec::new);
    while endpoints.len() < max {
        let Some((_, endpoint)) = remaining.pop_first() else {
            break;
        };
        endpoints.push(endpoint);
    }
}

/// The unchanged slice that is closest to full after taking `n` endpoints; the
/// first such slice in name order on a tie.
fn best_fit(slices: &[&EndpointSlice], n: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, slice) in slices.iter().enumerate() {
        let Some(room) = max.checked_sub(n + endpoint_count(slice)) else {
            continue;
        };
        if room < max && best.is_none_or(|(_, r)| room < r) {
            best = Some((i, room));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// Kubernetes compares an existing placeholder by namespace, labels, address
/// type, ports and endpoints only; other metadata does not matter.
fn is_same_placeholder(existing: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    existing.metadata.namespace == placeholder.metadata.namespace
        && existing.metadata.labels.clone().unwrap_or_default()
            == placeholder.metadata.labels.clone().unwrap_or_default()
        && existing.address_type == placeholder.address_type
        && existing.ports.as_deref().unwrap_or_default().is_empty()
        && existing.endpoints.as_deref().unwrap_or_default().is_empty()
}

/// Turns creates into updates of slices that would be deleted, saving a create
/// and a delete each. Only slices this Service owns are recycled (a slice of an
/// earlier Service with the same name is being garbage collected). The recycled
/// slice keeps its own metadata (name, uid, resourceVersion, annotations) and
/// takes the new slice's labels, owner, ports and endpoints.
pub(super) fn recycle_deleted_for_creates(svc: &Svc<'_>, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() {
        let old = &plan.delete[i];
        let fits = svc.owns(old)
            && plan
                .create
                .last()
                .is_some_and(|c| c.address_type == old.address_type);
        if !fits {
            i += 1;
            continue;
        }
        let Some(new) = plan.create.pop() else {
            break;
        };
        let mut slice = plan.delete.remove(i);
        slice.metadata.labels = new.metadata.labels;
        slice.metadata.owner_references = new.metadata.owner_references;
        slice.ports = new.ports;
        slice.endpoints = new.endpoints;
        plan.update.push(slice);
    }
}
