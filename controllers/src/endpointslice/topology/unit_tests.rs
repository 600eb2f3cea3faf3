//! The heuristic's parts, with Kubernetes' topologycache tables:
//! TestSetNodes, TestAddHints, Test_getGivingAndReceivingZones,
//! Test_getHintsByZone, Test_redistributeHints, Test_getTotalReadyEndpoints.
// Tables are tuples so that each case stays one row.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use super::*;
use capstan_api::k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

fn ep(address: &str, zone: Option<&str>, ready: Option<bool>, hint: Option<&[&str]>) -> Endpoint {
    Endpoint {
        addresses: vec![address.to_string()],
        zone: zone.map(str::to_string),
        conditions: Some(EndpointConditions {
            ready,
            ..EndpointConditions::default()
        }),
        hints: hint.map(|zones| EndpointHints {
            for_zones: Some(
                zones
                    .iter()
                    .map(|z| ForZone {
                        name: z.to_string(),
                    })
                    .collect(),
            ),
            for_nodes: None,
        }),
        ..Endpoint::default()
    }
}

fn ready(address: &str, zone: &str) -> Endpoint {
    ep(address, Some(zone), Some(true), None)
}

fn slice(endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        endpoints: Some(endpoints),
        ..EndpointSlice::default()
    }
}

fn ratios(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(z, r)| (z.to_string(), *r)).collect()
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(z, n)| (z.to_string(), *n)).collect()
}

fn ucounts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(z, n)| (z.to_string(), *n)).collect()
}

fn desired(pairs: &[(&str, f64)]) -> BTreeMap<String, Allocation> {
    pairs
        .iter()
        .map(|(z, d)| {
            (
                z.to_string(),
                Allocation {
                    minimum: 0,
                    maximum: 0,
                    desired: *d,
                },
            )
        })
        .collect()
}

fn maximums(pairs: &[(&str, usize)]) -> BTreeMap<String, Allocation> {
    pairs
        .iter()
        .map(|(z, m)| {
            (
                z.to_string(),
                Allocation {
                    minimum: 0,
                    maximum: *m,
                    desired: 0.0,
                },
            )
        })
        .collect()
}

fn hints_of(slices: &[EndpointSlice]) -> Vec<Vec<Option<String>>> {
    slices
        .iter()
        .map(|s| {
            s.endpoints
                .iter()
                .flatten()
                .map(|e| {
                    e.hints
                        .as_ref()
                        .and_then(|h| h.for_zones.as_ref())
                        .map(|z| {
                            z.iter()
                                .map(|z| z.name.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                })
                .collect()
        })
        .collect()
}

/// TestSetNodes.
#[test]
fn zone_cpu_ratios_table() {
    type NodeSpec = (Option<&'static str>, i64, bool, bool);
    let cases: Vec<(&str, Vec<NodeSpec>, Option<Vec<(&str, f64)>>)> = vec![
        ("empty", vec![], None),
        (
            "single node",
            vec![(Some("zone-a"), 1000, true, false)],
            None,
        ),
        (
            "single zone",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-a"), 1000, true, false),
            ],
            None,
        ),
        (
            "2 zones",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-b"), 1000, true, false),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "2 zones, unready node in 1, ready node in 1",
            vec![
                (Some("zone-a"), 1000, false, false),
                (Some("zone-b"), 1000, true, false),
            ],
            None,
        ),
        (
            "2 zones, control plane node in 1, ready node in 1",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-b"), 1000, true, true),
            ],
            None,
        ),
        (
            "2 zones, unready node in 1, ready node in 2",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-b"), 1000, true, false),
                (Some("zone-b"), 1000, false, false),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "2 zones, control plane node in 1, ready node in 2",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-b"), 1000, true, false),
                (Some("zone-b"), 1000, true, true),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "3 zones, 4 nodes in 1, 2 nodes in 1, 1 node in 1",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-a"), 1000, true, false),
                (Some("zone-a"), 1000, true, false),
                (Some("zone-a"), 2000, true, false),
                (Some("zone-b"), 3000, true, false),
                (Some("zone-b"), 1500, true, false),
                (Some("zone-c"), 500, true, false),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.45), ("zone-c", 0.05)]),
        ),
        (
            "a ready node without zone",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-b"), 1000, true, false),
                (None, 1000, true, false),
            ],
            None,
        ),
        (
            "a ready node without CPU",
            vec![
                (Some("zone-a"), 1000, true, false),
                (Some("zone-b"), 1000, true, false),
                (Some("zone-b"), 0, true, false),
            ],
            None,
        ),
    ];
    for (name, specs, want) in cases {
        let nodes: HashMap<String, NodeInfo> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (zone, cpu, ready, control_plane))| {
                (
                    format!("node-{i}"),
                    NodeInfo {
                        zone: zone.map(str::to_string),
                        allocatable_cpu_millis: cpu,
                        ready,
                        control_plane,
                    },
                )
            })
            .collect();
        assert_eq!(zone_cpu_ratios(&nodes), want.map(|w| ratios(&w)), "{name}");
    }
}

/// Minimums and maximums (getAllocations).
#[test]
fn allocations_table() {
    let cases: Vec<(&str, Option<Vec<(&str, f64)>>, usize, Result<Vec<(&str, usize, usize, f64)>, &str>)> = vec![
        (
            "no node information",
            None,
            10,
            Err("Insufficient Node information: allocatable CPU or zone not specified on one or more nodes"),
        ),
        ("one zone", Some(vec![("zone-a", 1.0)]), 10, Err("Nodes only ready in one zone")),
        (
            "fewer endpoints than zones",
            Some(vec![("zone-a", 0.3), ("zone-b", 0.4), ("zone-c", 0.3)]),
            2,
            Err("Insufficient number of endpoints (2 endpoints, 3 zones)"),
        ),
        (
            "minimums exceed the endpoints",
            Some(vec![("zone-a", 1.0 / 3.0), ("zone-b", 1.0 / 3.0), ("zone-c", 1.0 / 3.0)]),
            4,
            Err("Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (4 endpoints, 3 zones)"),
        ),
        (
            "two zones",
            Some(vec![("zone-a", 0.45), ("zone-b", 0.55)]),
            2,
            // a zone's target is never below its minimum
            Ok(vec![("zone-a", 1, 1, 1.0), ("zone-b", 1, 1, 1.1)]),
        ),
        (
            "three equal zones, six endpoints",
            Some(vec![("zone-a", 1.0 / 3.0), ("zone-b", 1.0 / 3.0), ("zone-c", 1.0 / 3.0)]),
            6,
            Ok(vec![("zone-a", 2, 2, 2.0), ("zone-b", 2, 2, 2.0), ("zone-c", 2, 2, 2.0)]),
        ),
        (
            "unequal zones leave slack",
            Some(vec![("zone-a", 0.5), ("zone-b", 0.25), ("zone-c", 0.25)]),
            20,
            Ok(vec![("zone-a", 9, 10, 10.0), ("zone-b", 5, 6, 5.0), ("zone-c", 5, 6, 5.0)]),
        ),
        (
            "unequal zones, minimums too high for the count",
            Some(vec![("zone-a", 0.5), ("zone-b", 0.25), ("zone-c", 0.25)]),
            10,
            Err("Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (10 endpoints, 3 zones)"),
        ),
    ];
    for (name, r, n, want) in cases {
        let got = allocations(r.map(|r| ratios(&r)).as_ref(), n);
        match want {
            Err(message) => assert_eq!(got, Err(message.to_string()), "{name}"),
            Ok(want) => {
                let got = got.unwrap();
                assert_eq!(got.len(), want.len(), "{name}");
                for (zone, min, max, desired) in want {
                    let a = got[zone];
                    assert_eq!((a.minimum, a.maximum), (min, max), "{name} {zone}");
                    assert!(
                        (a.desired - desired).abs() < 1e-9,
                        "{name} {zone}: {}",
                        a.desired
                    );
                }
            }
        }
    }
}

/// TestAddHints.
#[test]
fn add_hints_table() {
    struct Case {
        name: &'static str,
        ratios: Option<Vec<(&'static str, f64)>>,
        create: Vec<EndpointSlice>,
        update: Vec<EndpointSlice>,
        want_create: Vec<Vec<Option<&'static str>>>,
        want_update: Vec<Vec<Option<&'static str>>>,
        want: Result<(), &'static str>,
    }
    let three = Some(vec![("zone-a", 0.35), ("zone-b", 0.35), ("zone-c", 0.30)]);
    let cases = vec![
        Case {
            name: "empty",
            ratios: None,
            create: vec![],
            update: vec![],
            want_create: vec![],
            want_update: vec![],
            want: Err(msg::INSUFFICIENT_NODE_INFO),
        },
        Case {
            name: "slice to create, no zone ratios",
            ratios: None,
            create: vec![slice(vec![ready("10.1.2.3", "zone-a")])],
            update: vec![],
            want_create: vec![vec![None]],
            want_update: vec![],
            want: Err(msg::INSUFFICIENT_NODE_INFO),
        },
        Case {
            name: "slice to create with 2 endpoints, zone ratios require 3",
            ratios: Some(vec![("zone-a", 0.3), ("zone-b", 0.4), ("zone-c", 0.3)]),
            create: vec![slice(vec![
                ready("10.1.2.3", "zone-a"),
                ready("10.1.2.4", "zone-b"),
            ])],
            update: vec![],
            want_create: vec![vec![None, None]],
            want_update: vec![],
            want: Err("Insufficient number of endpoints (2 endpoints, 3 zones)"),
        },
        Case {
            name: "slice to create with 2 endpoints, zone ratios only require 2",
            ratios: Some(vec![("zone-a", 0.45), ("zone-b", 0.55)]),
            create: vec![slice(vec![
                ready("10.1.2.3", "zone-a"),
                ready("10.1.2.4", "zone-b"),
            ])],
            update: vec![],
            want_create: vec![vec![Some("zone-a"), Some("zone-b")]],
            want_update: vec![],
            want: Ok(()),
        },
        Case {
            name: "2 ready, 1 unready, 1 unknown endpoints, zone ratios only require 2",
            ratios: Some(vec![("zone-a", 0.45), ("zone-b", 0.55)]),
            create: vec![slice(vec![
                ready("10.1.2.3", "zone-a"),
                ready("10.1.2.4", "zone-b"),
                ep("10.1.2.5", Some("zone-b"), Some(false), None),
                ep("10.1.2.6", Some("zone-b"), None, None),
            ])],
            update: vec![],
            want_create: vec![vec![Some("zone-a"), Some("zone-b"), None, None]],
            want_update: vec![],
            want: Ok(()),
        },
        Case {
            name: "slices to create and update within 3 zone threshold",
            ratios: three,
            create: vec![
                slice(vec![
                    ready("10.1.2.3", "zone-a"),
                    ready("10.1.2.4", "zone-b"),
                ]),
                slice(vec![
                    ready("10.1.3.3", "zone-c"),
                    ready("10.1.3.4", "zone-c"),
                    ready("10.1.3.4", "zone-a"),
                ]),
            ],
            update: vec![
                slice(vec![
                    ready("10.2.2.3", "zone-a"),
                    ready("10.2.2.4", "zone-a"),
                ]),
                slice(vec![
                    ready("10.2.3.3", "zone-b"),
                    ready("10.2.3.4", "zone-c"),
                    ready("10.2.3.4", "zone-a"),
                ]),
            ],
            want_create: vec![
                vec![Some("zone-b"), Some("zone-b")],
                vec![Some("zone-c"), Some("zone-c"), Some("zone-a")],
            ],
            want_update: vec![
                vec![Some("zone-a"), Some("zone-a")],
                vec![Some("zone-b"), Some("zone-c"), Some("zone-a")],
            ],
            want: Ok(()),
        },
        Case {
            name: "a ready endpoint without zone",
            ratios: Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
            create: vec![slice(vec![
                ready("10.1.2.3", "zone-a"),
                ready("10.1.2.4", "zone-b"),
                ready("10.1.2.5", "zone-b"),
                ep("10.1.2.6", None, Some(true), None),
            ])],
            update: vec![],
            want_create: vec![vec![None, None, None, None]],
            want_update: vec![],
            want: Err(msg::NO_ZONE_SPECIFIED),
        },
    ];
    for c in cases {
        let mut plan = Plan {
            create: c.create,
            update: c.update,
            ..Plan::default()
        };
        let got = add_hints(&mut plan, c.ratios.map(|r| ratios(&r)).as_ref());
        assert_eq!(got, c.want.map_err(str::to_string), "{}", c.name);
        let owned = |v: Vec<Vec<Option<&str>>>| -> Vec<Vec<Option<String>>> {
            v.into_iter()
                .map(|s| s.into_iter().map(|h| h.map(str::to_string)).collect())
                .collect()
        };
        assert_eq!(hints_of(&plan.create), owned(c.want_create), "{}", c.name);
        assert_eq!(hints_of(&plan.update), owned(c.want_update), "{}", c.name);
    }
}

/// Test_getTotalReadyEndpoints, through add_hints: unchanged slices' ready
/// endpoints count, unready ones do not.
#[test]
fn ready_endpoints_of_unchanged_slices_count() {
    let hinted = |address: &str, zone: &str| ep(address, Some(zone), Some(true), Some(&[zone]));
    let mut plan = Plan {
        unchanged: vec![slice(vec![
            hinted("10.0.0.1", "zone-a"),
            hinted("10.0.0.2", "zone-b"),
            ep("10.0.0.3", Some("zone-a"), Some(false), None),
        ])],
        create: vec![slice(vec![ready("10.0.0.4", "zone-c")])],
        ..Plan::default()
    };
    let three = ratios(&[
        ("zone-a", 1.0 / 3.0),
        ("zone-b", 1.0 / 3.0),
        ("zone-c", 1.0 / 3.0),
    ]);
    // 3 ready endpoints for 3 zones: enough only because the unchanged count
    assert_eq!(add_hints(&mut plan, Some(&three)), Ok(()));
    assert_eq!(plan.unchanged.len(), 1, "valid hints stay untouched");
    assert_eq!(
        hints_of(&plan.create),
        vec![vec![Some("zone-c".to_string())]]
    );
}

/// Test_getGivingAndReceivingZones.
#[test]
fn giving_and_receiving_table() {
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, f64)>,
        Vec<(&'a str, i64)>,
        Vec<(&'a str, usize)>,
        Vec<(&'a str, usize)>,
    );
    let cases: Vec<Case> = vec![
        ("empty", vec![], vec![], vec![], vec![]),
        (
            "simple allocation with no need for rebalancing",
            vec![("zone-a", 1.2), ("zone-b", 1.1), ("zone-c", 1.0)],
            vec![("zone-a", 1), ("zone-b", 1), ("zone-c", 1)],
            vec![],
            vec![],
        ),
        (
            "preference for same zone even when giving an extra endpoint would be slightly better",
            vec![("zone-a", 5.1), ("zone-b", 5.1), ("zone-c", 5.8)],
            vec![("zone-a", 16)],
            vec![("zone-a", 10)],
            vec![("zone-b", 5), ("zone-c", 5)],
        ),
        (
            "when 2 zones need < 1 endpoint, give to zone that needs endpoint most",
            vec![("zone-a", 5.0), ("zone-b", 5.6), ("zone-c", 5.4)],
            vec![("zone-a", 16)],
            vec![("zone-a", 11)],
            vec![("zone-b", 6), ("zone-c", 5)],
        ),
        (
            "when 2 zones have extra endpoints, give from zone with most extra",
            vec![("zone-a", 5.0), ("zone-b", 5.6), ("zone-c", 5.4)],
            vec![("zone-b", 8), ("zone-c", 8)],
            vec![("zone-b", 2), ("zone-c", 3)],
            vec![("zone-a", 5)],
        ),
        (
            "more allocated than allocations",
            vec![("zone-a", 5.0), ("zone-b", 5.0), ("zone-c", 5.0)],
            vec![("zone-a", 6), ("zone-b", 6), ("zone-c", 6)],
            vec![],
            vec![],
        ),
        (
            "negative allocations",
            vec![("zone-a", -5.0), ("zone-b", -5.0), ("zone-c", -5.0)],
            vec![("zone-a", 6), ("zone-b", 6), ("zone-c", 6)],
            vec![],
            vec![],
        ),
        (
            "negative allocated",
            vec![("zone-a", 5.0), ("zone-b", 5.0), ("zone-c", 5.0)],
            vec![("zone-a", -4), ("zone-b", -3), ("zone-c", -2)],
            vec![],
            vec![],
        ),
        (
            "negative for 1 zone",
            vec![("zone-a", 5.0), ("zone-b", 5.0), ("zone-c", 5.0)],
            vec![("zone-a", -40), ("zone-b", 20), ("zone-c", 20)],
            vec![("zone-b", 15), ("zone-c", 15)],
            vec![("zone-a", 30)],
        ),
    ];
    for (name, allocs, allocated, want_giving, want_receiving) in cases {
        let (giving, receiving) = giving_and_receiving(&desired(&allocs), &counts(&allocated));
        assert_eq!(giving, ucounts(&want_giving), "{name}");
        assert_eq!(receiving, ucounts(&want_receiving), "{name}");
    }
}

/// Test_getHintsByZone.
#[test]
fn valid_hints_by_zone_table() {
    let hinted = |zone: &str, hint: &[&str]| ep("10.0.0.1", Some(zone), Some(true), Some(hint));
    type Case<'a> = (
        &'a str,
        Vec<Endpoint>,
        Vec<(&'a str, i64)>,
        Vec<(&'a str, usize)>,
        Option<Vec<(&'a str, i64)>>,
    );
    let cases: Vec<Case> = vec![
        ("empty", vec![], vec![], vec![], Some(vec![])),
        (
            "single zone hint",
            vec![hinted("zone-a", &["zone-a"])],
            vec![("zone-a", 1)],
            vec![("zone-a", 3)],
            Some(vec![("zone-a", 1)]),
        ),
        (
            "single zone hint with 1 unready endpoint and 1 unknown endpoint",
            vec![
                hinted("zone-a", &["zone-a"]),
                ep("10.0.0.2", Some("zone-a"), Some(false), Some(&["zone-a"])),
                ep("10.0.0.3", Some("zone-a"), None, Some(&["zone-a"])),
            ],
            vec![("zone-a", 1)],
            vec![("zone-a", 3)],
            Some(vec![("zone-a", 1)]),
        ),
        (
            "multiple zone hints",
            vec![
                hinted("zone-a", &["zone-a"]),
                hinted("zone-a", &["zone-b"]),
                hinted("zone-b", &["zone-b"]),
            ],
            vec![("zone-a", 1), ("zone-b", 1), ("zone-c", 1)],
            vec![("zone-a", 3), ("zone-b", 3), ("zone-c", 3)],
            Some(vec![("zone-a", 1), ("zone-b", 2)]),
        ),
        (
            "invalid by zones that no longer require any allocations",
            vec![hinted("zone-a", &["zone-non-existent"])],
            vec![("zone-a", 1), ("zone-b", 1), ("zone-c", 1)],
            vec![("zone-a", 3)],
            None,
        ),
        (
            "invalid by endpoints with nil hints",
            vec![ep("10.0.0.1", Some("zone-a"), Some(true), None)],
            vec![],
            vec![("zone-a", 3)],
            None,
        ),
        (
            "invalid by endpoint with no hints",
            vec![hinted("zone-a", &[])],
            vec![],
            vec![("zone-a", 3)],
            None,
        ),
        (
            "invalid by hints that would make minimum allocations impossible",
            vec![hinted("zone-a", &["zone-a"]), hinted("zone-a", &["zone-a"])],
            vec![("zone-a", 1)],
            vec![("zone-a", 2)],
            None,
        ),
    ];
    for (name, eps, allocated, maxes, want) in cases {
        let got = valid_hints_by_zone(&slice(eps), &counts(&allocated), &maximums(&maxes));
        assert_eq!(got, want.map(|w| counts(&w)), "{name}");
    }
}

/// Test_redistributeHints.
#[test]
fn redistribute_table() {
    let a_hinted = || ep("10.0.0.1", Some("zone-a"), Some(true), Some(&["zone-a"]));
    type Case<'a> = (
        &'a str,
        Vec<EndpointSlice>,
        Vec<(&'a str, usize)>,
        Vec<(&'a str, usize)>,
        Vec<(&'a str, i64)>,
    );
    let cases: Vec<Case> = vec![
        ("empty", vec![], vec![], vec![], vec![]),
        (
            "single endpoint",
            vec![slice(vec![a_hinted()])],
            vec![("zone-a", 1)],
            vec![("zone-b", 1)],
            vec![("zone-a", -1), ("zone-b", 1)],
        ),
        (
            "endpoints from 1 zone redistributed to 2 other zones",
            vec![slice(vec![a_hinted(), a_hinted(), a_hinted()])],
            vec![("zone-a", 2)],
            vec![("zone-b", 1), ("zone-c", 1)],
            vec![("zone-a", -2), ("zone-b", 1), ("zone-c", 1)],
        ),
    ];
    for (name, mut slices, giving, receiving, want) in cases {
        let moved = redistribute(slices.iter_mut(), ucounts(&giving), ucounts(&receiving));
        assert_eq!(moved, counts(&want), "{name}");
    }
}

/// Removing hints moves hinted unchanged slices to update and leaves the rest.
#[test]
fn remove_hints_moves_only_hinted_unchanged_slices() {
    let mut plan = Plan {
        unchanged: vec![
            slice(vec![ep(
                "10.0.0.1",
                Some("zone-a"),
                Some(true),
                Some(&["zone-a"]),
            )]),
            slice(vec![ready("10.0.0.2", "zone-b")]),
        ],
        create: vec![slice(vec![ep(
            "10.0.0.3",
            Some("zone-a"),
            Some(false),
            Some(&["zone-a"]),
        )])],
        ..Plan::default()
    };
    remove_hints(&mut plan);
    assert_eq!(plan.unchanged.len(), 1);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(hints_of(&plan.update), vec![vec![None]]);
    assert_eq!(hints_of(&plan.create), vec![vec![None]]);
}
