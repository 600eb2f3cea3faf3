//! `spec.trafficDistribution`: TestReconcile_TrafficDistribution and
//! trafficdist's TestReconcileHints, through `desired_slices`.

use super::*;

/// node-0 in zone-a holds pod0, node-1 in zone-b pods 1–3, node-2 in zone-c
/// pods 4–5 (Kubernetes' test topology).
fn topology() -> (HashMap<String, NodeInfo>, Vec<Pod>) {
    let nodes = (0..3)
        .map(|i| {
            let zone = format!("zone-{}", (b'a' + i) as char);
            (format!("node-{i}"), node(Some(&zone), 100))
        })
        .collect();
    let placement = [0, 1, 1, 1, 2, 2];
    let pods = placement
        .iter()
        .enumerate()
        .map(|(i, n)| on_node(pod(i, true), &format!("node-{n}")))
        .collect();
    (nodes, pods)
}

fn with_traffic(traffic: Option<&str>, annotation: &str) -> Service {
    let mut svc = service("foo");
    spec_mut(&mut svc).traffic_distribution = traffic.map(str::to_string);
    annotate(&mut svc, ANNOTATION_TOPOLOGY_AWARE_HINTS, annotation);
    svc
}

/// (hints per zone, hints per node, endpoints hinted for another zone);
/// endpoints without zone hints count under "".
fn distribution(
    slices: &[EndpointSlice],
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>, usize) {
    let mut zones = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    let mut cross = 0;
    for e in slices.iter().flat_map(endpoints) {
        let hints = e.hints.clone().unwrap_or_default();
        let zone = match hints.for_zones.as_deref() {
            Some([z]) => z.name.clone(),
            _ => String::new(),
        };
        if !zone.is_empty() && Some(&zone) != e.zone.as_ref() {
            cross += 1;
        }
        *zones.entry(zone).or_default() += 1;
        for n in hints.for_nodes.iter().flatten() {
            *nodes.entry(n.name.clone()).or_default() += 1;
        }
    }
    (zones, nodes, cross)
}

fn counted(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// TestReconcile_TrafficDistribution (with PreferSameZone / PreferSameNode GA,
/// as in 1.35).
#[test]
fn traffic_distribution_table() {
    let (nodes, pods) = topology();
    let own_zones = [("zone-a", 1), ("zone-b", 3), ("zone-c", 2)];
    struct Case {
        name: &'static str,
        traffic: Option<&'static str>,
        annotation: &'static str,
        zones: Vec<(&'static str, usize)>,
        nodes: Vec<(&'static str, usize)>,
        cross: usize,
        events: usize,
    }
    let cases = vec![
        Case {
            name: "PreferClose, annotation Disabled",
            traffic: Some("PreferClose"),
            annotation: "Disabled",
            zones: own_zones.to_vec(),
            nodes: vec![],
            cross: 0,
            events: 0,
        },
        Case {
            name: "PreferClose, annotation Auto: the annotation wins",
            traffic: Some("PreferClose"),
            annotation: "Auto",
            zones: vec![("zone-a", 2), ("zone-b", 2), ("zone-c", 2)],
            nodes: vec![],
            cross: 1,
            events: 1,
        },
        Case {
            name: "no trafficDistribution, no annotation",
            traffic: None,
            annotation: "",
            zones: vec![("", 6)],
            nodes: vec![],
            cross: 0,
            events: 0,
        },
        Case {
            name: "PreferSameZone",
            traffic: Some("PreferSameZone"),
            annotation: "Disabled",
            zones: own_zones.to_vec(),
            nodes: vec![],
            cross: 0,
            events: 0,
        },
        Case {
            name: "PreferSameNode: node and zone hints",
            traffic: Some("PreferSameNode"),
            annotation: "Disabled",
            zones: own_zones.to_vec(),
            nodes: vec![("node-0", 1), ("node-1", 3), ("node-2", 2)],
            cross: 0,
            events: 0,
        },
        Case {
            name: "unrecognised value: no hints",
            traffic: Some("Unknown"),
            annotation: "",
            zones: vec![("", 6)],
            nodes: vec![],
            cross: 0,
            events: 0,
        },
    ];
    for c in cases {
        let svc = with_traffic(c.traffic, c.annotation);
        let mut store = Store::default();
        let changes = store.converge(&svc, &pods, &nodes, &Options::default());
        assert_eq!(counts(&changes), (1, 0, 0), "{}", c.name);
        assert_eq!(changes.events.len(), c.events, "{}", c.name);
        let (zones, by_node, cross) = distribution(&changes.create);
        assert_eq!(zones, counted(&c.zones), "{}", c.name);
        assert_eq!(by_node, counted(&c.nodes), "{}", c.name);
        assert_eq!(cross, c.cross, "{}", c.name);
    }
}

/// An endpoint without a zone simply gets no zone hint; the others keep theirs
/// (the controller has no all-or-nothing rule here — kube-proxy, the consumer,
/// ignores hints when some endpoint lacks them).
#[test]
fn endpoint_without_zone() {
    let (mut nodes, mut pods) = topology();
    nodes.insert("node-3".to_string(), node(None, 100));
    pods.push(on_node(pod(6, true), "node-3"));
    let cases = [
        ("PreferSameZone", None),
        ("PreferSameNode", Some(("node-3", 1))),
    ];
    for (traffic, node_hint) in cases {
        let svc = with_traffic(Some(traffic), "");
        let changes = Store::default().sync(&svc, &pods, &nodes, &Options::default());
        let zoneless = endpoints(&changes.create[0])
            .iter()
            .find(|e| e.node_name.as_deref() == Some("node-3"))
            .unwrap();
        match node_hint {
            None => assert_eq!(zoneless.hints, None, "{traffic}"),
            Some((node, _)) => assert_eq!(
                zoneless.hints,
                Some(EndpointHints {
                    for_zones: None,
                    for_nodes: Some(vec![ForNode {
                        name: node.to_string()
                    }]),
                }),
                "{traffic}"
            ),
        }
        let (zones, _, _) = distribution(&changes.create);
        assert_eq!(
            zones,
            counted(&[("", 1), ("zone-a", 1), ("zone-b", 3), ("zone-c", 2)]),
            "{traffic}"
        );
    }
}

/// TestReconcileHints cases on existing slices: wrong hints in unchanged slices
/// are corrected, unready endpoints are never a reason to write, and removing
/// the field removes the hints.
#[test]
fn hints_on_existing_slices() {
    let (nodes, pods) = topology();
    let svc = with_traffic(Some("PreferClose"), "");
    let zone_of = |i: usize| ["zone-a", "zone-b", "zone-b", "zone-b", "zone-c", "zone-c"][i];
    let node_of = |i: usize| ["node-0", "node-1", "node-1", "node-1", "node-2", "node-2"][i];
    let ep = |i: usize, ready: bool, hint: Option<&str>| {
        let mut e = endpoint_of(i, ready, Some(zone_of(i)));
        e.node_name = Some(node_of(i).to_string());
        e.hints = hint.and_then(|z| zone_hints(&[z]));
        e
    };
    let slice =
        |name: &str, eps: Vec<Endpoint>| existing_slice(&svc, name, svc_ports("foo", 80), eps);

    // correct hints everywhere: nothing to do
    let good = vec![
        slice(
            "foo-1",
            (0..3).map(|i| ep(i, true, Some(zone_of(i)))).collect(),
        ),
        slice(
            "foo-2",
            (3..6).map(|i| ep(i, true, Some(zone_of(i)))).collect(),
        ),
    ];
    assert!(Store::with(good.clone())
        .sync(&svc, &pods, &nodes, &Options::default())
        .is_empty());

    // one wrong hint: only its slice is rewritten
    let mut wrong = good.clone();
    wrong[1].endpoints.as_mut().unwrap()[0].hints = zone_hints(&["zone-c"]);
    let changes = Store::with(wrong).sync(&svc, &pods, &nodes, &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));
    assert_eq!(changes.update[0].metadata.name.as_deref(), Some("foo-2"));
    assert_eq!(distribution(&changes.update).2, 0);

    // a missing hint on a ready endpoint, likewise
    let mut missing = good.clone();
    missing[0].endpoints.as_mut().unwrap()[2].hints = None;
    let changes = Store::with(missing).sync(&svc, &pods, &nodes, &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));

    // an unready endpoint without hints is fine
    let mut unready_pods = pods.clone();
    set_ready(&mut unready_pods[4], false);
    let mut unready = good.clone();
    unready[1].endpoints.as_mut().unwrap()[1] = ep(4, false, None);
    assert!(Store::with(unready)
        .sync(&svc, &unready_pods, &nodes, &Options::default())
        .is_empty());

    // the field removed: hints go
    let plain = with_traffic(None, "");
    let changes = Store::with(good).sync(&plain, &pods, &nodes, &Options::default());
    assert_eq!(counts(&changes), (0, 2, 0));
    assert!(changes.events.is_empty());
    assert_eq!(distribution(&changes.update).0, counted(&[("", 6)]));
}

/// Switching between PreferSameZone and PreferSameNode adds and removes node
/// hints.
#[test]
fn switching_heuristics() {
    let (nodes, pods) = topology();
    let mut store = Store::default();
    store.converge(
        &with_traffic(Some("PreferSameZone"), ""),
        &pods,
        &nodes,
        &Options::default(),
    );
    let changes = store.converge(
        &with_traffic(Some("PreferSameNode"), ""),
        &pods,
        &nodes,
        &Options::default(),
    );
    assert_eq!(counts(&changes), (0, 1, 0));
    let first = &endpoints(&changes.update[0])[0];
    assert_eq!(first.hints, node_and_zone_hints("node-0", "zone-a"));
    let changes = store.converge(
        &with_traffic(Some("PreferClose"), ""),
        &pods,
        &nodes,
        &Options::default(),
    );
    assert_eq!(counts(&changes), (0, 1, 0));
    assert_eq!(distribution(&changes.update).1, BTreeMap::new());
}
