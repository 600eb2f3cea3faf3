//! Topology-aware hints for `service.kubernetes.io/topology-mode: Auto`:
//! Kubernetes' heuristic that gives each zone a share of the ready endpoints
//! proportional to its share of allocatable CPU on ready worker nodes, within an
//! overload threshold, and falls back to no hints at all when that cannot be done
//! safely.
//!
//! Every endpoint is first hinted for its own zone; zones holding more than their
//! share then give endpoints to zones holding fewer. Slices that are not changing
//! keep their hints while those remain valid, so hints do not churn.

use std::collections::{BTreeMap, HashMap};

use capstan_api::k8s_openapi::api::discovery::v1::{EndpointHints, EndpointSlice, ForZone};

use super::endpoints::is_ready;
use super::reconcile::Plan;
use super::NodeInfo;

/// The most any endpoint should be overloaded: a zone gets at least its share
/// divided by 1.2.
const OVERLOAD_THRESHOLD: f64 = 0.2;

/// Kubernetes' event messages (without the `, addressType: …` suffix).
pub(super) mod msg {
    pub(crate) const NO_ZONE_SPECIFIED: &str = "One or more endpoints do not have a zone specified";
    pub(crate) const NO_ALLOCATED_HINTS_FOR_ZONES: &str = "No hints allocated for zones";
    pub(crate) const ENABLED: &str = "Topology Aware Hints has been enabled";
    pub(crate) const DISABLED: &str = "Topology Aware Hints has been disabled";
    pub(crate) const INSUFFICIENT_NODE_INFO: &str =
        "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes";
    pub(crate) const NODES_READY_IN_ONE_ZONE_ONLY: &str = "Nodes only ready in one zone";
    pub(crate) const INSUFFICIENT_NUMBER_OF_ENDPOINTS: &str = "Insufficient number of endpoints";
    pub(crate) const MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD: &str =
        "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold";
}

/// Each zone's share of the allocatable CPU of ready, non-control-plane nodes.
/// `None` when any such node lacks a zone or CPU, or fewer than two zones have
/// nodes: Kubernetes then removes hints from every Service.
pub(super) fn zone_cpu_ratios(nodes: &HashMap<String, NodeInfo>) -> Option<BTreeMap<String, f64>> {
    let mut by_zone: BTreeMap<String, i64> = BTreeMap::new();
    let mut total: i64 = 0;
    for node in nodes.values() {
        if node.control_plane || !node.ready {
            continue;
        }
        let zone = node.zone.as_deref().filter(|z| !z.is_empty())?;
        if node.allocatable_cpu_millis <= 0 {
            return None;
        }
        total = total.saturating_add(node.allocatable_cpu_millis);
        let sum = by_zone.entry(zone.to_string()).or_default();
        *sum = sum.saturating_add(node.allocatable_cpu_millis);
    }
    if total == 0 || by_zone.len() < 2 {
        return None;
    }
    Some(
        by_zone
            .into_iter()
            .map(|(zone, cpu)| (zone, cpu as f64 / total as f64))
            .collect(),
    )
}

/// How many endpoints a zone should be allocated.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Allocation {
    minimum: usize,
    maximum: usize,
    desired: f64,
}

/// Allocations for `n` ready endpoints, or the reason hints cannot be given.
fn allocations(
    ratios: Option<&BTreeMap<String, f64>>,
    n: usize,
) -> Result<BTreeMap<String, Allocation>, String> {
    let Some(ratios) = ratios else {
        return Err(msg::INSUFFICIENT_NODE_INFO.to_string());
    };
    if ratios.len() < 2 {
        return Err(msg::NODES_READY_IN_ONE_ZONE_ONLY.to_string());
    }
    let zones = ratios.len();
    if zones > n {
        return Err(format!(
            "{} ({n} endpoints, {zones} zones)",
            msg::INSUFFICIENT_NUMBER_OF_ENDPOINTS
        ));
    }
    let mut allocations = BTreeMap::new();
    let mut min_total = 0;
    for (zone, ratio) in ratios {
        let desired = ratio * n as f64;
        let minimum = (desired * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil() as usize;
        min_total += minimum;
        if min_total > n {
            return Err(format!(
                "{} ({n} endpoints, {zones} zones)",
                msg::MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD
            ));
        }
        allocations.insert(
            zone.clone(),
            Allocation {
                minimum,
                maximum: 0,
                desired: desired.max(minimum as f64),
            },
        );
    }
    for allocation in allocations.values_mut() {
        allocation.maximum = allocation.minimum + n - min_total;
    }
    Ok(allocations)
}

/// Sets zone hints on the plan's slices. On `Err(message)` hints have been
/// removed instead and `message` says why (the event to record).
pub(super) fn add_hints(
    plan: &mut Plan,
    ratios: Option<&BTreeMap<String, f64>>,
) -> Result<(), String> {
    let ready = plan
        .create
        .iter()
        .chain(&plan.update)
        .chain(&plan.unchanged)
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| is_ready(e))
        .count();
    let allocations = match allocations(ratios, ready) {
        Ok(a) => a,
        Err(message) => {
            remove_hints(plan);
            return Err(message);
        }
    };

    let mut allocated = keep_valid_unchanged(plan, &allocations);

    // Step 1: every ready endpoint of a changing slice serves its own zone.
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for endpoint in slice.endpoints.iter_mut().flatten() {
            if !is_ready(endpoint) {
                endpoint.hints = None;
                continue;
            }
            let Some(zone) = endpoint.zone.clone().filter(|z| !z.is_empty()) else {
                remove_hints(plan);
                return Err(msg::NO_ZONE_SPECIFIED.to_string());
            };
            *allocated.entry(zone.clone()).or_default() += 1;
            endpoint.hints = Some(zone_hint(zone));
        }
    }

    // Steps 2 and 3: move endpoints from zones above their share to zones below.
    let (giving, receiving) = giving_and_receiving(&allocations, &allocated);
    let moved = redistribute(
        plan.create.iter_mut().chain(plan.update.iter_mut()),
        giving,
        receiving,
    );
    for (zone, diff) in moved {
        *allocated.entry(zone).or_default() += diff;
    }

    if allocated.is_empty() {
        remove_hints(plan);
        return Err(msg::NO_ALLOCATED_HINTS_FOR_ZONES.to_string());
    }
    Ok(())
}

/// Counts the hints of unchanged slices per zone, moving a slice to `update`
/// when its hints no longer fit: a ready endpoint without a zone hint, a hint
/// for a zone that gets no allocation, or more hints for a zone than its
/// maximum allows.
fn keep_valid_unchanged(
    plan: &mut Plan,
    allocations: &BTreeMap<String, Allocation>,
) -> BTreeMap<String, i64> {
    let mut allocated: BTreeMap<String, i64> = BTreeMap::new();
    let mut still_unchanged = Vec::with_capacity(plan.unchanged.len());
    for slice in std::mem::take(&mut plan.unchanged) {
        match valid_hints_by_zone(&slice, &allocated, allocations) {
            Some(by_zone) => {
                for (zone, n) in by_zone {
                    *allocated.entry(zone).or_default() += n;
                }
                still_unchanged.push(slice);
            }
            None => plan.update.push(slice),
        }
    }
    plan.unchanged = still_unchanged;
    allocated
}

fn valid_hints_by_zone(
    slice: &EndpointSlice,
    allocated: &BTreeMap<String, i64>,
    allocations: &BTreeMap<String, Allocation>,
) -> Option<BTreeMap<String, i64>> {
    let mut by_zone: BTreeMap<String, i64> = BTreeMap::new();
    for endpoint in slice.endpoints.iter().flatten().filter(|e| is_ready(e)) {
        let zones = endpoint.hints.as_ref()?.for_zones.as_deref()?;
        if zones.is_empty() {
            return None;
        }
        for zone in zones {
            if !allocations.contains_key(&zone.name) {
                return None;
            }
            *by_zone.entry(zone.name.clone()).or_default() += 1;
        }
    }
    for (zone, n) in &by_zone {
        let already = allocated.get(zone).copied().unwrap_or_default();
        let maximum = allocations.get(zone)?.maximum as i64;
        if n + already > maximum {
            return None;
        }
    }
    Some(by_zone)
}

/// How many endpoints each zone should give away and receive, in whole
/// endpoints: the most over-allocated zone gives to the most under-allocated
/// one while both are at least half an endpoint away from their target and one
/// of them a whole endpoint.
fn giving_and_receiving(
    allocations: &BTreeMap<String, Allocation>,
    allocated: &BTreeMap<String, i64>,
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut give_desired: BTreeMap<String, f64> = BTreeMap::new();
    let mut receive_desired: BTreeMap<String, f64> = BTreeMap::new();
    for (zone, allocation) in allocations {
        let have = allocated.get(zone).copied().unwrap_or_default() as f64;
        if have > allocation.desired {
            give_desired.insert(zone.clone(), have - allocation.desired);
        } else if have < allocation.desired {
            receive_desired.insert(zone.clone(), allocation.desired - have);
        }
    }

    let mut giving: BTreeMap<String, usize> = BTreeMap::new();
    let mut receiving: BTreeMap<String, usize> = BTreeMap::new();
    while let (Some((giver, to_give)), Some((receiver, to_receive))) =
        (most(&give_desired), most(&receive_desired))
    {
        if (to_give < 1.0 && to_receive < 1.0) || to_give < 0.5 || to_receive < 0.5 {
            break;
        }
        *giving.entry(giver.clone()).or_default() += 1;
        *receiving.entry(receiver.clone()).or_default() += 1;
        if let Some(v) = give_desired.get_mut(&giver) {
            *v -= 1.0;
        }
        if let Some(v) = receive_desired.get_mut(&receiver) {
            *v -= 1.0;
        }
    }
    (giving, receiving)
}

/// The zone with the largest positive value; the first in name order on a tie.
fn most(zones: &BTreeMap<String, f64>) -> Option<(String, f64)> {
    let mut best: Option<(&String, f64)> = None;
    for (zone, &n) in zones {
        if n > best.map_or(0.0, |(_, b)| b) {
            best = Some((zone, n));
        }
    }
    best.map(|(z, n)| (z.clone(), n))
}

/// Re-hints ready endpoints of giving zones for receiving zones, in slice and
/// endpoint order, and returns the change in endpoints per zone.
fn redistribute<'a>(
    slices: impl Iterator<Item = &'a mut EndpointSlice>,
    mut giving: BTreeMap<String, usize>,
    mut receiving: BTreeMap<String, usize>,
) -> BTreeMap<String, i64> {
    let mut moved: BTreeMap<String, i64> = BTreeMap::new();
    for slice in slices {
        for endpoint in slice.endpoints.iter_mut().flatten() {
            if !is_ready(endpoint) {
                continue;
            }
            if giving.is_empty() || receiving.is_empty() {
                return moved;
            }
            let Some(zone) = endpoint.zone.clone().filter(|z| !z.is_empty()) else {
                continue;
            };
            if !giving.contains_key(&zone) {
                continue;
            }
            let Some(receiver) = receiving.keys().next().cloned() else {
                return moved;
            };
            endpoint.hints = Some(zone_hint(receiver.clone()));
            take_one(&mut giving, &zone);
            take_one(&mut receiving, &receiver);
            *moved.entry(receiver).or_default() += 1;
            *moved.entry(zone).or_default() -= 1;
        }
    }
    moved
}

fn take_one(counts: &mut BTreeMap<String, usize>, zone: &str) {
    if let Some(n) = counts.get_mut(zone) {
        *n -= 1;
        if *n == 0 {
            counts.remove(zone);
        }
    }
}

fn zone_hint(zone: String) -> EndpointHints {
    EndpointHints {
        for_zones: Some(vec![ForZone { name: zone }]),
        for_nodes: None,
    }
}

/// Clears all hints: on every slice being written, and on unchanged slices that
/// carry any (those move to `update`).
pub(super) fn remove_hints(plan: &mut Plan) {
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for endpoint in slice.endpoints.iter_mut().flatten() {
            endpoint.hints = None;
        }
    }
    let mut still_unchanged = Vec::with_capacity(plan.unchanged.len());
    for mut slice in std::mem::take(&mut plan.unchanged) {
        let hinted = slice.endpoints.iter().flatten().any(|e| e.hints.is_some());
        if hinted {
            for endpoint in slice.endpoints.iter_mut().flatten() {
                endpoint.hints = None;
            }
            plan.update.push(slice);
        } else {
            still_unchanged.push(slice);
        }
    }
    plan.unchanged = still_unchanged;
}

#[cfg(test)]
mod unit_tests;
