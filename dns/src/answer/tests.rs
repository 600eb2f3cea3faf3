#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: &[(&str, &str, i32)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some(ips[0].into()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, port)| ServicePort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        protocol: Some(p.to_string()),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn headless(ns: &str, name: &str, publish_not_ready: bool) -> Service {
    let mut s = cluster_ip(ns, name, &["None"], &[("http", "TCP", 80)]);
    s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(publish_not_ready);
    s
}

/// (address, hostname, ready)
fn slice(name: &str, family: &str, eps: &[(&str, Option<&str>, bool)]) -> Arc<EndpointSlice> {
    Arc::new(EndpointSlice {
        metadata: meta("shop", name),
        address_type: family.into(),
        endpoints: Some(
            eps.iter()
                .map(|(ip, host, ready)| SliceEndpoint {
                    addresses: vec![ip.to_string()],
                    hostname: host.map(str::to_string),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![
            EndpointPort {
                name: Some("http".into()),
                protocol: Some("TCP".into()),
                port: Some(8080),
                ..Default::default()
            },
            EndpointPort {
                name: Some("dns".into()),
                protocol: Some("UDP".into()),
                port: Some(5353),
                ..Default::default()
            },
        ]),
    })
}

fn view() -> View {
    let mut v = View::new();
    v.set_serial(42);
    let web = cluster_ip(
        "shop",
        "web",
        &["10.96.0.10", "fd00::10"],
        &[("http", "TCP", 80), ("", "TCP", 8443), ("dns", "UDP", 53)],
    );
    v.set_service("shop", "web", ServiceEntry::build(&web, &[]));
    let db = headless("shop", "db", false);
    let slices = vec![slice(
        "db-1",
        "IPv4",
        &[
            ("10.0.0.1", Some("db-0"), true),
            ("10.0.0.2", None, true),
            ("10.0.0.3", Some("db-2"), false),
        ],
    )];
    v.set_service("shop", "db", ServiceEntry::build(&db, &slices));
    let pub_nr = headless("shop", "all", true);
    v.set_service("shop", "all", ServiceEntry::build(&pub_nr, &slices));
    let v6 = headless("shop", "six", false);
    v.set_service(
        "shop",
        "six",
        ServiceEntry::build(&v6, &[slice("six-1", "IPv6", &[("fd00::1", None, true)])]),
    );
    let mut ext = cluster_ip("shop", "ext", &["1.1.1.1"], &[]);
    let spec = ext.spec.as_mut().unwrap();
    spec.type_ = Some("ExternalName".into());
    spec.external_name = Some("Example.COM.".into());
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    v.set_service("shop", "ext", ServiceEntry::build(&ext, &[]));
    let mut inner = ext.clone();
    inner.spec.as_mut().unwrap().external_name = Some("web.shop.svc.cluster.local".into());
    v.set_service("shop", "alias", ServiceEntry::build(&inner, &[]));
    v.set_namespaces(HashSet::from(["shop".to_string(), "empty".to_string()]));
    v.pod("shop", "10.1.2.3".parse().unwrap(), true);
    v
}

fn zone(pods: PodRecords) -> Zone {
    let mut z = Zone::new("cluster.local").unwrap();
    z.pods = pods;
    z.ns_addrs = vec!["10.96.0.53".parse().unwrap()];
    z
}

fn ask(v: &View, z: &Zone, name: &str, t: RecordType) -> Outcome {
    answer(&Name::from_ascii(name).unwrap().to_lowercase(), t, v, z)
}

fn local(o: Outcome) -> Answer {
    match o {
        Outcome::Local(a) => a,
        Outcome::Upstream => panic!("expected a local answer"),
    }
}

/// The rdata of a section as text, sorted.
fn texts(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

/// (name, type, rcode, answers, additionals)
type Case = (
    &'static str,
    RecordType,
    ResponseCode,
    &'static [&'static str],
    &'static [&'static str],
);

#[test]
fn records_table() {
    let v = view();
    let z = zone(PodRecords::Disabled);
    use RecordType::*;
    // (name, type, rcode, answers, additionals)
    let cases: &[Case] = &[
        ("web.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["web.shop.svc.cluster.local. A 10.96.0.10"], &[]),
        ("web.shop.svc.cluster.local.", AAAA, ResponseCode::NoError,
         &["web.shop.svc.cluster.local. AAAA fd00::10"], &[]),
        // Case-insensitive.
        ("WEB.Shop.SVC.cluster.LOCAL.", A, ResponseCode::NoError,
         &["web.shop.svc.cluster.local. A 10.96.0.10"], &[]),
        // NODATA: the name exists without TXT.
        ("web.shop.svc.cluster.local.", TXT, ResponseCode::NoError, &[], &[]),
        ("_http._tcp.web.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
         &["_http._tcp.web.shop.svc.cluster.local. SRV 0 100 80 web.shop.svc.cluster.local."],
         &["web.shop.svc.cluster.local. A 10.96.0.10", "web.shop.svc.cluster.local. AAAA fd00::10"]),
        ("_dns._udp.web.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
         &["_dns._udp.web.shop.svc.cluster.local. SRV 0 100 53 web.shop.svc.cluster.local."],
         &["web.shop.svc.cluster.local. A 10.96.0.10", "web.shop.svc.cluster.local. AAAA fd00::10"]),
        // Wrong protocol, unknown port name: no such name.
        ("_http._udp.web.shop.svc.cluster.local.", SRV, ResponseCode::NXDomain, &[], &[]),
        ("_nope._tcp.web.shop.svc.cluster.local.", SRV, ResponseCode::NXDomain, &[], &[]),
        // The `_tcp` empty non-terminal exists; `_sctp` does not.
        ("_tcp.web.shop.svc.cluster.local.", SRV, ResponseCode::NoError, &[], &[]),
        ("_sctp.web.shop.svc.cluster.local.", SRV, ResponseCode::NXDomain, &[], &[]),
        // Existing SRV name, other type: NODATA.
        ("_http._tcp.web.shop.svc.cluster.local.", A, ResponseCode::NoError, &[], &[]),
        // Headless: ready endpoints only.
        ("db.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["db.shop.svc.cluster.local. A 10.0.0.1", "db.shop.svc.cluster.local. A 10.0.0.2"], &[]),
        ("db.shop.svc.cluster.local.", AAAA, ResponseCode::NoError, &[], &[]),
        // publishNotReadyAddresses.
        ("all.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["all.shop.svc.cluster.local. A 10.0.0.1", "all.shop.svc.cluster.local. A 10.0.0.2",
           "all.shop.svc.cluster.local. A 10.0.0.3"], &[]),
        ("six.shop.svc.cluster.local.", AAAA, ResponseCode::NoError,
         &["six.shop.svc.cluster.local. AAAA fd00::1"], &[]),
        // Endpoint names: hostname, else the dashed address.
        ("db-0.db.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["db-0.db.shop.svc.cluster.local. A 10.0.0.1"], &[]),
        ("10-0-0-2.db.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["10-0-0-2.db.shop.svc.cluster.local. A 10.0.0.2"], &[]),
        ("fd00--1.six.shop.svc.cluster.local.", AAAA, ResponseCode::NoError,
         &["fd00--1.six.shop.svc.cluster.local. AAAA fd00::1"], &[]),
        // Not ready and not published: no name.
        ("db-2.db.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        ("db-2.all.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["db-2.all.shop.svc.cluster.local. A 10.0.0.3"], &[]),
        // Endpoint names of a ClusterIP service do not exist.
        ("db-0.web.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        ("_http._tcp.db.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
         &["_http._tcp.db.shop.svc.cluster.local. SRV 0 50 8080 10-0-0-2.db.shop.svc.cluster.local.",
           "_http._tcp.db.shop.svc.cluster.local. SRV 0 50 8080 db-0.db.shop.svc.cluster.local."],
         &["10-0-0-2.db.shop.svc.cluster.local. A 10.0.0.2", "db-0.db.shop.svc.cluster.local. A 10.0.0.1"]),
        ("_dns._udp.db.shop.svc.cluster.local.", SRV, ResponseCode::NoError,
         &["_dns._udp.db.shop.svc.cluster.local. SRV 0 50 5353 10-0-0-2.db.shop.svc.cluster.local.",
           "_dns._udp.db.shop.svc.cluster.local. SRV 0 50 5353 db-0.db.shop.svc.cluster.local."],
         &["10-0-0-2.db.shop.svc.cluster.local. A 10.0.0.2", "db-0.db.shop.svc.cluster.local. A 10.0.0.1"]),
        // ExternalName: a CNAME whatever the type.
        ("ext.shop.svc.cluster.local.", A, ResponseCode::NoError,
         &["ext.shop.svc.cluster.local. CNAME example.com."], &[]),
        ("ext.shop.svc.cluster.local.", CNAME, ResponseCode::NoError,
         &["ext.shop.svc.cluster.local. CNAME example.com."], &[]),
        // Missing things.
        ("nope.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        ("web.nope.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        ("x.y.web.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        ("a.b.c.d.e.f.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        // No wildcards.
        ("*.shop.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        // Namespaces and fixed names are empty non-terminals.
        ("shop.svc.cluster.local.", A, ResponseCode::NoError, &[], &[]),
        ("empty.svc.cluster.local.", A, ResponseCode::NoError, &[], &[]),
        ("gone.svc.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
        ("svc.cluster.local.", A, ResponseCode::NoError, &[], &[]),
        ("pod.cluster.local.", A, ResponseCode::NoError, &[], &[]),
        ("dns-version.cluster.local.", TXT, ResponseCode::NoError,
         &["dns-version.cluster.local. TXT 1.1.0"], &[]),
        ("dns-version.cluster.local.", A, ResponseCode::NoError, &[], &[]),
        ("cluster.local.", NS, ResponseCode::NoError,
         &["cluster.local. NS ns.dns.cluster.local."], &["ns.dns.cluster.local. A 10.96.0.53"]),
        ("ns.dns.cluster.local.", A, ResponseCode::NoError,
         &["ns.dns.cluster.local. A 10.96.0.53"], &[]),
        ("cluster.local.", SOA, ResponseCode::NoError,
         &["cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"], &[]),
        ("cluster.local.", A, ResponseCode::NoError, &[], &[]),
        // Pod records are off by default.
        ("10-1-2-3.shop.pod.cluster.local.", A, ResponseCode::NXDomain, &[], &[]),
    ];
    for (name, t, rcode, answers, additionals) in cases {
        let a = local(ask(&v, &z, name, *t));
        assert_eq!(a.rcode, *rcode, "{name} {t}");
        assert_eq!(texts(&a.answers), *answers, "{name} {t} answers");
        assert_eq!(
            texts(&a.additionals),
            *additionals,
            "{name} {t} additionals"
        );
        // Negative answers (NXDOMAIN and NODATA) carry the SOA, positive ones do not.
        let soa = a.authority.iter().any(|r| r.record_type() == SOA);
        assert_eq!(soa, answers.is_empty(), "{name} {t} authority");
        for r in a.answers.iter().chain(&a.additionals) {
            assert_eq!(r.ttl, 5, "{name} {t} ttl");
        }
    }
}

#[test]
fn ttl_and_serial_follow_the_zone() {
    let v = view();
    let mut z = zone(PodRecords::Disabled);
    z.ttl = 30;
    let a = local(ask(&v, &z, "nope.svc.cluster.local.", RecordType::A));
    let RData::SOA(soa) = &a.authority[0].data else {
        panic!()
    };
    assert_eq!((soa.serial, soa.minimum, a.authority[0].ttl), (42, 30, 30));
    let a = local(ask(&v, &z, "web.shop.svc.cluster.local.", RecordType::A));
    assert_eq!(a.answers[0].ttl, 30);
}

#[test]
fn other_zones_and_reverse_names() {
    let v = view();
    let z = zone(PodRecords::Disabled);
    assert_eq!(
        ask(&v, &z, "example.com.", RecordType::A),
        Outcome::Upstream
    );
    assert_eq!(ask(&v, &z, "local.", RecordType::A), Outcome::Upstream);
    assert_eq!(
        ask(&v, &z, "xcluster.local.", RecordType::A),
        Outcome::Upstream
    );
    // ClusterIPs and headless endpoints have PTRs.
    let cases = [
        ("10.0.96.10.in-addr.arpa.", vec!["10.0.96.10.in-addr.arpa. PTR web.shop.svc.cluster.local."]),
        ("1.0.0.10.in-addr.arpa.", vec![
            "1.0.0.10.in-addr.arpa. PTR db-0.all.shop.svc.cluster.local.",
            "1.0.0.10.in-addr.arpa. PTR db-0.db.shop.svc.cluster.local.",
        ]),
        ("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
         vec!["0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. PTR web.shop.svc.cluster.local."]),
    ];
    for (name, want) in cases {
        let a = local(ask(&v, &z, name, RecordType::PTR));
        assert_eq!(texts(&a.answers), want, "{name}");
    }
    // Unknown addresses and partial reverse names are not ours.
    assert_eq!(
        ask(&v, &z, "9.9.9.9.in-addr.arpa.", RecordType::PTR),
        Outcome::Upstream
    );
    assert_eq!(
        ask(&v, &z, "10.in-addr.arpa.", RecordType::PTR),
        Outcome::Upstream
    );
    assert_eq!(
        ask(&v, &z, "010.0.96.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Upstream
    );
}

#[test]
fn external_name_chases_its_target() {
    let v = view();
    let z = zone(PodRecords::Disabled);
    let a = local(ask(&v, &z, "ext.shop.svc.cluster.local.", RecordType::A));
    assert_eq!(a.chase, Some(Name::from_ascii("example.com.").unwrap()));
    let a = local(ask(
        &v,
        &z,
        "ext.shop.svc.cluster.local.",
        RecordType::CNAME,
    ));
    assert_eq!(a.chase, None);
    let a = local(ask(&v, &z, "alias.shop.svc.cluster.local.", RecordType::A));
    assert_eq!(
        a.chase,
        Some(Name::from_ascii("web.shop.svc.cluster.local.").unwrap())
    );
}

#[test]
fn pod_records() {
    let v = view();
    let insecure = zone(PodRecords::Insecure);
    let verified = zone(PodRecords::Verified);
    let a = local(ask(
        &v,
        &insecure,
        "10-9-9-9.shop.pod.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(
        texts(&a.answers),
        ["10-9-9-9.shop.pod.cluster.local. A 10.9.9.9"]
    );
    let a = local(ask(
        &v,
        &insecure,
        "fd00--5.shop.pod.cluster.local.",
        RecordType::AAAA,
    ));
    assert_eq!(
        texts(&a.answers),
        ["fd00--5.shop.pod.cluster.local. AAAA fd00::5"]
    );
    // Unknown namespace, not an address, not canonical.
    for name in [
        "10-9-9-9.gone.pod.cluster.local.",
        "hello.shop.pod.cluster.local.",
        "10-09-9-9.shop.pod.cluster.local.",
    ] {
        assert_eq!(
            local(ask(&v, &insecure, name, RecordType::A)).rcode,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // Verified: only a pod's own address.
    assert_eq!(
        local(ask(
            &v,
            &verified,
            "10-9-9-9.shop.pod.cluster.local.",
            RecordType::A
        ))
        .rcode,
        ResponseCode::NXDomain
    );
    let a = local(ask(
        &v,
        &verified,
        "10-1-2-3.shop.pod.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(
        texts(&a.answers),
        ["10-1-2-3.shop.pod.cluster.local. A 10.1.2.3"]
    );
    // Existing pod name, other type: NODATA.
    let a = local(ask(
        &v,
        &verified,
        "10-1-2-3.shop.pod.cluster.local.",
        RecordType::TXT,
    ));
    assert_eq!((a.rcode, a.answers.len()), (ResponseCode::NoError, 0));
}

#[test]
fn view_updates_keep_the_reverse_index_exact() {
    let mut v = view();
    let z = zone(PodRecords::Disabled);
    assert!(!v.set_service(
        "shop",
        "web",
        ServiceEntry::build(
            &cluster_ip(
                "shop",
                "web",
                &["10.96.0.10", "fd00::10"],
                &[("http", "TCP", 80), ("", "TCP", 8443), ("dns", "UDP", 53)]
            ),
            &[]
        )
    ));
    let moved = cluster_ip("shop", "web", &["10.96.0.11"], &[("http", "TCP", 80)]);
    assert!(v.set_service("shop", "web", ServiceEntry::build(&moved, &[])));
    assert_eq!(
        ask(&v, &z, "10.0.96.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Upstream
    );
    assert!(matches!(
        ask(&v, &z, "11.0.96.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Local(_)
    ));
    assert!(v.set_service("shop", "web", None));
    assert_eq!(
        ask(&v, &z, "11.0.96.10.in-addr.arpa.", RecordType::PTR),
        Outcome::Upstream
    );
    assert_eq!(
        local(ask(&v, &z, "web.shop.svc.cluster.local.", RecordType::A)).rcode,
        ResponseCode::NXDomain
    );
    // A ClusterIP service without an allocated IP publishes nothing yet.
    let pending = cluster_ip("shop", "new", &[""], &[]);
    assert_eq!(ServiceEntry::build(&pending, &[]), None);
}
