//! Topology-aware hints through `desired_slices`: the Kubernetes docs'
//! examples, TestReconcileTopology, every fallback with its event, and the
//! life cycle of hints (enable, fall back, recover, disable).

use super::*;

/// Nodes `node-<zone>-<j>`, `count` per zone, each with `cpu` millicores.
fn zonal(zones: &[(&str, usize, i64)]) -> HashMap<String, NodeInfo> {
    let mut nodes = HashMap::new();
    for (zone, count, cpu) in zones {
        for j in 0..*count {
            nodes.insert(format!("node-{zone}-{j}"), node(Some(zone), *cpu));
        }
    }
    nodes
}

/// Ready pods, `count` per zone, on `node-<zone>-0`; numbered from 0 in order.
fn pods_in(zones: &[(&str, usize)]) -> Vec<Pod> {
    let mut out = Vec::new();
    for (zone, count) in zones {
        for _ in 0..*count {
            let n = out.len();
            out.push(on_node(pod(n, true), &format!("node-{zone}-0")));
        }
    }
    out
}

fn auto(mut svc: Service) -> Service {
    annotate(&mut svc, ANNOTATION_TOPOLOGY_MODE, "Auto");
    svc
}

/// Hints per zone over all slices, and how many endpoints are hinted for a zone
/// other than their own.
fn hint_distribution<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> (BTreeMap<String, usize>, usize) {
    let mut by_zone = BTreeMap::new();
    let mut cross = 0;
    for slice in slices {
        for e in endpoints(slice) {
            let zones = e
                .hints
                .as_ref()
                .and_then(|h| h.for_zones.clone())
                .unwrap_or_default();
            for z in &zones {
                *by_zone.entry(z.name.clone()).or_default() += 1;
                if Some(&z.name) != e.zone.as_ref() {
                    cross += 1;
                }
            }
        }
    }
    (by_zone, cross)
}

fn dist(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(z, n)| (z.to_string(), *n)).collect()
}

fn enabled(family: &str) -> HintEvent {
    HintEvent {
        type_: "Normal",
        reason: "TopologyAwareHintsEnabled".to_string(),
        message: format!("Topology Aware Hints has been enabled, addressType: {family}"),
    }
}

fn disabled(message: &str) -> HintEvent {
    HintEvent {
        type_: "Warning",
        reason: "TopologyAwareHintsDisabled".to_string(),
        message: format!("{message}, addressType: IPv4"),
    }
}

/// The docs' example: three zones of equal CPU, six endpoints two per zone:
/// every endpoint serves its own zone. The Enabled event comes once.
#[test]
fn equal_zones_two_endpoints_each() {
    let svc = auto(service("web"));
    let nodes = zonal(&[
        ("zone-a", 1, 4000),
        ("zone-b", 1, 4000),
        ("zone-c", 1, 4000),
    ]);
    let all = pods_in(&[("zone-a", 2), ("zone-b", 2), ("zone-c", 2)]);
    let mut store = Store::default();
    let changes = store.converge(&svc, &all, &nodes, &Options::default());
    assert_eq!(changes.events, vec![enabled("IPv4")]);
    let (by_zone, cross) = hint_distribution(store.slices.values());
    assert_eq!(
        by_zone,
        dist(&[("zone-a", 2), ("zone-b", 2), ("zone-c", 2)])
    );
    assert_eq!(cross, 0);
    assert_eq!(
        store.sync(&svc, &all, &nodes, &Options::default()),
        Changes::default()
    );
}

/// Zone shares decide the allocation: endpoints move from zones holding more
/// than their share of CPU to zones holding less.
#[test]
fn allocation_follows_cpu_shares() {
    struct Case {
        name: &'static str,
        nodes: Vec<(&'static str, usize, i64)>,
        pods: Vec<(&'static str, usize)>,
        want: Vec<(&'static str, usize)>,
        cross: usize,
    }
    let cases = vec![
        Case {
            // TestReconcile_TrafficDistribution "topologyAnnotation=Auto"
            name: "equal shares, skewed endpoints",
            nodes: vec![("zone-a", 1, 100), ("zone-b", 1, 100), ("zone-c", 1, 100)],
            pods: vec![("zone-a", 1), ("zone-b", 3), ("zone-c", 2)],
            want: vec![("zone-a", 2), ("zone-b", 2), ("zone-c", 2)],
            cross: 1,
        },
        Case {
            name: "half the CPU in zone-a, endpoints even",
            nodes: vec![
                ("zone-a", 2, 1000),
                ("zone-b", 1, 1000),
                ("zone-c", 1, 1000),
            ],
            pods: vec![("zone-a", 2), ("zone-b", 3), ("zone-c", 3)],
            want: vec![("zone-a", 4), ("zone-b", 2), ("zone-c", 2)],
            cross: 2,
        },
        Case {
            name: "half the CPU in zone-a, endpoints match",
            nodes: vec![
                ("zone-a", 1, 2000),
                ("zone-b", 1, 1000),
                ("zone-c", 1, 1000),
            ],
            pods: vec![("zone-a", 4), ("zone-b", 2), ("zone-c", 2)],
            want: vec![("zone-a", 4), ("zone-b", 2), ("zone-c", 2)],
            cross: 0,
        },
        Case {
            // within the 20% overload threshold nothing moves
            name: "small imbalance is tolerated",
            nodes: vec![("zone-a", 1, 1000), ("zone-b", 1, 1000)],
            pods: vec![("zone-a", 6), ("zone-b", 5)],
            want: vec![("zone-a", 6), ("zone-b", 5)],
            cross: 0,
        },
        Case {
            name: "two zones, one crowded",
            nodes: vec![("zone-a", 3, 500), ("zone-b", 1, 1500)],
            pods: vec![("zone-a", 9), ("zone-b", 1)],
            want: vec![("zone-a", 5), ("zone-b", 5)],
            cross: 4,
        },
    ];
    for c in cases {
        let svc = auto(service("web"));
        let mut store = Store::default();
        let changes = store.converge(
            &svc,
            &pods_in(&c.pods),
            &zonal(&c.nodes),
            &Options::default(),
        );
        assert_eq!(changes.events, vec![enabled("IPv4")], "{}", c.name);
        let (by_zone, cross) = hint_distribution(store.slices.values());
        assert_eq!(by_zone, dist(&c.want), "{}", c.name);
        assert_eq!(cross, c.cross, "{}", c.name);
    }
}

/// TestReconcileTopology: 3 zones of 10 nodes at 100m; existing slices without
/// hints; which get hinted, how, and how many writes that takes.
#[test]
fn reconcile_topology() {
    let svc = service("foo");
    let mut nodes = HashMap::new();
    let mut all: Vec<Pod> = Vec::new();
    for (i, zone) in ["zone-a", "zone-b", "zone-c"].iter().enumerate() {
        for j in 0..10 {
            let name = format!("node-{zone}-{j}");
            nodes.insert(name.clone(), node(Some(zone), 100));
            all.push(on_node(pod(i * 100 + j, true), &name));
        }
    }
    let zone_of = |n: usize| ["zone-a", "zone-b", "zone-c"][n / 10];
    let slice_for = |name: &str, members: &[usize]| {
        let eps = members
            .iter()
            .map(|&k| {
                let n = (k / 10) * 100 + k % 10;
                let mut e = endpoint_of(n, true, Some(zone_of(k)));
                e.node_name = Some(format!("node-{}-{}", zone_of(k), k % 10));
                e
            })
            .collect();
        existing_slice(&svc, name, svc_ports("foo", 80), eps)
    };
    let zone_a_b = [7, 8, 16, 17, 18];
    let zone_a_c = [5, 6, 25, 26];
    let zone_c = [27, 28, 29];
    let pick = |ks: &[usize]| -> Vec<Pod> { ks.iter().map(|&k| all[k].clone()).collect() };

    struct Case {
        name: &'static str,
        annotation: &'static str,
        slices: Vec<EndpointSlice>,
        pods: Vec<Pod>,
        want_hints: Option<Vec<(&'static str, usize)>>,
        cross: usize,
        updates: usize,
        events: Vec<HintEvent>,
    }
    let both: Vec<usize> = zone_a_c.iter().chain(&zone_a_b).copied().collect();
    let cases = vec![
        Case {
            name: "annotation auto, 3 endpoints in zone-c",
            annotation: "auto",
            slices: vec![slice_for("zone-c", &zone_c)],
            pods: pick(&zone_c),
            want_hints: Some(vec![("zone-a", 1), ("zone-b", 1), ("zone-c", 1)]),
            cross: 2,
            updates: 1,
            events: vec![enabled("IPv4")],
        },
        Case {
            name: "annotation auto, ratio beyond threshold",
            annotation: "auto",
            slices: vec![slice_for("zone-a-c", &zone_a_c)],
            pods: pick(&zone_a_c),
            want_hints: None,
            cross: 0,
            updates: 0,
            events: vec![disabled(
                "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (4 endpoints, 3 zones)",
            )],
        },
        Case {
            name: "annotation Auto, more slices and endpoints",
            annotation: "Auto",
            slices: vec![slice_for("zone-a-c", &zone_a_c), slice_for("zone-a-b", &zone_a_b)],
            pods: pick(&both),
            want_hints: Some(vec![("zone-a", 3), ("zone-b", 3), ("zone-c", 3)]),
            cross: 1,
            updates: 2,
            events: vec![enabled("IPv4")],
        },
        Case {
            name: "annotation disabled",
            annotation: "disabled",
            slices: vec![slice_for("zone-a-c", &zone_a_c), slice_for("zone-a-b", &zone_a_b)],
            pods: pick(&both),
            want_hints: None,
            cross: 0,
            updates: 0,
            events: vec![],
        },
    ];
    for c in cases {
        let mut svc = svc.clone();
        annotate(&mut svc, ANNOTATION_TOPOLOGY_AWARE_HINTS, c.annotation);
        let mut store = Store::with(c.slices);
        let changes = store.sync(&svc, &c.pods, &nodes, &Options::default());
        assert_eq!(counts(&changes), (0, c.updates, 0), "{}", c.name);
        assert_eq!(changes.events, c.events, "{}", c.name);
        store.apply(&changes);
        let (by_zone, cross) = hint_distribution(store.slices.values());
        match c.want_hints {
            Some(want) => assert_eq!(by_zone, dist(&want), "{}", c.name),
            None => assert!(by_zone.is_empty(), "{}", c.name),
        }
        assert_eq!(cross, c.cross, "{}", c.name);
        assert!(
            store
                .sync(&svc, &c.pods, &nodes, &Options::default())
                .is_empty(),
            "{}: not converged",
            c.name
        );
    }
}

/// Every way the heuristic gives up, with Kubernetes' event; hints are then
/// absent altogether.
#[test]
fn fallbacks() {
    let three = || {
        zonal(&[
            ("zone-a", 1, 1000),
            ("zone-b", 1, 1000),
            ("zone-c", 1, 1000),
        ])
    };
    let six = pods_in(&[("zone-a", 2), ("zone-b", 2), ("zone-c", 2)]);
    let insufficient_node_info =
        "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes";
    struct Case {
        name: &'static str,
        nodes: HashMap<String, NodeInfo>,
        pods: Vec<Pod>,
        message: &'static str,
    }
    let cases = vec![
        Case {
            name: "a ready node without zone",
            nodes: {
                let mut n = three();
                n.insert("node-x".to_string(), node(None, 1000));
                n
            },
            pods: six.clone(),
            message: insufficient_node_info,
        },
        Case {
            name: "a ready node without allocatable CPU",
            nodes: {
                let mut n = three();
                n.insert("node-x".to_string(), node(Some("zone-a"), 0));
                n
            },
            pods: six.clone(),
            message: insufficient_node_info,
        },
        Case {
            // Kubernetes reports one zone as insufficient node information too.
            name: "a single zone",
            nodes: zonal(&[("zone-a", 3, 1000)]),
            pods: pods_in(&[("zone-a", 6)]),
            message: insufficient_node_info,
        },
        Case {
            name: "the other zones' nodes are not ready",
            nodes: {
                let mut n = three();
                n.get_mut("node-zone-b-0").unwrap().ready = false;
                n.get_mut("node-zone-c-0").unwrap().ready = false;
                n
            },
            pods: six.clone(),
            message: insufficient_node_info,
        },
        Case {
            name: "no nodes at all",
            nodes: HashMap::new(),
            pods: vec![],
            message: insufficient_node_info,
        },
        Case {
            name: "fewer endpoints than zones",
            nodes: three(),
            pods: pods_in(&[("zone-a", 1), ("zone-b", 1)]),
            message: "Insufficient number of endpoints (2 endpoints, 3 zones)",
        },
        Case {
            name: "no ready endpoints",
            nodes: three(),
            pods: (0..6).map(|i| on_node(pod(i, false), "node-zone-a-0")).collect(),
            message: "Insufficient number of endpoints (0 endpoints, 3 zones)",
        },
        Case {
            name: "minimums would overload",
            nodes: three(),
            pods: pods_in(&[("zone-a", 2), ("zone-b", 1), ("zone-c", 1)]),
            message: "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (4 endpoints, 3 zones)",
        },
        Case {
            // the zoneless node is a control plane, so node info suffices
            name: "an endpoint without zone",
            nodes: {
                let mut n = three();
                n.insert(
                    "cp-0".to_string(),
                    NodeInfo {
                        control_plane: true,
                        ..node(None, 1000)
                    },
                );
                n
            },
            pods: {
                let mut p = six.clone();
                p.push(on_node(pod(6, true), "cp-0"));
                p
            },
            message: "One or more endpoints do not have a zone specified",
        },
    ];
    for c in cases {
        let svc = auto(service("web"));
        let mut store = Store::default();
        let changes = store.sync(&svc, &c.pods, &c.nodes, &Options::default());
        assert_eq!(changes.events, vec![disabled(c.message)], "{}", c.name);
        assert!(
            hint_distribution(&changes.create).0.is_empty(),
            "{}",
            c.name
        );
        store.apply(&changes);
        // the warning repeats on every sync, as in Kubernetes; the slices do not churn
        let again = store.sync(&svc, &c.pods, &c.nodes, &Options::default());
        assert!(again.is_empty(), "{}", c.name);
        assert_eq!(again.events, vec![disabled(c.message)], "{}", c.name);
    }
}

/// Hints come and go with the endpoints: a fallback removes them from slices
/// that are not otherwise changing, and the Enabled event comes again when they
/// return.
#[test]
fn fallback_removes_and_recovery_restores_hints() {
    let svc = auto(service("web"));
    let nodes = zonal(&[
        ("zone-a", 1, 1000),
        ("zone-b", 1, 1000),
        ("zone-c", 1, 1000),
    ]);
    let six = pods_in(&[("zone-a", 2), ("zone-b", 2), ("zone-c", 2)]);
    let mut store = Store::default();
    store.converge(&svc, &six, &nodes, &Options::default());

    // A new zone appears with no endpoints: 6 endpoints still cover 4 zones,
    // but the minimums no longer fit; the unchanged slice loses its hints.
    let mut four = nodes.clone();
    four.insert("node-zone-d-0".to_string(), node(Some("zone-d"), 1000));
    let changes = store.clone().sync(&svc, &six, &four, &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));
    assert!(hint_distribution(&changes.update).0.is_empty());
    assert_eq!(
        changes.events,
        vec![disabled(
            "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (6 endpoints, 4 zones)"
        )]
    );

    // Scaling down below one endpoint per zone.
    let two: Vec<Pod> = six.iter().take(2).cloned().collect();
    let changes = store.sync(&svc, &two, &nodes, &Options::default());
    assert_eq!(
        changes.events,
        vec![disabled(
            "Insufficient number of endpoints (2 endpoints, 3 zones)"
        )]
    );
    store.apply(&changes);
    assert!(hint_distribution(store.slices.values()).0.is_empty());

    // Back up: hints return, with the Enabled event.
    let changes = store.converge(&svc, &six, &nodes, &Options::default());
    assert_eq!(changes.events, vec![enabled("IPv4")]);
    assert_eq!(hint_distribution(store.slices.values()).0.len(), 3);
}

/// Turning the annotation off removes the hints, with the Disabled event, unless
/// trafficDistribution takes over (its own-zone hints stay as they are).
/// Removing the annotation altogether removes the hints too, but the event
/// comes only when a cross-zone hint shows the annotation wrote them: own-zone
/// hints could as well be trafficDistribution's.
#[test]
fn annotation_removed() {
    let nodes = zonal(&[
        ("zone-a", 1, 1000),
        ("zone-b", 1, 1000),
        ("zone-c", 1, 1000),
    ]);
    let balanced = pods_in(&[("zone-a", 2), ("zone-b", 2), ("zone-c", 2)]);
    let skewed = pods_in(&[("zone-a", 1), ("zone-b", 3), ("zone-c", 2)]);
    let disabled_event = HintEvent {
        type_: "Warning",
        reason: "TopologyAwareHintsDisabled".to_string(),
        message: "Topology Aware Hints has been disabled, addressType: IPv4".to_string(),
    };
    struct Case {
        name: &'static str,
        pods: Vec<Pod>,
        traffic: Option<&'static str>,
        then: Option<&'static str>,
        updates: usize,
        events: Vec<HintEvent>,
        cross_after: usize,
        hinted_after: usize,
    }
    let cases = vec![
        Case {
            name: "annotation set to Disabled",
            pods: balanced.clone(),
            traffic: None,
            then: Some("Disabled"),
            updates: 1,
            events: vec![disabled_event.clone()],
            cross_after: 0,
            hinted_after: 0,
        },
        Case {
            name: "annotation removed, balanced hints",
            pods: balanced.clone(),
            traffic: None,
            then: None,
            updates: 1,
            events: vec![],
            cross_after: 0,
            hinted_after: 0,
        },
        Case {
            name: "annotation removed, a cross-zone hint",
            pods: skewed.clone(),
            traffic: None,
            then: None,
            updates: 1,
            events: vec![disabled_event.clone()],
            cross_after: 0,
            hinted_after: 0,
        },
        Case {
            name: "PreferClose takes over own-zone hints",
            pods: balanced.clone(),
            traffic: Some("PreferClose"),
            then: Some("Disabled"),
            updates: 0,
            events: vec![],
            cross_after: 0,
            hinted_after: 6,
        },
        Case {
            name: "PreferSameZone takes over, cross-zone hints are corrected",
            pods: skewed,
            traffic: Some("PreferSameZone"),
            then: None,
            updates: 1,
            events: vec![disabled_event],
            cross_after: 0,
            hinted_after: 6,
        },
    ];
    for c in cases {
        let mut svc = auto(service("web"));
        if let Some(t) = c.traffic {
            spec_mut(&mut svc).traffic_distribution = Some(t.to_string());
        }
        let mut store = Store::default();
        store.converge(&svc, &c.pods, &nodes, &Options::default());
        svc.metadata.annotations = None;
        if let Some(value) = c.then {
            annotate(&mut svc, ANNOTATION_TOPOLOGY_MODE, value);
        }
        let changes = store.converge(&svc, &c.pods, &nodes, &Options::default());
        assert_eq!(counts(&changes), (0, c.updates, 0), "{}", c.name);
        assert_eq!(changes.events, c.events, "{}", c.name);
        let (by_zone, cross) = hint_distribution(store.slices.values());
        assert_eq!(
            by_zone.values().sum::<usize>(),
            c.hinted_after,
            "{}",
            c.name
        );
        assert_eq!(cross, c.cross_after, "{}", c.name);
    }
}

/// Control-plane nodes and nodes that are not ready do not weigh their zone.
#[test]
fn control_plane_and_unready_nodes_do_not_count() {
    let mut nodes = zonal(&[("zone-a", 1, 1000), ("zone-b", 1, 1000)]);
    nodes.insert(
        "cp-a".to_string(),
        NodeInfo {
            control_plane: true,
            ..node(Some("zone-a"), 64000)
        },
    );
    nodes.insert(
        "down-a".to_string(),
        NodeInfo {
            ready: false,
            ..node(Some("zone-a"), 64000)
        },
    );
    // a zoneless node that is not ready does not spoil the node information
    nodes.insert(
        "down-x".to_string(),
        NodeInfo {
            ready: false,
            ..node(None, 0)
        },
    );
    let svc = auto(service("web"));
    let mut store = Store::default();
    store.converge(
        &svc,
        &pods_in(&[("zone-a", 2), ("zone-b", 2)]),
        &nodes,
        &Options::default(),
    );
    let (by_zone, cross) = hint_distribution(store.slices.values());
    assert_eq!(by_zone, dist(&[("zone-a", 2), ("zone-b", 2)]));
    assert_eq!(cross, 0);
}

/// Only ready endpoints get hints and count towards the allocation.
#[test]
fn unready_endpoints_get_no_hints() {
    let nodes = zonal(&[("zone-a", 1, 1000), ("zone-b", 1, 1000)]);
    let mut all = pods_in(&[("zone-a", 5), ("zone-b", 3)]);
    set_ready(&mut all[0], false);
    let mut term = terminating(all[1].clone());
    set_ready(&mut term, true);
    all[1] = term;
    let svc = auto(service("web"));
    let changes = Store::default().sync(&svc, &all, &nodes, &Options::default());
    for e in endpoints(&changes.create[0]) {
        let ready = e.conditions.as_ref().unwrap().ready == Some(true);
        assert_eq!(e.hints.is_some(), ready, "{:?}", e.target_ref);
    }
    assert_eq!(
        hint_distribution(&changes.create).0,
        dist(&[("zone-a", 3), ("zone-b", 3)])
    );
}

/// When node CPU shifts, hints of slices that are not otherwise changing are
/// re-checked against the new maximums and rebalanced if a zone would be
/// overloaded (what Kubernetes' periodic overload check triggers).
#[test]
fn cpu_shift_rebalances_unchanged_slices() {
    let svc = auto(service("web"));
    let all = pods_in(&[("zone-a", 2), ("zone-b", 2)]);
    let mut store = Store::default();
    store.converge(
        &svc,
        &all,
        &zonal(&[("zone-a", 1, 1000), ("zone-b", 1, 1000)]),
        &Options::default(),
    );

    let shifted = zonal(&[("zone-a", 1, 3000), ("zone-b", 1, 1000)]);
    let changes = store.converge(&svc, &all, &shifted, &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));
    assert!(changes.events.is_empty(), "hints stay enabled");
    let (by_zone, cross) = hint_distribution(store.slices.values());
    assert_eq!(by_zone, dist(&[("zone-a", 3), ("zone-b", 1)]));
    assert_eq!(cross, 1);

    // a shift within the threshold leaves hints alone
    let slight = zonal(&[("zone-a", 1, 3000), ("zone-b", 1, 1200)]);
    assert!(store
        .sync(&svc, &all, &slight, &Options::default())
        .is_empty());
}

/// Kubernetes' heuristic keeps an own-zone hint on a ready endpoint whose zone
/// has no ready nodes (that zone gets no allocation but is never asked to
/// give). Reproduced as is.
#[test]
fn endpoint_in_a_zone_without_ready_nodes() {
    let mut nodes = zonal(&[
        ("zone-a", 1, 1000),
        ("zone-b", 1, 1000),
        ("zone-c", 1, 1000),
    ]);
    nodes.get_mut("node-zone-c-0").unwrap().ready = false;
    let svc = auto(service("web"));
    let mut store = Store::default();
    let changes = store.converge(
        &svc,
        &pods_in(&[("zone-a", 3), ("zone-b", 3), ("zone-c", 1)]),
        &nodes,
        &Options::default(),
    );
    assert_eq!(changes.events, vec![enabled("IPv4")]);
    assert_eq!(
        hint_distribution(store.slices.values()).0,
        dist(&[("zone-a", 3), ("zone-b", 3), ("zone-c", 1)])
    );
}

/// Hints are decided per address type; the Enabled event is per Service, so a
/// dual-stack Service gets it once.
#[test]
fn dual_stack_hints() {
    let mut svc = auto(service("web"));
    spec_mut(&mut svc).ip_families = Some(vec!["IPv4".to_string(), "IPv6".to_string()]);
    let nodes = zonal(&[("zone-a", 1, 1000), ("zone-b", 1, 1000)]);
    let all: Vec<Pod> = pods_in(&[("zone-a", 2), ("zone-b", 2)])
        .into_iter()
        .enumerate()
        .map(|(i, mut p)| {
            p.status.as_mut().unwrap().pod_ips = Some(vec![
                PodIP {
                    ip: format!("10.0.0.{}", i + 1),
                },
                PodIP {
                    ip: format!("fd00::{}", i + 1),
                },
            ]);
            p
        })
        .collect();
    let mut store = Store::default();
    let changes = store.converge(&svc, &all, &nodes, &Options::default());
    assert_eq!(counts(&changes), (2, 0, 0));
    assert_eq!(changes.events, vec![enabled("IPv4")]);
    for slice in &changes.create {
        assert_eq!(
            hint_distribution([slice]).0,
            dist(&[("zone-a", 2), ("zone-b", 2)]),
            "{}",
            slice.address_type
        );
    }
}

/// The deprecated annotation wins over topology-mode, whatever its value.
#[test]
fn deprecated_annotation_wins() {
    let nodes = zonal(&[("zone-a", 1, 1000), ("zone-b", 1, 1000)]);
    let all = pods_in(&[("zone-a", 2), ("zone-b", 2)]);
    let mut svc = service("web");
    annotate(&mut svc, ANNOTATION_TOPOLOGY_MODE, "Auto");
    annotate(&mut svc, ANNOTATION_TOPOLOGY_AWARE_HINTS, "disabled");
    let changes = Store::default().sync(&svc, &all, &nodes, &Options::default());
    assert!(changes.events.is_empty());
    assert!(hint_distribution(&changes.create).0.is_empty());
}

/// New endpoints join an existing hinted slice: only the slice that changes is
/// written, and the unchanged slices' hints count towards the allocation.
#[test]
fn growth_touches_one_slice() {
    let svc = auto(service("web"));
    let nodes = zonal(&[("zone-a", 1, 1000), ("zone-b", 1, 1000)]);
    let all = pods_in(&[("zone-a", 6), ("zone-b", 6)]);
    let mut store = Store::default();
    store.converge(&svc, &all, &nodes, &opts(4));
    assert_eq!(store.slices.len(), 3);

    let mut more = all.clone();
    more.push(on_node(pod(12, true), "node-zone-a-0"));
    more.push(on_node(pod(13, true), "node-zone-b-0"));
    let changes = store.converge(&svc, &more, &nodes, &opts(4));
    assert_eq!(counts(&changes), (1, 0, 0));
    assert!(changes.events.is_empty());
    let (by_zone, cross) = hint_distribution(store.slices.values());
    assert_eq!(by_zone, dist(&[("zone-a", 7), ("zone-b", 7)]));
    assert_eq!(cross, 0);
}

/// Fallback events are per address type and name it; a dual-stack Service
/// gets one for each family, on every sync.
#[test]
fn fallback_events_name_the_address_type() {
    let nodes = zonal(&[("zone-a", 1, 1000)]);
    let all = pods_in(&[("zone-a", 2)]);
    let message =
        "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes";
    let cases: [(&[&str], &[&str]); 2] = [
        (&["IPv6"], &["IPv6"]),
        (&["IPv4", "IPv6"], &["IPv4", "IPv6"]),
    ];
    for (families, want) in cases {
        let mut svc = auto(service("web"));
        spec_mut(&mut svc).ip_families = Some(families.iter().map(|f| f.to_string()).collect());
        let changes = Store::default().sync(&svc, &all, &nodes, &Options::default());
        let got: Vec<HintEvent> = changes.events;
        let want: Vec<HintEvent> = want
            .iter()
            .map(|f| HintEvent {
                type_: "Warning",
                reason: "TopologyAwareHintsDisabled".to_string(),
                message: format!("{message}, addressType: {f}"),
            })
            .collect();
        assert_eq!(got, want, "{families:?}");
    }
}
