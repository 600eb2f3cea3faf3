//! The desired side, function by function: Kubernetes' `utils_test.go` tables
//! (TestPodToEndpoint, TestGetEndpointPorts, TestFindPort,
//! TestSupportedServiceAddressType, Test_hintsEnabled, TestSetEndpointSliceLabels).

use super::super::endpoints::{find_port, AddressType, Svc};
use super::*;

fn svc_view(svc: &Service) -> Svc<'_> {
    Svc::new(svc).unwrap()
}

/// TestPodToEndpoint.
#[test]
fn pod_to_endpoint() {
    let svc = service("foo");
    let mut publish = service("publishnotready");
    spec_mut(&mut publish).publish_not_ready_addresses = Some(true);
    let zone_a = node(Some("us-central1-a"), 1000);

    let ready = pod(1, true);
    let unready = pod(1, false);
    let mut multi_ip = pod(1, true);
    multi_ip.status.as_mut().unwrap().pod_ips = Some(vec![
        PodIP {
            ip: "1.2.3.4".to_string(),
        },
        PodIP {
            ip: "1234::5678:0000:0000:9abc:def0".to_string(),
        },
    ]);
    let mut with_host = pod(1, true);
    with_host.spec.as_mut().unwrap().subdomain = Some("foo".to_string());
    with_host.spec.as_mut().unwrap().hostname = Some("example-hostname".to_string());

    let conditions = |ready, serving, terminating| EndpointConditions {
        ready: Some(ready),
        serving: Some(serving),
        terminating: Some(terminating),
    };
    struct Case<'a> {
        name: &'a str,
        pod: Pod,
        node: Option<&'a NodeInfo>,
        svc: &'a Service,
        addresses: &'a [&'a str],
        conditions: EndpointConditions,
        zone: Option<&'a str>,
        hostname: Option<&'a str>,
    }
    let base = |name, pod, svc, c| Case {
        name,
        pod,
        node: None,
        svc,
        addresses: &["10.0.0.2"],
        conditions: c,
        zone: None,
        hostname: None,
    };
    let cases = vec![
        base(
            "ready pod",
            ready.clone(),
            &svc,
            conditions(true, true, false),
        ),
        base(
            "ready pod + publishNotReadyAddresses",
            ready.clone(),
            &publish,
            conditions(true, true, false),
        ),
        base(
            "unready pod",
            unready.clone(),
            &svc,
            conditions(false, false, false),
        ),
        base(
            "unready pod + publishNotReadyAddresses",
            unready.clone(),
            &publish,
            conditions(true, false, false),
        ),
        Case {
            node: Some(&zone_a),
            zone: Some("us-central1-a"),
            ..base(
                "ready pod + node zone",
                ready.clone(),
                &svc,
                conditions(true, true, false),
            )
        },
        Case {
            node: Some(&zone_a),
            zone: Some("us-central1-a"),
            addresses: &["1.2.3.4"],
            ..base(
                "multi IP pod",
                multi_ip,
                &svc,
                conditions(true, true, false),
            )
        },
        Case {
            node: Some(&zone_a),
            zone: Some("us-central1-a"),
            hostname: Some("example-hostname"),
            ..base(
                "ready pod + hostname",
                with_host,
                &svc,
                conditions(true, true, false),
            )
        },
        base(
            "ready terminating pod",
            terminating(ready.clone()),
            &svc,
            conditions(false, true, true),
        ),
        base(
            "not ready terminating pod",
            terminating(unready.clone()),
            &svc,
            conditions(false, false, true),
        ),
        base(
            "terminating pod + publishNotReadyAddresses",
            terminating(ready),
            &publish,
            conditions(true, true, true),
        ),
    ];
    for c in cases {
        let got = svc_view(c.svc).pod_endpoint(&c.pod, c.node, AddressType::IPv4);
        let mut want = endpoint_of(1, false, c.zone);
        want.addresses = c.addresses.iter().map(|a| a.to_string()).collect();
        want.conditions = Some(c.conditions);
        want.hostname = c.hostname.map(str::to_string);
        assert_eq!(got, want, "{}", c.name);
    }
}

/// Pod IPs are re-printed canonically and split by family.
#[test]
fn pod_addresses() {
    let svc = service("foo");
    let cases: [(&[&str], Option<&str>, AddressType, &[&str]); 7] = [
        (
            &["1234::5678:0000:0000:9abc:def0"],
            None,
            AddressType::IPv6,
            &["1234::5678:0:0:9abc:def0"],
        ),
        (&["010.001.002.003"], None, AddressType::IPv4, &["10.1.2.3"]),
        (&["::ffff:10.1.2.3"], None, AddressType::IPv4, &["10.1.2.3"]),
        (&["::ffff:10.1.2.3"], None, AddressType::IPv6, &[]),
        (
            &["not-an-ip", "10.0.0.9"],
            None,
            AddressType::IPv4,
            &["10.0.0.9"],
        ),
        (&[], Some("10.0.0.7"), AddressType::IPv4, &["10.0.0.7"]),
        (
            &["10.0.0.8"],
            Some("10.0.0.7"),
            AddressType::IPv4,
            &["10.0.0.8"],
        ),
    ];
    for (ips, pod_ip, family, want) in cases {
        let mut p = pod(1, true);
        let status = p.status.as_mut().unwrap();
        status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
        status.pod_ip = pod_ip.map(str::to_string);
        let got = svc_view(&svc).pod_endpoint(&p, None, family).addresses;
        assert_eq!(got, want, "{ips:?} {pod_ip:?} {family:?}");
    }
}

fn svc_with_ports(ports: Vec<ServicePort>) -> Service {
    let mut svc = service("foo");
    spec_mut(&mut svc).ports = Some(ports);
    svc
}

fn sport(name: &str, port: i32, target: IntOrString, app: Option<&str>) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        protocol: Some("TCP".to_string()),
        target_port: Some(target),
        app_protocol: app.map(str::to_string),
        ..ServicePort::default()
    }
}

fn eport(name: &str, port: i32, app: Option<&str>) -> EndpointPort {
    EndpointPort {
        name: Some(name.to_string()),
        port: Some(port),
        protocol: Some("TCP".to_string()),
        app_protocol: app.map(str::to_string),
    }
}

fn cport(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

fn pod_with(
    containers: Vec<Vec<ContainerPort>>,
    sidecars: Vec<(Option<&str>, Vec<ContainerPort>)>,
) -> Pod {
    let mut p = pod(1, true);
    let spec = p.spec.as_mut().unwrap();
    spec.containers = containers
        .into_iter()
        .map(|ports| Container {
            ports: Some(ports),
            ..Container::default()
        })
        .collect();
    spec.init_containers = Some(
        sidecars
            .into_iter()
            .map(|(restart, ports)| Container {
                restart_policy: restart.map(str::to_string),
                ports: Some(ports),
                ..Container::default()
            })
            .collect(),
    );
    p
}

/// TestGetEndpointPorts.
#[test]
fn endpoint_ports() {
    let cases = vec![
        (
            "service with AppProtocol on one port",
            vec![sport(
                "http",
                80,
                IntOrString::Int(80),
                Some("example.com/custom-protocol"),
            )],
            pod_with(vec![vec![]], vec![]),
            vec![eport("http", 80, Some("example.com/custom-protocol"))],
        ),
        (
            "service with named port and AppProtocol on one port",
            vec![
                sport("http", 80, IntOrString::Int(80), None),
                sport(
                    "https",
                    443,
                    IntOrString::String("https".to_string()),
                    Some("https"),
                ),
            ],
            pod_with(vec![vec![cport("https", 443)]], vec![]),
            vec![eport("http", 80, None), eport("https", 443, Some("https"))],
        ),
        (
            "service with named port for restartable init container",
            vec![
                sport("http-sidecar", 8080, IntOrString::Int(8080), None),
                sport("http", 8090, IntOrString::String("http".to_string()), None),
            ],
            pod_with(
                vec![vec![cport("http", 8090)]],
                vec![(Some("Always"), vec![cport("http-sidecar", 8080)])],
            ),
            vec![eport("http-sidecar", 8080, None), eport("http", 8090, None)],
        ),
        (
            "service with same named port for regular and restartable init container",
            vec![sport(
                "http",
                80,
                IntOrString::String("http".to_string()),
                None,
            )],
            pod_with(
                vec![vec![cport("http", 8090)]],
                vec![(Some("Always"), vec![cport("http", 8080)])],
            ),
            vec![eport("http", 8090, None)],
        ),
        (
            "named port the pod lacks is left out",
            vec![
                sport("http", 80, IntOrString::Int(8080), None),
                sport(
                    "metrics",
                    9100,
                    IntOrString::String("metrics".to_string()),
                    None,
                ),
            ],
            pod_with(vec![vec![]], vec![]),
            vec![eport("http", 8080, None)],
        ),
        (
            "undefaulted port: target = port, protocol TCP, name empty",
            vec![ServicePort {
                port: 53,
                ..ServicePort::default()
            }],
            pod_with(vec![vec![]], vec![]),
            vec![eport("", 53, None)],
        ),
    ];
    for (name, ports, p, want) in cases {
        let svc = svc_with_ports(ports);
        assert_eq!(svc_view(&svc).endpoint_ports(&p), want, "{name}");
    }
}

/// TestFindPort.
#[test]
fn find_port_table() {
    let named = |s: &str| IntOrString::String(s.to_string());
    let with_proto = |name: &str, port: i32, proto: &str| ContainerPort {
        protocol: Some(proto.to_string()),
        ..cport(name, port)
    };
    let cases: Vec<(
        &str,
        Vec<Vec<ContainerPort>>,
        Vec<(Option<&str>, Vec<ContainerPort>)>,
        IntOrString,
        Option<i32>,
    )> = vec![
        (
            "valid int, no ports",
            vec![vec![]],
            vec![],
            IntOrString::Int(93),
            Some(93),
        ),
        (
            "valid int, with ports",
            vec![vec![cport("", 11), cport("p", 22)]],
            vec![],
            IntOrString::Int(93),
            Some(93),
        ),
        (
            "valid str, no ports",
            vec![vec![]],
            vec![],
            named("p"),
            None,
        ),
        (
            "valid str, one ctr with ports",
            vec![vec![
                with_proto("", 11, "UDP"),
                cport("p", 22),
                cport("q", 33),
            ]],
            vec![],
            named("q"),
            Some(33),
        ),
        (
            "valid str, two ctr with ports",
            vec![
                vec![],
                vec![with_proto("", 11, "UDP"), cport("p", 22), cport("q", 33)],
            ],
            vec![],
            named("q"),
            Some(33),
        ),
        (
            "valid str, two ctr with same port",
            vec![
                vec![],
                vec![with_proto("", 11, "UDP"), cport("p", 22), cport("q", 22)],
            ],
            vec![],
            named("q"),
            Some(22),
        ),
        (
            "valid str, invalid protocol",
            vec![vec![], vec![with_proto("a", 11, "snmp")]],
            vec![],
            named("a"),
            None,
        ),
        (
            "valid hostPort",
            vec![
                vec![],
                vec![ContainerPort {
                    host_port: Some(81),
                    ..cport("a", 11)
                }],
            ],
            vec![],
            named("a"),
            Some(11),
        ),
        (
            "HostIP address",
            vec![
                vec![],
                vec![ContainerPort {
                    host_ip: Some("192.168.1.1".to_string()),
                    ..cport("a", 11)
                }],
            ],
            vec![],
            named("a"),
            Some(11),
        ),
        (
            "sidecar init container named port",
            vec![],
            vec![(Some("Always"), vec![cport("a", 80)])],
            named("a"),
            Some(80),
        ),
        (
            "plain init container named port",
            vec![],
            vec![(None, vec![cport("a", 80)])],
            named("a"),
            None,
        ),
        (
            "app and sidecar containers share the name: first app container wins",
            vec![vec![cport("a", 81)], vec![cport("a", 82)]],
            vec![(Some("Always"), vec![cport("a", 80)])],
            named("a"),
            Some(81),
        ),
        (
            "container port protocol defaults to TCP",
            vec![vec![ContainerPort {
                protocol: None,
                ..cport("a", 7)
            }]],
            vec![],
            named("a"),
            Some(7),
        ),
    ];
    for (name, containers, sidecars, target, want) in cases {
        let p = pod_with(containers, sidecars);
        let sp = ServicePort {
            protocol: Some("TCP".to_string()),
            target_port: Some(target),
            ..ServicePort::default()
        };
        assert_eq!(find_port(&p, &sp), want, "{name}");
    }
}

/// TestSupportedServiceAddressType.
#[test]
fn address_types() {
    use AddressType::{IPv4, IPv6};
    let cases: [(&str, Option<&str>, Option<&[&str]>, &[AddressType]); 10] = [
        (
            "v4 service, no families (upgrade)",
            Some("10.0.0.10"),
            None,
            &[IPv4],
        ),
        (
            "v6 service, no families (upgrade)",
            Some("2000::1"),
            None,
            &[IPv6],
        ),
        ("v4 service", None, Some(&["IPv4"]), &[IPv4]),
        ("v6 service", None, Some(&["IPv6"]), &[IPv6]),
        (
            "v4,v6 service",
            None,
            Some(&["IPv4", "IPv6"]),
            &[IPv4, IPv6],
        ),
        (
            "v6,v4 service",
            None,
            Some(&["IPv6", "IPv4"]),
            &[IPv6, IPv4],
        ),
        (
            "headless, no families (old API server)",
            Some("None"),
            None,
            &[IPv4, IPv6],
        ),
        (
            "headless with families",
            Some("None"),
            Some(&["IPv4", "IPv6"]),
            &[IPv4, IPv6],
        ),
        ("no cluster IP, no families", None, None, &[IPv4, IPv6]),
        ("empty families list", Some("10.0.0.10"), Some(&[]), &[IPv4]),
    ];
    for (name, cluster_ip, families, want) in cases {
        let mut svc = service("foo");
        spec_mut(&mut svc).cluster_ip = cluster_ip.map(str::to_string);
        spec_mut(&mut svc).ip_families =
            families.map(|f| f.iter().map(|s| s.to_string()).collect());
        assert_eq!(svc_view(&svc).address_types(), want, "{name}");
    }
}

/// Test_hintsEnabled: only `Auto`/`auto`; the deprecated annotation wins.
#[test]
fn topology_annotation() {
    let cases: [(&str, &[(&str, &str)], bool); 13] = [
        ("empty annotations", &[], false),
        (
            "different annotations",
            &[("topology-hints", "enabled")],
            false,
        ),
        (
            "hints == enabled",
            &[(ANNOTATION_TOPOLOGY_AWARE_HINTS, "enabled")],
            false,
        ),
        (
            "hints == aUto",
            &[(ANNOTATION_TOPOLOGY_AWARE_HINTS, "aUto")],
            false,
        ),
        (
            "hints == auto",
            &[(ANNOTATION_TOPOLOGY_AWARE_HINTS, "auto")],
            true,
        ),
        (
            "hints == Auto",
            &[(ANNOTATION_TOPOLOGY_AWARE_HINTS, "Auto")],
            true,
        ),
        (
            "hints == disabled",
            &[(ANNOTATION_TOPOLOGY_AWARE_HINTS, "disabled")],
            false,
        ),
        (
            "mode == enabled",
            &[(ANNOTATION_TOPOLOGY_MODE, "enabled")],
            false,
        ),
        ("mode == aUto", &[(ANNOTATION_TOPOLOGY_MODE, "aUto")], false),
        ("mode == auto", &[(ANNOTATION_TOPOLOGY_MODE, "auto")], true),
        ("mode == Auto", &[(ANNOTATION_TOPOLOGY_MODE, "Auto")], true),
        (
            "mode == disabled, hints == auto",
            &[
                (ANNOTATION_TOPOLOGY_MODE, "disabled"),
                (ANNOTATION_TOPOLOGY_AWARE_HINTS, "auto"),
            ],
            true,
        ),
        (
            "mode == auto, hints == disabled",
            &[
                (ANNOTATION_TOPOLOGY_MODE, "auto"),
                (ANNOTATION_TOPOLOGY_AWARE_HINTS, "disabled"),
            ],
            false,
        ),
    ];
    for (name, annotations, want) in cases {
        let mut svc = service("foo");
        for (k, v) in annotations {
            annotate(&mut svc, k, v);
        }
        assert_eq!(svc_view(&svc).topology_annotation_enabled(), want, "{name}");
    }
}

/// TestSetEndpointSliceLabels: the labels a slice gets, and whether an
/// existing slice's labels count as changed (reserved ones never do).
#[test]
fn slice_labels() {
    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    let managed = [
        (LABEL_SERVICE_NAME, "foo"),
        (LABEL_MANAGED_BY, CONTROLLER_NAME),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        managed.iter().chain(extra).copied().collect()
    };
    let reserved_evil = [
        (LABEL_SERVICE_NAME, "bad"),
        (LABEL_MANAGED_BY, "actor"),
        (LABEL_HEADLESS, "invalid"),
    ];
    let evil_with_foo = [
        (LABEL_SERVICE_NAME, "bad"),
        (LABEL_MANAGED_BY, "actor"),
        ("foo", "bar"),
    ];
    // (name, slice labels, headless, service labels, want labels, want changed)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        bool,
        Vec<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "service without labels, empty slice",
            vec![],
            false,
            vec![],
            with(&[]),
            false,
        ),
        (
            "headless service with labels, empty slice",
            vec![],
            true,
            vec![("foo", "bar")],
            with(&[(LABEL_HEADLESS, ""), ("foo", "bar")]),
            true,
        ),
        (
            "headless service without labels, empty slice",
            vec![],
            true,
            vec![],
            with(&[(LABEL_HEADLESS, "")]),
            false,
        ),
        (
            "non headless service with headless label, empty slice",
            vec![],
            false,
            vec![(LABEL_HEADLESS, "")],
            with(&[]),
            false,
        ),
        (
            "headless → ClusterIP, service with headless label",
            with(&[(LABEL_HEADLESS, "")]),
            false,
            vec![(LABEL_HEADLESS, "")],
            with(&[]),
            false,
        ),
        (
            "headless → ClusterIP",
            with(&[(LABEL_HEADLESS, "")]),
            false,
            vec![],
            with(&[]),
            false,
        ),
        (
            "headless service and slice with same labels",
            with(&[("foo", "bar")]),
            true,
            vec![("foo", "bar")],
            with(&[(LABEL_HEADLESS, ""), ("foo", "bar")]),
            false,
        ),
        (
            "service with labels, empty slice",
            vec![],
            false,
            vec![("foo", "bar")],
            with(&[("foo", "bar")]),
            true,
        ),
        (
            "slice with labels, service without",
            with(&[("foo", "bar")]),
            false,
            vec![],
            with(&[]),
            true,
        ),
        (
            "slice with headless label, ClusterIP service",
            with(&[(LABEL_HEADLESS, "")]),
            false,
            vec![],
            with(&[]),
            false,
        ),
        (
            "slice with reserved labels, service with labels",
            with(&[]),
            false,
            vec![("foo", "bar")],
            with(&[("foo", "bar")]),
            true,
        ),
        (
            "evil service hijacking only reserved labels",
            with(&[]),
            false,
            reserved_evil.to_vec(),
            with(&[]),
            false,
        ),
        (
            "evil service hijacking with other labels",
            with(&[]),
            false,
            evil_with_foo.to_vec(),
            with(&[("foo", "bar")]),
            true,
        ),
    ];
    for (name, slice_labels, headless, svc_labels, want, want_changed) in cases {
        let mut svc = service("foo");
        spec_mut(&mut svc).cluster_ip = Some(if headless { "None" } else { "1.1.1.1" }.to_string());
        svc.metadata.labels = Some(labels(&svc_labels));
        let mut slice = EndpointSlice::default();
        slice.metadata.labels = Some(labels(&slice_labels));
        let view = svc_view(&svc);
        assert_eq!(view.slice_labels(), labels(&want), "{name}");
        assert_eq!(view.labels_changed(&slice), want_changed, "{name}");
    }
}

/// TestNewEndpointSlice: a new slice's metadata.
#[test]
fn new_slice_metadata() {
    let mut svc = service("foo");
    svc.metadata.labels = Some([("foo".to_string(), "bar".to_string())].into());
    annotate(&mut svc, "foo", "bar");
    let slice = svc_view(&svc).new_slice(AddressType::IPv6, &svc_ports("foo", 80));
    assert_eq!(slice.metadata.name, None);
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("foo-"));
    assert_eq!(
        slice.metadata.annotations, None,
        "Service annotations are not copied"
    );
    assert_eq!(slice.address_type, "IPv6");
    assert_eq!(slice.ports, Some(svc_ports("foo", 80)));
    assert_eq!(
        slice
            .metadata
            .labels
            .unwrap()
            .get("foo")
            .map(String::as_str),
        Some("bar")
    );
}
