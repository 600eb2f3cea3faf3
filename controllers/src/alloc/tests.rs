#![allow(clippy::unwrap_used)]

use super::*;
use capstan_api::k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use capstan_api::validation::ErrorType;

fn svc(
    ty: &str,
    cluster_ip: Option<&str>,
    policy: Option<&str>,
    families: &[&str],
    ports: &[(i32, Option<i32>)],
) -> Service {
    let mut s = Service::default();
    s.metadata.namespace = Some("default".into());
    s.metadata.name = Some("web".into());
    s.spec = Some(ServiceSpec {
        type_: Some(ty.into()),
        selector: Some([("app".to_string(), "web".to_string())].into()),
        cluster_ip: cluster_ip.map(Into::into),
        ip_family_policy: policy.map(Into::into),
        ip_families: (!families.is_empty())
            .then(|| families.iter().map(|f| f.to_string()).collect()),
        ports: Some(
            ports
                .iter()
                .enumerate()
                .map(|(i, (port, np))| ServicePort {
                    name: Some(format!("p{i}")),
                    port: *port,
                    node_port: *np,
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    s
}

fn alloc(cidrs: &str, ports: &str) -> Allocator {
    Allocator::new(Ranges::parse(cidrs, ports).unwrap())
}

fn spec(s: &Service) -> &ServiceSpec {
    s.spec.as_ref().unwrap()
}

/// (ranges, ipFamilyPolicy, ipFamilies, expected families and address count or an error)
type FamilyCase<'a> = (
    &'a str,
    Option<&'a str>,
    &'a [&'a str],
    Option<(&'a [&'a str], usize)>,
);

#[test]
fn families_and_policies() {
    // (ranges, policy, families, expect families, expect #ips) ; None = error
    let cases: &[FamilyCase] = &[
        ("10.96.0.0/16", None, &[], Some((&["IPv4"], 1))),
        (
            "10.96.0.0/16",
            Some("PreferDualStack"),
            &[],
            Some((&["IPv4"], 1)),
        ),
        ("10.96.0.0/16", Some("RequireDualStack"), &[], None),
        ("10.96.0.0/16", None, &["IPv6"], None),
        ("fd00::/112", None, &[], Some((&["IPv6"], 1))),
        ("10.96.0.0/16,fd00::/112", None, &[], Some((&["IPv4"], 1))),
        (
            "10.96.0.0/16,fd00::/112",
            Some("PreferDualStack"),
            &[],
            Some((&["IPv4", "IPv6"], 2)),
        ),
        (
            "10.96.0.0/16,fd00::/112",
            Some("RequireDualStack"),
            &["IPv6"],
            Some((&["IPv6", "IPv4"], 2)),
        ),
        (
            "fd00::/112,10.96.0.0/16",
            Some("RequireDualStack"),
            &[],
            Some((&["IPv6", "IPv4"], 2)),
        ),
        (
            "10.96.0.0/16,fd00::/112",
            None,
            &["IPv6"],
            Some((&["IPv6"], 1)),
        ),
        ("10.96.0.0/16", None, &["IPv5"], None),
    ];
    for (i, (cidrs, policy, fams, want)) in cases.iter().enumerate() {
        let a = alloc(cidrs, "30000-32767");
        let mut s = svc("ClusterIP", None, *policy, fams, &[(80, None)]);
        let got = a.decide(&mut s, None, &HashSet::new());
        match want {
            None => assert!(got.is_err(), "case {i}: {:?}", spec(&s)),
            Some((want_fams, n)) => {
                let claims = got.unwrap_or_else(|e| panic!("case {i}: {e:?}"));
                assert_eq!(
                    spec(&s).ip_families.as_deref().unwrap(),
                    *want_fams,
                    "case {i}"
                );
                let ips = spec(&s).cluster_ips.clone().unwrap();
                assert_eq!(ips.len(), *n, "case {i}");
                assert_eq!(spec(&s).cluster_ip.as_ref(), ips.first(), "case {i}");
                assert_eq!(claims.len(), *n, "case {i}");
                for (ip, fam) in ips.iter().zip(want_fams.iter()) {
                    let addr: IpAddr = ip.parse().unwrap();
                    assert_eq!(Family::of(&addr).name(), *fam, "case {i}");
                    assert!(
                        a.ranges
                            .for_family(Family::of(&addr))
                            .unwrap()
                            .contains(&addr),
                        "case {i}"
                    );
                }
            }
        }
    }
}

#[test]
fn requested_ips_are_honoured_or_refused() {
    let a = alloc("10.96.0.0/24", "30000-32767");
    let mut s = svc("ClusterIP", Some("10.96.0.10"), None, &[], &[(80, None)]);
    let claims = a.decide(&mut s, None, &HashSet::new()).unwrap();
    assert_eq!(spec(&s).cluster_ips.as_deref().unwrap(), ["10.96.0.10"]);
    assert_eq!(claims[0].key, "/registry/ipaddresses/10.96.0.10");
    let stored: IPAddress = serde_json::from_slice(&claims[0].value).unwrap();
    assert_eq!(stored.spec.parent_ref.name, "web");

    // Taken by someone else.
    let taken: HashSet<String> = ["/registry/ipaddresses/10.96.0.10".to_string()].into();
    let mut s = svc("ClusterIP", Some("10.96.0.10"), None, &[], &[(80, None)]);
    let err = a.decide(&mut s, None, &taken).unwrap_err();
    assert_eq!(err[0].field, "spec.clusterIPs[0]");
    assert!(
        err[0].detail.contains("provided IP is already allocated"),
        "{}",
        err[0]
    );

    // Out of range, network address, wrong family.
    for (ip, needle) in [
        ("10.97.0.1", "not in the valid range"),
        ("10.96.0.0", "not in the valid range"),
        ("10.96.0.255", "not in the valid range"),
        ("fd00::1", "not configured on this cluster"),
        ("banana", "must be a valid IP address"),
    ] {
        let mut s = svc("ClusterIP", Some(ip), None, &[], &[(80, None)]);
        let err = a.decide(&mut s, None, &HashSet::new()).unwrap_err();
        assert!(err[0].detail.contains(needle), "{ip}: {}", err[0]);
        assert_eq!(err[0].kind, ErrorType::Invalid);
    }
}

#[test]
fn headless_and_external_name_get_no_addresses() {
    let a = alloc("10.96.0.0/24,fd00::/112", "30000-32767");
    let mut s = svc("ClusterIP", Some("None"), None, &[], &[(80, None)]);
    assert!(a.decide(&mut s, None, &HashSet::new()).unwrap().is_empty());
    assert_eq!(spec(&s).cluster_ips.as_deref().unwrap(), ["None"]);
    assert_eq!(spec(&s).ip_family_policy.as_deref(), Some("SingleStack"));
    // Headless without selector defaults to RequireDualStack, both families.
    let mut s = svc("ClusterIP", Some("None"), None, &[], &[(80, None)]);
    s.spec.as_mut().unwrap().selector = None;
    a.decide(&mut s, None, &HashSet::new()).unwrap();
    assert_eq!(
        spec(&s).ip_family_policy.as_deref(),
        Some("RequireDualStack")
    );
    assert_eq!(spec(&s).ip_families.as_ref().unwrap().len(), 2);
    let mut s = svc("ExternalName", None, None, &[], &[(80, None)]);
    assert!(a.decide(&mut s, None, &HashSet::new()).unwrap().is_empty());
    assert_eq!(spec(&s).cluster_ips, None);
    assert_eq!(claim_keys(&s), Vec::<String>::new());
}

#[test]
fn node_ports() {
    let a = alloc("10.96.0.0/24", "30000-30002");
    let mut s = svc(
        "NodePort",
        None,
        None,
        &[],
        &[(80, None), (443, Some(30001))],
    );
    let claims = a.decide(&mut s, None, &HashSet::new()).unwrap();
    let ports: Vec<i32> = spec(&s)
        .ports
        .iter()
        .flatten()
        .map(|p| p.node_port.unwrap())
        .collect();
    assert_eq!(ports[1], 30001);
    assert!(ports[0] == 30000 || ports[0] == 30002);
    assert_eq!(claims.len(), 3); // one IP, two ports
    assert!(claim_keys(&s).contains(&"/registry/servicenodeports/30001".to_string()));

    // LoadBalancer behaves as NodePort; one without node ports gets none.
    let mut s = svc("LoadBalancer", None, None, &[], &[(80, None)]);
    a.decide(&mut s, None, &HashSet::new()).unwrap();
    assert!(spec(&s).ports.as_ref().unwrap()[0].node_port.is_some());
    let mut s = svc("LoadBalancer", None, None, &[], &[(80, None)]);
    s.spec.as_mut().unwrap().allocate_load_balancer_node_ports = Some(false);
    a.decide(&mut s, None, &HashSet::new()).unwrap();
    assert_eq!(spec(&s).ports.as_ref().unwrap()[0].node_port, None);

    // Requested port taken, out of range, range exhausted.
    let taken: HashSet<String> = ["/registry/servicenodeports/30001".to_string()].into();
    let mut s = svc("NodePort", None, None, &[], &[(80, Some(30001))]);
    let err = a.decide(&mut s, None, &taken).unwrap_err();
    assert_eq!(err[0].field, "spec.ports[0].nodePort");
    assert!(err[0].detail.contains("already allocated"));
    let mut s = svc("NodePort", None, None, &[], &[(80, Some(8080))]);
    let err = a.decide(&mut s, None, &HashSet::new()).unwrap_err();
    assert!(err[0].detail.contains("30000-30002"), "{}", err[0]);
    let full: HashSet<String> = (30000..=30002)
        .map(|p| format!("/registry/servicenodeports/{p}"))
        .collect();
    let mut s = svc("NodePort", None, None, &[], &[(80, None)]);
    let err = a.decide(&mut s, None, &full).unwrap_err();
    assert!(err[0].detail.contains("is full"), "{}", err[0]);

    // ClusterIP services drop node ports.
    let mut s = svc("ClusterIP", None, None, &[], &[(80, Some(30001))]);
    a.decide(&mut s, None, &HashSet::new()).unwrap();
    assert_eq!(spec(&s).ports.as_ref().unwrap()[0].node_port, None);
}

#[test]
fn updates_keep_what_they_hold() {
    let a = alloc("10.96.0.0/24", "30000-30100");
    let mut old = svc("NodePort", None, None, &[], &[(80, None)]);
    a.decide(&mut old, None, &HashSet::new()).unwrap();
    // What the old Service holds is taken (its own claims exist in the store).
    let held: HashSet<String> = claim_keys(&old).into_iter().collect();
    let mut new = old.clone();
    let claims = a.decide(&mut new, Some(&old), &held).unwrap();
    assert!(
        claims.is_empty(),
        "no new claims for an unchanged service: {claims:?}"
    );
    assert_eq!(spec(&new).cluster_ips, spec(&old).cluster_ips);
    // Adding a port claims one more node port only.
    new.spec
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()
        .push(ServicePort {
            name: Some("p1".into()),
            port: 81,
            ..Default::default()
        });
    let claims = a.decide(&mut new, Some(&old), &held).unwrap();
    assert_eq!(claims.len(), 1);
    assert!(claims[0].key.starts_with("/registry/servicenodeports/"));
    // Turning it into ClusterIP releases the node ports (they leave claim_keys).
    let mut cip = old.clone();
    cip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    assert!(a.decide(&mut cip, Some(&old), &held).unwrap().is_empty());
    assert_eq!(claim_keys(&cip).len(), 1);
}

#[test]
fn crowded_range_fills_up_without_repeats() {
    let a = alloc("10.0.0.0/28", "30000-32767");
    let mut taken = HashSet::new();
    for i in 0..14 {
        let mut s = svc("ClusterIP", None, None, &[], &[(80, None)]);
        let claims = a
            .decide(&mut s, None, &taken)
            .unwrap_or_else(|e| panic!("service {i}: {e:?}"));
        assert!(
            taken.insert(claims[0].key.clone()),
            "{} twice",
            claims[0].key
        );
    }
    let mut s = svc("ClusterIP", None, None, &[], &[(80, None)]);
    let err = a.decide(&mut s, None, &taken).unwrap_err();
    assert!(err[0].detail.contains("is full"));
}
