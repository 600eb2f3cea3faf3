//! Slice placement and churn: Kubernetes' `reconciler_test.go` cases, then the
//! life-cycle cases (readiness flips, scaling, port and family changes).

use super::*;

/// Even without pods a Service gets one placeholder slice per address type
/// (TestReconcileEmpty), and keeps it (TestReconcile1EndpointSlice).
#[test]
fn empty_service_gets_a_placeholder() {
    let svc = service("foo");
    let mut store = Store::default();
    let changes = store.converge(&svc, &[], &one_node(), &Options::default());
    assert_eq!(counts(&changes), (1, 0, 0));
    let slice = &changes.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("foo-"));
    assert_eq!(slice.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(slice.ports.as_deref(), Some(&[][..]));
    assert_eq!(slice.endpoints.as_deref(), Some(&[][..]));
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap(),
        &BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string()),
            (LABEL_SERVICE_NAME.to_string(), "foo".to_string()),
        ])
    );
    assert_eq!(
        slice.metadata.owner_references.as_ref().unwrap(),
        &vec![OwnerReference {
            api_version: "v1".to_string(),
            kind: "Service".to_string(),
            name: "foo".to_string(),
            uid: "test-foo".to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]
    );
}

/// TestReconcile1EndpointSlice: an existing placeholder that is the same is
/// left alone; one that differs (its labels) is updated, not recreated.
#[test]
fn existing_placeholder() {
    let svc = service("foo");
    let same = {
        let mut s = existing_slice(&svc, "foo-abc", vec![], vec![]);
        s.ports = None; // the API server may drop an empty list
        s
    };
    let mut different = existing_slice(&svc, "foo-abc", vec![], vec![]);
    different
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("bar".to_string(), "baz".to_string());
    let cases: [(&str, EndpointSlice, (usize, usize, usize)); 2] = [
        ("same placeholder", same, (0, 0, 0)),
        ("placeholder with other labels", different, (0, 1, 0)),
    ];
    for (name, existing, want) in cases {
        let mut store = Store::with(vec![existing]);
        let changes = store.converge(&svc, &[], &one_node(), &Options::default());
        assert_eq!(counts(&changes), want, "{name}");
        assert_eq!(store.slices.len(), 1, "{name}");
        let labels = store.list()[0].metadata.labels.clone().unwrap();
        assert!(!labels.contains_key("bar"), "{name}");
    }
}

/// TestReconcile1Pod: one pod, each kind of Service: the slices' address types,
/// labels and the endpoint written.
#[test]
fn one_pod_per_service_kind() {
    let mut p = pod(1, true);
    p.status.as_mut().unwrap().pod_ips = Some(vec![
        PodIP {
            ip: "1.2.3.4".to_string(),
        },
        PodIP {
            ip: "1234::5678:0000:0000:9abc:def0".to_string(),
        },
    ]);
    p.spec.as_mut().unwrap().hostname = Some("example-hostname".to_string());
    let nodes: HashMap<String, NodeInfo> =
        [("node-1".to_string(), node(Some("us-central1-a"), 1000))].into();

    type Edit = fn(&mut Service);
    let cases: Vec<(&str, Edit, &[&str], Vec<(&str, &str)>)> = vec![
        (
            "no families, IPv4 cluster IP",
            |s| {
                spec_mut(s).ip_families = None;
            },
            &["IPv4"],
            vec![],
        ),
        (
            "ipv4 without cluster IP (headless label)",
            |s| {
                spec_mut(s).cluster_ip = None;
            },
            &["IPv4"],
            vec![(LABEL_HEADLESS, "")],
        ),
        ("ipv4 cluster IP", |_| {}, &["IPv4"], vec![]),
        (
            "ipv4 with labels",
            |s| {
                spec_mut(s).cluster_ip = None;
                s.metadata.labels = Some([("foo".to_string(), "bar".to_string())].into());
            },
            &["IPv4"],
            vec![(LABEL_HEADLESS, ""), ("foo", "bar")],
        ),
        (
            "ipv4 with reserved labels",
            |s| {
                spec_mut(s).cluster_ip = None;
                s.metadata.labels = Some(
                    [
                        (LABEL_SERVICE_NAME.to_string(), "bad".to_string()),
                        (LABEL_MANAGED_BY.to_string(), "actor".to_string()),
                        (LABEL_HEADLESS.to_string(), "invalid".to_string()),
                    ]
                    .into(),
                );
            },
            &["IPv4"],
            vec![(LABEL_HEADLESS, "")],
        ),
        (
            "ipv6 without cluster IP",
            |s| {
                spec_mut(s).cluster_ip = None;
                spec_mut(s).ip_families = Some(vec!["IPv6".to_string()]);
            },
            &["IPv6"],
            vec![(LABEL_HEADLESS, "")],
        ),
        (
            "ipv6 cluster IP",
            |s| {
                spec_mut(s).cluster_ip = Some("1234::5678:0000:0000:9abc:def1".to_string());
                spec_mut(s).ip_families = Some(vec!["IPv6".to_string()]);
            },
            &["IPv6"],
            vec![],
        ),
        (
            "dual stack",
            |s| {
                spec_mut(s).ip_families = Some(vec!["IPv4".to_string(), "IPv6".to_string()]);
                spec_mut(s).cluster_ips =
                    Some(vec!["10.96.0.10".to_string(), "2000::1".to_string()]);
            },
            &["IPv4", "IPv6"],
            vec![],
        ),
    ];
    for (name, edit, families, extra_labels) in cases {
        let mut svc = service("foo");
        edit(&mut svc);
        let changes = Store::default().sync(&svc, &[p.clone()], &nodes, &Options::default());
        assert_eq!(counts(&changes), (families.len(), 0, 0), "{name}");
        let mut want_labels = BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), CONTROLLER_NAME.to_string()),
            (LABEL_SERVICE_NAME.to_string(), "foo".to_string()),
        ]);
        for (k, v) in &extra_labels {
            want_labels.insert(k.to_string(), v.to_string());
        }
        for (slice, family) in changes.create.iter().zip(families) {
            assert_eq!(&slice.address_type, family, "{name}");
            assert_eq!(slice.metadata.labels.as_ref(), Some(&want_labels), "{name}");
            let address = if *family == "IPv4" {
                "1.2.3.4"
            } else {
                "1234::5678:0:0:9abc:def0"
            };
            let mut want = endpoint_of(1, true, Some("us-central1-a"));
            want.addresses = vec![address.to_string()];
            assert_eq!(endpoints(slice), &[want], "{name}");
        }
    }
}

/// TestReconcile1EndpointSlicePublishNotReadyAddresses: every endpoint is ready.
#[test]
fn publish_not_ready_addresses_marks_all_ready() {
    let mut svc = service("foo");
    spec_mut(&mut svc).publish_not_ready_addresses = Some(true);
    let changes = Store::default().sync(&svc, &pods(50), &one_node(), &Options::default());
    assert_eq!(counts(&changes), (1, 0, 0));
    let eps = endpoints(&changes.create[0]);
    assert_eq!(eps.len(), 50);
    for (i, e) in eps.iter().enumerate() {
        let c = e.conditions.as_ref().unwrap();
        assert_eq!(c.ready, Some(true), "endpoint {i}");
    }
    // serving still tells the truth
    assert!(eps
        .iter()
        .any(|e| e.conditions.as_ref().unwrap().serving == Some(false)));
}

/// TestReconcileManyPods and TestReconcileMaxEndpointsPerSlice: 250 pods fill
/// slices to the maximum, with only creates.
#[test]
fn many_pods_fill_slices() {
    let cases: [(usize, &[usize]); 6] = [
        (100, &[50, 100, 100]),
        (50, &[50, 50, 50, 50, 50]),
        (80, &[10, 80, 80, 80]),
        (150, &[100, 150]),
        (250, &[250]),
        (500, &[250]),
    ];
    let all = pods(250);
    for (max, want) in cases {
        let mut store = Store::default();
        let changes = store.converge(&service("foo"), &all, &one_node(), &opts(max));
        assert_eq!(counts(&changes), (want.len(), 0, 0), "max {max}");
        assert_eq!(store.lengths(), want, "max {max}");
    }
}

/// A slice of `svc` holding the endpoints of the given pods of [`pods`], as
/// Kubernetes' tests build their pre-existing slices.
fn slice_of_pods(svc: &Service, name: &str, indices: impl Iterator<Item = usize>) -> EndpointSlice {
    let eps = indices.map(|i| endpoint_of(i, i % 3 != 0, None)).collect();
    existing_slice(svc, name, svc_ports("foo", 80), eps)
}

/// TestReconcileEndpointSlicesSomePreexisting: 250 pods, slices of 62 and 61
/// exist; 127 to add: a new full slice plus 27 into the slice that ends up
/// fullest (1 create + 1 update instead of 2 updates + 1 create).
#[test]
fn some_preexisting_slices() {
    let svc = service("foo");
    let all = pods(250);
    let s1 = slice_of_pods(&svc, "foo-1", (1..246).step_by(4));
    let s2 = slice_of_pods(&svc, "foo-2", (3..246).step_by(4));
    assert_eq!((endpoints(&s1).len(), endpoints(&s2).len()), (62, 61));
    let mut store = Store::with(vec![s1, s2]);
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (1, 1, 0));
    assert_eq!(store.lengths(), vec![61, 89, 100]);
}

/// TestReconcileEndpointSlicesSomePreexistingWorseAllocation: 300 pods, slices
/// of 74 and 74; the 52 left over after a full new slice fit in neither, so a
/// second slice is created rather than updating both.
#[test]
fn some_preexisting_worse_allocation() {
    let svc = service("foo");
    let all = pods(300);
    let s1 = slice_of_pods(&svc, "foo-1", (1..296).step_by(4));
    let s2 = slice_of_pods(&svc, "foo-2", (3..296).step_by(4));
    let mut store = Store::with(vec![s1, s2]);
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (2, 0, 0));
    assert_eq!(store.lengths(), vec![52, 74, 74, 100]);
}

/// TestReconcileEndpointSlicesUpdating: a target port change rewrites every
/// slice in place (updates, not create + delete).
#[test]
fn port_change_updates_in_place() {
    let mut svc = service("foo");
    let all = pods(250);
    let mut store = Store::default();
    store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(store.lengths(), vec![50, 100, 100]);

    set_target_port(&mut svc, IntOrString::Int(81));
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 3, 0));
    assert_eq!(store.lengths(), vec![50, 100, 100]);
    for s in store.slices.values() {
        assert_eq!(s.ports.as_deref(), Some(&svc_ports("foo", 81)[..]));
    }
}

/// TestReconcileEndpointSlicesServicesLabelsUpdating and
/// TestReconcileEndpointSlicesServicesReservedLabels: Service labels are copied
/// to every slice, reserved ones never.
#[test]
fn service_labels_follow() {
    let mut svc = service("foo");
    let all = pods(250);
    let mut store = Store::default();
    store.converge(&svc, &all, &one_node(), &Options::default());

    let mut reserved = svc.clone();
    reserved.metadata.labels = Some(
        [
            (LABEL_SERVICE_NAME.to_string(), "bad".to_string()),
            (LABEL_MANAGED_BY.to_string(), "actor".to_string()),
            (LABEL_HEADLESS.to_string(), "invalid".to_string()),
        ]
        .into(),
    );
    assert!(store
        .sync(&reserved, &all, &one_node(), &Options::default())
        .is_empty());

    svc.metadata.labels = Some([("foo".to_string(), "bar".to_string())].into());
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 3, 0));
    for s in store.slices.values() {
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.get("foo").map(String::as_str), Some("bar"));
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("foo")
        );
    }
}

/// TestReconcileEndpointSlicesRecycling: ten slices of 30 are left alone, but
/// once a port change forces a rewrite they are repacked into three full slices
/// (3 recycled by update, 7 deleted).
#[test]
fn recycling_repacks() {
    let mut svc = service("foo");
    let all = pods(300);
    let existing: Vec<EndpointSlice> = (0..10)
        .map(|n| slice_of_pods(&svc, &format!("foo-{n:02}"), n * 30..(n + 1) * 30))
        .collect();
    let mut store = Store::with(existing);
    assert!(store
        .sync(&svc, &all, &one_node(), &Options::default())
        .is_empty());

    set_target_port(&mut svc, IntOrString::Int(81));
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 3, 7));
    assert_eq!(store.lengths(), vec![100, 100, 100]);
}

/// TestReconcileEndpointSlicesUpdatePacking: both slices change (a tenth of
/// their pods turn unready); the 15 new endpoints go to the fuller one.
#[test]
fn update_packing_fills_the_fullest_changed_slice() {
    let svc = service("foo");
    let mut all: Vec<Pod> = (0..80).chain(100..120).map(|i| pod(i, true)).collect();
    let s1 = existing_slice(
        &svc,
        "foo-1",
        svc_ports("foo", 80),
        (0..80).map(|i| endpoint_of(i, true, None)).collect(),
    );
    let s2 = existing_slice(
        &svc,
        "foo-2",
        svc_ports("foo", 80),
        (100..120).map(|i| endpoint_of(i, true, None)).collect(),
    );
    for (i, p) in all.iter_mut().enumerate() {
        if i % 10 == 0 {
            set_ready(p, false);
        }
    }
    all.extend((200..215).map(|i| pod(i, true)));
    let mut store = Store::with(vec![s1, s2]);
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 2, 0));
    assert_eq!(store.lengths(), vec![20, 95]);
}

/// TestReconcileEndpointSlicesReplaceDeprecated: slices of the deprecated "IP"
/// address type are replaced (deleted, not recycled: the type is immutable).
#[test]
fn deprecated_ip_address_type_is_replaced() {
    let svc = service("foo");
    let all: Vec<Pod> = (0..80).chain(100..150).map(|i| pod(i, true)).collect();
    let mut s1 = existing_slice(
        &svc,
        "foo-1",
        svc_ports("foo", 80),
        (0..80).map(|i| endpoint_of(i, true, None)).collect(),
    );
    let mut s2 = existing_slice(
        &svc,
        "foo-2",
        svc_ports("foo", 80),
        (100..150).map(|i| endpoint_of(i, true, None)).collect(),
    );
    s1.address_type = "IP".to_string();
    s2.address_type = "IP".to_string();
    let mut store = Store::with(vec![s1, s2]);
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (2, 0, 2));
    assert_eq!(store.lengths(), vec![30, 100]);
    assert!(store.slices.values().all(|s| s.address_type == "IPv4"));
}

/// TestReconcileEndpointSlicesRecreation: a slice owned by an earlier Service
/// of the same name is not reused: a new slice is created and the old deleted.
#[test]
fn slice_of_a_recreated_service() {
    let svc = service("foo");
    let cases = [
        ("owned by this Service", true, (0, 0, 0)),
        ("owned by another uid", false, (1, 0, 1)),
    ];
    for (name, owned, want) in cases {
        let mut slice = existing_slice(
            &svc,
            "foo-1",
            svc_ports("foo", 80),
            vec![endpoint_of(1, true, None)],
        );
        if !owned {
            slice.metadata.owner_references.as_mut().unwrap()[0].uid = "different".to_string();
        }
        let mut store = Store::with(vec![slice]);
        let changes = store.converge(&svc, &[pod(1, true)], &one_node(), &Options::default());
        assert_eq!(counts(&changes), want, "{name}");
        assert_eq!(store.slices.len(), 1, "{name}");
    }
}

/// TestReconcileEndpointSlicesNamedPorts: a named target port resolving to five
/// different container ports makes five slice groups of 60.
#[test]
fn named_ports_group_slices() {
    let mut svc = service("named-port-example");
    let port = &mut spec_mut(&mut svc).ports.as_mut().unwrap()[0];
    port.name = None;
    port.target_port = Some(IntOrString::String("http".to_string()));
    let all: Vec<Pod> = (0..300)
        .map(|i| with_container_port(pod(i, i % 3 != 0), "http", 8080 + (i % 5) as i32))
        .collect();
    let mut store = Store::default();
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (5, 0, 0));
    assert_eq!(store.lengths(), vec![60; 5]);
    let mut ports: Vec<Vec<EndpointPort>> = store
        .slices
        .values()
        .map(|s| s.ports.clone().unwrap())
        .collect();
    ports.sort_by_key(|p| p[0].port);
    let want: Vec<Vec<EndpointPort>> = (0..5)
        .map(|i| {
            vec![EndpointPort {
                name: Some(String::new()),
                port: Some(8080 + i),
                protocol: Some("TCP".to_string()),
                app_protocol: None,
            }]
        })
        .collect();
    assert_eq!(ports, want);
}

/// A named target port with two container port numbers gives two groups; a pod
/// without the named port resolves to no ports and gets a third.
#[test]
fn named_target_port_two_numbers() {
    let mut svc = service("web");
    set_target_port(&mut svc, IntOrString::String("http".to_string()));
    let all = vec![
        with_container_port(pod(0, true), "http", 8080),
        with_container_port(pod(1, true), "http", 8080),
        with_container_port(pod(2, true), "http", 9090),
        with_container_port(pod(3, true), "metrics", 9100),
    ];
    let mut store = Store::default();
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (3, 0, 0));
    let mut groups: Vec<(Vec<Option<i32>>, usize)> = store
        .slices
        .values()
        .map(|s| {
            (
                s.ports.iter().flatten().map(|p| p.port).collect(),
                endpoints(s).len(),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        vec![(vec![], 1), (vec![Some(8080)], 2), (vec![Some(9090)], 1)]
    );

    // The 9090 pod is redeployed on 8080: it moves groups, its old slice goes.
    let mut moved = all.clone();
    moved[2] = with_container_port(pod(2, true), "http", 8080);
    let changes = store.converge(&svc, &moved, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 1, 1));
    assert_eq!(store.lengths(), vec![1, 3]);
}

/// TestReconcilerFinalizeSvcDeletionTimestamp: while the Service is being
/// deleted nothing is created (the garbage collector would race it); updates
/// and deletes go on, and recycling still turns a create into an update.
#[test]
fn service_being_deleted_creates_nothing() {
    let mut svc = service("foo");
    svc.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let all = pods(150);
    let fresh = || slice_of_pods(&svc, "foo-1", 0..100);
    // a slice whose port group is gone
    let stale = || {
        existing_slice(
            &svc,
            "foo-2",
            svc_ports("foo", 81),
            vec![endpoint_of(200, true, None)],
        )
    };
    let mut flipped = all.clone();
    set_ready(&mut flipped[0], true);

    let cases: [(&str, Vec<EndpointSlice>, &[Pod], (usize, usize, usize)); 5] = [
        ("create only: dropped", vec![], &all, (0, 0, 0)),
        (
            "create recycles the stale slice",
            vec![fresh(), stale()],
            &all,
            (0, 1, 0),
        ),
        (
            "update and recycle",
            vec![fresh(), stale()],
            &flipped,
            (0, 2, 0),
        ),
        ("delete", vec![fresh(), stale()], &all[..100], (0, 0, 1)),
        (
            "update and delete",
            vec![fresh(), stale()],
            &flipped[..100],
            (0, 1, 1),
        ),
    ];
    for (name, existing, pods, want) in cases {
        let changes = Store::with(existing).sync(&svc, pods, &one_node(), &Options::default());
        assert_eq!(counts(&changes), want, "{name}");
    }
    // the same without deletion: the first case creates
    let mut live = svc.clone();
    live.metadata.deletion_timestamp = None;
    let changes = Store::default().sync(&live, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (2, 0, 0));
}

/// TestReconcilerPodMissingNode: a pod on a node missing from the cache is left
/// out and reported (unless not-ready addresses are published).
#[test]
fn pod_on_missing_node() {
    let all = vec![
        on_node(pod(0, true), "node-0"),
        on_node(pod(1, true), "node-1"),
    ];
    let node_0: HashMap<String, NodeInfo> = [("node-0".to_string(), node(None, 1000))].into();
    let both_endpoints = |svc: &Service| {
        let mut e0 = endpoint_of(0, true, None);
        e0.node_name = Some("node-0".to_string());
        existing_slice(
            svc,
            "foo-1",
            svc_ports("foo", 80),
            vec![e0, endpoint_of(1, true, None)],
        )
    };
    struct Case {
        name: &'static str,
        publish_not_ready: bool,
        nodes: HashMap<String, NodeInfo>,
        existing: bool,
        want: (usize, usize, usize),
        want_endpoints: usize,
        want_unknown: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            name: "create, publishNotReady false",
            publish_not_ready: false,
            nodes: node_0.clone(),
            existing: false,
            want: (1, 0, 0),
            want_endpoints: 1,
            want_unknown: vec!["pod1"],
        },
        Case {
            name: "create, publishNotReady true",
            publish_not_ready: true,
            nodes: node_0.clone(),
            existing: false,
            want: (1, 0, 0),
            want_endpoints: 2,
            want_unknown: vec![],
        },
        Case {
            name: "update, publishNotReady false",
            publish_not_ready: false,
            nodes: node_0.clone(),
            existing: true,
            want: (0, 1, 0),
            want_endpoints: 1,
            want_unknown: vec!["pod1"],
        },
        Case {
            name: "update, publishNotReady true, all nodes missing",
            publish_not_ready: true,
            nodes: HashMap::new(),
            existing: true,
            want: (0, 0, 0),
            want_endpoints: 2,
            want_unknown: vec![],
        },
        Case {
            name: "update, publishNotReady true",
            publish_not_ready: true,
            nodes: node_0.clone(),
            existing: true,
            want: (0, 0, 0),
            want_endpoints: 2,
            want_unknown: vec![],
        },
        Case {
            // The group stays wanted, so the emptied slice becomes the
            // placeholder by update rather than being deleted.
            name: "update, publishNotReady false, no nodes",
            publish_not_ready: false,
            nodes: HashMap::new(),
            existing: true,
            want: (0, 1, 0),
            want_endpoints: 0,
            want_unknown: vec!["pod0", "pod1"],
        },
    ];
    for c in cases {
        let mut svc = service("foo");
        spec_mut(&mut svc).publish_not_ready_addresses = Some(c.publish_not_ready);
        let existing = if c.existing {
            vec![both_endpoints(&svc)]
        } else {
            vec![]
        };
        let mut store = Store::with(existing);
        let changes = store.sync(&svc, &all, &c.nodes, &Options::default());
        assert_eq!(counts(&changes), c.want, "{}", c.name);
        assert_eq!(changes.pods_on_unknown_nodes, c.want_unknown, "{}", c.name);
        store.apply(&changes);
        assert_eq!(store.slices.len(), 1, "{}", c.name);
        assert_eq!(store.lengths(), vec![c.want_endpoints], "{}", c.name);
    }
}

/// TestReconcileHeadlessServiceNoPorts: a headless Service without ports has
/// slices without ports, and an absent port list read back does not churn.
#[test]
fn headless_service_without_ports() {
    let mut svc = service("headless-no-ports");
    spec_mut(&mut svc).cluster_ip = Some("None".to_string());
    spec_mut(&mut svc).ports = None;
    let mut store = Store::default();
    let changes = store.sync(&svc, &[pod(1, true)], &one_node(), &Options::default());
    assert_eq!(counts(&changes), (1, 0, 0));
    store.apply(&changes);
    for s in store.slices.values_mut() {
        assert_eq!(s.ports.as_deref(), Some(&[][..]));
        assert_eq!(
            s.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(LABEL_HEADLESS)
                .map(String::as_str),
            Some("")
        );
        s.ports = None;
    }
    assert!(store
        .sync(&svc, &[pod(1, true)], &one_node(), &Options::default())
        .is_empty());
}

/// A pod changing readiness or starting to terminate rewrites its own slice and
/// no other.
#[test]
fn pod_condition_changes_touch_one_slice() {
    let svc = service("foo");
    let all: Vec<Pod> = (0..250).map(|i| pod(i, true)).collect();
    let mut store = Store::default();
    store.converge(&svc, &all, &one_node(), &Options::default());

    type Edit = fn(&mut Vec<Pod>);
    let cases: [(&str, Edit, EndpointConditions); 3] = [
        (
            "becomes not ready",
            |p| set_ready(&mut p[120], false),
            EndpointConditions {
                ready: Some(false),
                serving: Some(false),
                terminating: Some(false),
            },
        ),
        (
            "terminating while still ready",
            |p| p[120] = terminating(p[120].clone()),
            EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true),
            },
        ),
        (
            "terminating and not ready",
            |p| {
                p[120] = terminating(p[120].clone());
                set_ready(&mut p[120], false);
            },
            EndpointConditions {
                ready: Some(false),
                serving: Some(false),
                terminating: Some(true),
            },
        ),
    ];
    for (name, edit, want) in cases {
        let mut store = store.clone();
        let mut changed = all.clone();
        edit(&mut changed);
        let changes = store.converge(&svc, &changed, &one_node(), &Options::default());
        assert_eq!(counts(&changes), (0, 1, 0), "{name}");
        let e = endpoints(&changes.update[0])
            .iter()
            .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some("pod120"))
            .unwrap();
        assert_eq!(e.conditions.as_ref(), Some(&want), "{name}");

        // and back
        let changes = store.converge(&svc, &all, &one_node(), &Options::default());
        assert_eq!(counts(&changes), (0, 1, 0), "{name}: back");
    }
}

/// Scaling down: a slice emptied is deleted, one thinned is updated; scaling to
/// zero recycles one slice into the placeholder and deletes the rest.
#[test]
fn scale_down() {
    let svc = service("foo");
    let all: Vec<Pod> = (0..250).map(|i| pod(i, true)).collect();
    let mut store = Store::default();
    store.converge(&svc, &all, &one_node(), &Options::default());
    // endpoints are placed in key order, so the 50-slice holds the last pods
    let by_len: BTreeMap<usize, String> = store
        .slices
        .iter()
        .map(|(n, s)| (endpoints(s).len(), n.clone()))
        .collect();
    let partial = by_len[&50].clone();
    let partial_pods: Vec<String> = endpoints(&store.slices[&partial])
        .iter()
        .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();

    // drop every pod of the half-full slice: it is deleted, nothing else moves
    let fewer: Vec<Pod> = all
        .iter()
        .filter(|p| !partial_pods.contains(p.metadata.name.as_ref().unwrap()))
        .cloned()
        .collect();
    let mut s = store.clone();
    let changes = s.converge(&svc, &fewer, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 0, 1));
    assert_eq!(changes.delete[0].metadata.name.as_ref(), Some(&partial));

    // drop 5 pods from each slice: three updates, no repacking
    let dropped: Vec<String> = store
        .slices
        .values()
        .flat_map(|s| endpoints(s).iter().take(5))
        .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();
    let thinned: Vec<Pod> = all
        .iter()
        .filter(|p| !dropped.contains(p.metadata.name.as_ref().unwrap()))
        .cloned()
        .collect();
    let mut s = store.clone();
    let changes = s.converge(&svc, &thinned, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 3, 0));
    assert_eq!(s.lengths(), vec![45, 95, 95]);

    // scale to zero: one slice becomes the placeholder, two go
    let mut s = store.clone();
    let changes = s.converge(&svc, &[], &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 1, 2));
    assert_eq!(s.lengths(), vec![0]);
    let placeholder = s.list().remove(0);
    assert_eq!(placeholder.ports.as_deref(), Some(&[][..]));

    // and back up: the placeholder is recycled for the first new slice
    let changes = s.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (2, 1, 0));
    assert_eq!(s.lengths(), vec![50, 100, 100]);
}

/// Dual-stack: one slice per family; dropping a family deletes its slices.
#[test]
fn dual_stack() {
    let mut svc = service("foo");
    spec_mut(&mut svc).ip_families = Some(vec!["IPv6".to_string(), "IPv4".to_string()]);
    let all: Vec<Pod> = (0..3)
        .map(|i| {
            let mut p = pod(i, true);
            let v4 = format!("10.0.0.{}", i + 1);
            p.status.as_mut().unwrap().pod_ips = Some(vec![
                PodIP { ip: v4 },
                PodIP {
                    ip: format!("fd00::{}", i + 1),
                },
            ]);
            p
        })
        .collect();
    let mut store = Store::default();
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (2, 0, 0));
    let families: Vec<&str> = changes
        .create
        .iter()
        .map(|s| s.address_type.as_str())
        .collect();
    assert_eq!(families, ["IPv6", "IPv4"]);
    let v6: Vec<&str> = endpoints(&changes.create[0])
        .iter()
        .map(|e| e.addresses[0].as_str())
        .collect();
    assert_eq!(v6, ["fd00::1", "fd00::2", "fd00::3"]);

    // a pod with only an IPv4 address is missing from the IPv6 slice
    let mut v4_only = all.clone();
    v4_only[1].status.as_mut().unwrap().pod_ips = Some(vec![PodIP {
        ip: "10.0.0.2".to_string(),
    }]);
    let mut s = store.clone();
    let changes = s.converge(&svc, &v4_only, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));
    assert_eq!(changes.update[0].address_type, "IPv6");

    spec_mut(&mut svc).ip_families = Some(vec!["IPv4".to_string()]);
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 0, 1));
    assert_eq!(changes.delete[0].address_type, "IPv6");
}

/// Headless Services publish `hostname` for pods whose subdomain names the
/// Service (and only those), so that DNS can answer `<host>.<svc>.<ns>`.
#[test]
fn headless_hostname() {
    let mut svc = service("db");
    spec_mut(&mut svc).cluster_ip = Some("None".to_string());
    let with_host = |n: usize, host: &str, subdomain: &str| {
        let mut p = pod(n, true);
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some(host.to_string());
        spec.subdomain = Some(subdomain.to_string());
        p
    };
    let all = vec![
        with_host(0, "db-0", "db"),
        with_host(1, "db-1", "other"),
        pod(2, true),
    ];
    let changes = Store::default().sync(&svc, &all, &one_node(), &Options::default());
    let hostnames: Vec<Option<&str>> = endpoints(&changes.create[0])
        .iter()
        .map(|e| e.hostname.as_deref())
        .collect();
    assert_eq!(hostnames, [Some("db-0"), None, None]);
}

/// Which pods make endpoints at all, and with which conditions.
#[test]
fn pod_eligibility() {
    let svc = service("foo");
    let mut succeeded = pod(1, false);
    succeeded.status.as_mut().unwrap().phase = Some("Succeeded".to_string());
    let mut failed = pod(2, false);
    failed.status.as_mut().unwrap().phase = Some("Failed".to_string());
    let mut no_ip = pod(3, false);
    no_ip.status.as_mut().unwrap().pod_ip = None;
    no_ip.status.as_mut().unwrap().pod_ips = None;
    let mut only_pod_ip = pod(4, true);
    only_pod_ip.status.as_mut().unwrap().pod_ips = None;
    let mut other_ns = pod(5, true);
    other_ns.metadata.namespace = Some("elsewhere".to_string());
    let term = terminating(pod(6, true));
    let all = vec![succeeded, failed, no_ip, only_pod_ip, other_ns, term];
    let changes = Store::default().sync(&svc, &all, &one_node(), &Options::default());
    let names: Vec<&str> = endpoints(&changes.create[0])
        .iter()
        .map(|e| e.target_ref.as_ref().unwrap().name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["pod4", "pod6"]);
}

/// Slices managed by someone else, of another Service, or already being
/// deleted are not ours to touch.
#[test]
fn foreign_slices_are_ignored() {
    let svc = service("foo");
    let mut foreign = existing_slice(
        &svc,
        "foo-mirror",
        svc_ports("foo", 80),
        vec![endpoint_of(7, true, None)],
    );
    foreign.metadata.labels.as_mut().unwrap().insert(
        LABEL_MANAGED_BY.to_string(),
        "endpointslicemirroring-controller.k8s.io".to_string(),
    );
    let mut other_service = existing_slice(
        &svc,
        "bar-1",
        svc_ports("foo", 80),
        vec![endpoint_of(7, true, None)],
    );
    other_service
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(LABEL_SERVICE_NAME.to_string(), "bar".to_string());
    let mut going = existing_slice(
        &svc,
        "foo-going",
        svc_ports("foo", 80),
        vec![endpoint_of(1, true, None)],
    );
    going.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    let store = Store::with(vec![foreign, other_service, going]);
    let changes = store.sync(&svc, &[pod(1, true)], &one_node(), &Options::default());
    assert_eq!(counts(&changes), (1, 0, 0));
}

/// Nothing changed, nothing to write; and the result does not depend on the
/// order pods and slices are listed in.
#[test]
fn no_op_and_deterministic() {
    let svc = service("foo");
    let all = pods(250);
    let mut store = Store::default();
    store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(
        store.sync(&svc, &all, &one_node(), &Options::default()),
        Changes::default()
    );

    let mut changed = all.clone();
    changed.extend((300..340).map(|i| pod(i, true)));
    changed.retain(|p| !p.metadata.name.as_ref().unwrap().ends_with('7'));
    let forward = store.sync(&svc, &changed, &one_node(), &Options::default());
    let mut reversed_pods = changed.clone();
    reversed_pods.reverse();
    let mut reversed_slices = store.list();
    reversed_slices.reverse();
    let backward = desired_slices(
        &svc,
        &refs(&reversed_pods),
        &one_node(),
        &reversed_slices,
        &Options::default(),
    );
    assert_eq!(forward, backward);
    assert!(!forward.is_empty());
}

/// A Service without selector is not managed here.
#[test]
fn service_without_selector() {
    let mut svc = service("foo");
    spec_mut(&mut svc).selector = None;
    let existing = existing_slice(&svc, "foo-1", svc_ports("foo", 80), vec![]);
    let changes = desired_slices(
        &svc,
        &refs(&pods(3)),
        &one_node(),
        &[existing],
        &Options::default(),
    );
    assert_eq!(changes, Changes::default());
    spec_mut(&mut svc).selector = Some(BTreeMap::new());
    let changes = desired_slices(&svc, &refs(&pods(3)), &one_node(), &[], &Options::default());
    assert_eq!(changes, Changes::default());
}

/// A node's zone label changing refreshes its endpoints in place.
#[test]
fn node_zone_change_refreshes_endpoints() {
    let svc = service("foo");
    let all = pods(10);
    let mut store = Store::default();
    store.converge(&svc, &all, &one_node(), &Options::default());
    let zoned: HashMap<String, NodeInfo> =
        [("node-1".to_string(), node(Some("zone-a"), 1000))].into();
    let changes = store.converge(&svc, &all, &zoned, &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));
    assert!(endpoints(&changes.update[0])
        .iter()
        .all(|e| e.zone.as_deref() == Some("zone-a")));
}

/// A pod's resourceVersion in an endpoint's targetRef is not a reason to write.
#[test]
fn target_ref_resource_version_is_ignored() {
    let svc = service("foo");
    let mut e = endpoint_of(1, true, None);
    e.target_ref.as_mut().unwrap().resource_version = Some("12345".to_string());
    let mut store = Store::with(vec![existing_slice(
        &svc,
        "foo-1",
        svc_ports("foo", 80),
        vec![e],
    )]);
    assert!(store
        .sync(&svc, &[pod(1, true)], &one_node(), &Options::default())
        .is_empty());
    store.apply(&Changes::default());
}

/// An existing slice holding an endpoint twice (or two slices holding the same
/// endpoint) is repaired: the duplicate is dropped.
#[test]
fn duplicate_endpoints_are_dropped() {
    let svc = service("foo");
    let s1 = existing_slice(
        &svc,
        "foo-1",
        svc_ports("foo", 80),
        vec![endpoint_of(1, true, None), endpoint_of(2, true, None)],
    );
    let s2 = existing_slice(
        &svc,
        "foo-2",
        svc_ports("foo", 80),
        vec![endpoint_of(2, true, None), endpoint_of(3, true, None)],
    );
    let all = vec![pod(1, true), pod(2, true), pod(3, true)];
    let mut store = Store::with(vec![s1, s2]);
    let changes = store.converge(&svc, &all, &one_node(), &Options::default());
    assert_eq!(counts(&changes), (0, 1, 0));
    assert_eq!(changes.update[0].metadata.name.as_deref(), Some("foo-2"));
    assert_eq!(store.lengths(), vec![1, 2]);
}

/// Zero endpoints per slice would never terminate; it is treated as one.
#[test]
fn zero_max_endpoints_is_one() {
    let changes = Store::default().sync(&service("foo"), &pods(3), &one_node(), &opts(0));
    assert_eq!(sorted_lengths(&changes.create), vec![1, 1, 1]);
}
