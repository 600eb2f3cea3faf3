//! Service rules (`ValidateService`, `ValidateServiceClusterIPsRelatedFields`,
//! `ValidateServiceUpdate` in Kubernetes' `pkg/apis/core/validation`).
//!
//! One difference in timing shapes this module: the API server allocates cluster IPs
//! and node ports *before* validating, capstan's client allocates them *after*. So
//! fields the allocator fills (`clusterIPs`, `ipFamilies`, `ipFamilyPolicy`, node
//! ports) are checked when given but never required, `clusterIP` alone counts as
//! `clusterIPs: [clusterIP]`, and on update type-dependent values the allocator will
//! drop (a ClusterIP service's old node ports, an ExternalName service's old cluster
//! IPs) are tolerated when unchanged, as the API server drops them before checking.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::meta::validate_meta;
use super::names::{
    is_dns1123_subdomain, is_valid_cidr, is_valid_ip, is_valid_port_num, name_is_dns1035_label,
    parse_ip, validate_dns1123_label, validate_endpoint_ip, validate_labels,
    validate_port_num_or_name, validate_qualified_name, Raw, FIELD_IMMUTABLE_ERROR,
};
use super::pod::PROTOCOLS;
use super::{FieldErrors, Path};

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const IP_FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: [&str; 3] = ["PreferDualStack", "RequireDualStack", "SingleStack"];
const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
const TRAFFIC_DISTRIBUTIONS: [&str; 3] = ["PreferClose", "PreferSameNode", "PreferSameZone"];
/// The longest ClientIP session affinity, one day.
pub const MAX_CLIENT_IP_AFFINITY_SECONDS: i32 = 86400;

/// The cluster IPs a spec asks for: `clusterIPs`, or `clusterIP` alone when only the
/// singular field is set (the allocator reads them in that order).
pub fn requested_cluster_ips(spec: &ServiceSpec) -> Vec<&str> {
    match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .into_iter()
            .collect(),
    }
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn is_headless(spec: &ServiceSpec) -> bool {
    requested_cluster_ips(spec) == ["None"]
}

fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("")
}

/// Whether traffic from outside reaches the Service (node ports, load balancers,
/// external IPs), which is when `externalTrafficPolicy` applies.
pub fn externally_accessible(spec: &ServiceSpec) -> bool {
    matches!(service_type(spec), "LoadBalancer" | "NodePort")
        || (service_type(spec) == "ClusterIP"
            && spec.external_ips.as_ref().is_some_and(|e| !e.is_empty()))
}

fn needs_health_check(spec: &ServiceSpec) -> bool {
    service_type(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

/// Validates a Service on create (`old == None`) or update.
pub fn validate(svc: &Service, old: Option<&Service>) -> FieldErrors {
    let mut errs = validate_meta(
        &svc.metadata,
        old.map(|o| &o.metadata),
        true,
        name_is_dns1035_label,
    );
    let default = ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&default);
    let old_spec = old.map(|o| o.spec.as_ref().unwrap_or(&default));
    errs.extend(validate_spec(spec, old_spec, &Path::new("spec")));
    if let Some(old_spec) = old_spec {
        errs.extend(validate_update(spec, old_spec, &Path::new("spec")));
    }
    errs
}

fn validate_spec(spec: &ServiceSpec, old: Option<&ServiceSpec>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let ty = service_type(spec);
    let headless = is_headless(spec);
    let ports = spec.ports.as_deref().unwrap_or_default();

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(path.child("ports").required(""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => {
            errs.push(path.child("clusterIPs").index(0).invalid(
                "None",
                format!("may not be set to 'None' for {ty} services"),
            ))
        }
        "ExternalName" => {
            // Values the allocator is about to drop are not the user's doing.
            let same_ips =
                old.is_some_and(|o| requested_cluster_ips(o) == requested_cluster_ips(spec));
            if !requested_cluster_ips(spec).is_empty() && !same_ips {
                errs.push(
                    path.child("clusterIPs")
                        .forbidden("may not be set for ExternalName services"),
                );
            }
            let same_families = old.is_some_and(|o| o.ip_families == spec.ip_families);
            if spec.ip_families.as_ref().is_some_and(|f| !f.is_empty()) && !same_families {
                errs.push(
                    path.child("ipFamilies")
                        .forbidden("may not be set for ExternalName services"),
                );
            }
            let same_policy = old.is_some_and(|o| o.ip_family_policy == spec.ip_family_policy);
            if spec.ip_family_policy.is_some() && !same_policy {
                errs.push(
                    path.child("ipFamilyPolicy")
                        .forbidden("may not be set for ExternalName services"),
                );
            }
            // A CNAME may end in a dot to mark it fully qualified.
            let name = spec.external_name.as_deref().unwrap_or("");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(path.child("externalName").required(""));
            } else {
                for m in is_dns1123_subdomain(cname) {
                    errs.push(path.child("externalName").invalid(cname, m));
                }
            }
        }
        _ => {}
    }

    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &path.child("ports").index(i),
        ));
    }
    errs.extend(validate_labels(
        spec.selector.as_ref(),
        &path.child("selector"),
    ));

    match spec.session_affinity.as_deref().unwrap_or("") {
        "" => errs.push(path.child("sessionAffinity").required("")),
        "ClientIP" => errs.extend(validate_client_ip_config(spec, path)),
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(
                    path.child("sessionAffinityConfig")
                        .forbidden("must not be set when session affinity is None"),
                );
            }
        }
        other => errs.push(
            path.child("sessionAffinity")
                .not_supported(other, &SESSION_AFFINITIES),
        ),
    }

    if ty != "ExternalName" {
        errs.extend(validate_cluster_ips(spec, path));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let p = path.child("externalIPs").index(i);
        let e = is_valid_ip(&p, ip);
        if e.is_empty() {
            errs.extend(validate_endpoint_ip(&p, ip));
        } else {
            errs.extend(e);
        }
    }
    match ty {
        "" => errs.push(path.child("type").required("")),
        t if !SERVICE_TYPES.contains(&t) => {
            errs.push(path.child("type").not_supported(t, &SERVICE_TYPES));
        }
        _ => {}
    }

    if ty == "ClusterIP" {
        let old_node_ports: BTreeSet<i32> = old
            .into_iter()
            .flat_map(|o| o.ports.iter().flatten())
            .filter_map(|p| p.node_port)
            .collect();
        for (i, p) in ports.iter().enumerate() {
            if p.node_port
                .is_some_and(|np| np != 0 && !old_node_ports.contains(&np))
            {
                errs.push(
                    path.child("ports")
                        .index(i)
                        .child("nodePort")
                        .forbidden("may not be used when `type` is 'ClusterIP'"),
                );
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.as_deref().unwrap_or("");
        if let Some(np) = p.node_port.filter(|np| *np != 0) {
            if !node_ports.insert((protocol, np)) {
                errs.push(path.child("ports").index(i).child("nodePort").duplicate(np));
            }
        }
        if !port_keys.insert((protocol, p.port)) {
            errs.push(
                path.child("ports")
                    .index(i)
                    .duplicate(Raw(format!("{{port: {}, protocol: {protocol}}}", p.port))),
            );
        }
    }

    let ranges = spec
        .load_balancer_source_ranges
        .as_deref()
        .unwrap_or_default();
    if !ranges.is_empty() {
        let p = path.child("loadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(p.forbidden("may only be used when `type` is 'LoadBalancer'"));
        }
        for (i, r) in ranges.iter().enumerate() {
            // Space padding is tolerated: it came in through the old annotation.
            errs.extend(is_valid_cidr(&p.index(i), r.trim()));
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(
            path.child("allocateLoadBalancerNodePorts")
                .forbidden("may only be used when `type` is 'LoadBalancer'"),
        );
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        errs.push(path.child("allocateLoadBalancerNodePorts").required(""));
    }
    if let Some(class) = spec.load_balancer_class.as_deref() {
        if ty == "LoadBalancer" {
            errs.extend(validate_qualified_name(
                class,
                &path.child("loadBalancerClass"),
            ));
        } else {
            errs.push(
                path.child("loadBalancerClass")
                    .forbidden("may only be used when `type` is 'LoadBalancer'"),
            );
        }
    }
    errs.extend(validate_traffic_policies(spec, old, path));
    errs
}

fn validate_service_port(
    p: &ServicePort,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(path.child("name").required(""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &path.child("name")));
        if !names.insert(name.to_string()) {
            errs.push(path.child("name").duplicate(name));
        }
    }
    for m in is_valid_port_num(i64::from(p.port)) {
        errs.push(path.child("port").invalid(p.port, m));
    }
    match p.protocol.as_deref().unwrap_or("") {
        "" => errs.push(path.child("protocol").required("")),
        proto if !PROTOCOLS.contains(&proto) => {
            errs.push(path.child("protocol").not_supported(proto, &PROTOCOLS));
        }
        _ => {}
    }
    match &p.target_port {
        Some(tp) => errs.extend(validate_port_num_or_name(tp, &path.child("targetPort"))),
        None => errs.push(path.child("targetPort").required("")),
    }
    if let Some(np) = p.node_port.filter(|np| *np != 0) {
        for m in is_valid_port_num(i64::from(np)) {
            errs.push(path.child("nodePort").invalid(np, m));
        }
    }
    if let Some(ap) = p.app_protocol.as_deref() {
        errs.extend(validate_qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

fn validate_client_ip_config(spec: &ServiceSpec, path: &Path) -> FieldErrors {
    let p = path.child("sessionAffinityConfig");
    let why = "when session affinity type is ClientIP";
    let Some(config) = &spec.session_affinity_config else {
        return vec![p.required(why)];
    };
    let Some(client_ip) = &config.client_ip else {
        return vec![p.child("clientIP").required(why)];
    };
    let tp = p.child("clientIP").child("timeoutSeconds");
    match client_ip.timeout_seconds {
        None => vec![tp.required(why)],
        Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => vec![tp.invalid(
            t,
            format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
        )],
        Some(_) => Vec::new(),
    }
}

/// `clusterIP`/`clusterIPs` agree, are valid IPs (or the lone `None`), at most one per
/// family and two in all, and match `ipFamilies`; `ipFamilies` and `ipFamilyPolicy`
/// hold known values.
fn validate_cluster_ips(spec: &ServiceSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let ips_path = path.child("clusterIPs");
    let families_path = path.child("ipFamilies");
    let plural = spec.cluster_ips.as_deref().unwrap_or_default();
    let singular = spec.cluster_ip.as_deref().unwrap_or("");
    if !plural.is_empty() {
        if singular.is_empty() {
            errs.push(ips_path.invalid(plural, "must be empty when `clusterIP` is not specified"));
        } else if plural[0] != singular {
            errs.push(ips_path.invalid(plural, "first value must match `clusterIP`"));
        }
    }

    let families = spec.ip_families.as_deref().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, f) in families.iter().enumerate() {
        if !IP_FAMILIES.contains(&f.as_str()) {
            errs.push(families_path.index(i).not_supported(f, &IP_FAMILIES));
        }
        if !seen.insert(f.as_str()) {
            errs.push(families_path.index(i).duplicate(f));
        }
    }
    if families.len() > 2 {
        errs.push(families_path.invalid(families, "may only hold up to 2 values"));
    }
    let policy = spec.ip_family_policy.as_deref();
    if let Some(p) = policy {
        if !IP_FAMILY_POLICIES.contains(&p) {
            errs.push(
                path.child("ipFamilyPolicy")
                    .not_supported(p, &IP_FAMILY_POLICIES),
            );
        }
    }

    let ips = requested_cluster_ips(spec);
    if policy == Some("SingleStack") && (families.len() > 1 || ips.len() > 1) {
        errs.push(path.child("ipFamilyPolicy").invalid(
            "SingleStack",
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
        ));
    }
    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(ips_path.invalid(&ips, "'None' must be the first and only value"));
            }
            continue;
        }
        let e = is_valid_ip(&ips_path.index(i), ip);
        invalid_ips |= !e.is_empty();
        errs.extend(e);
    }
    if ips.len() > 2 {
        errs.push(ips_path.invalid(&ips, "may only hold up to 2 values"));
    }
    // Family checks on malformed addresses would only add noise.
    if invalid_ips {
        return errs;
    }
    if ips.len() == 2 {
        let v4 = ips.iter().filter(|ip| !ip.contains(':')).count();
        if v4 != 1 {
            errs.push(ips_path.invalid(&ips, "may specify no more than one IP for each IP family"));
        }
    }
    if ips != ["None"] {
        for (i, (ip, family)) in ips.iter().zip(families).enumerate() {
            let is_v6 = parse_ip(ip).is_some_and(|a| a.is_ipv6());
            let want = match family.as_str() {
                "IPv4" if is_v6 => "IPv4",
                "IPv6" if !is_v6 => "IPv6",
                _ => continue,
            };
            errs.push(ips_path.index(i).invalid(
                *ip,
                format!("expected an {want} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    errs
}

fn validate_traffic_policies(
    spec: &ServiceSpec,
    old: Option<&ServiceSpec>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let etp = spec.external_traffic_policy.as_deref().unwrap_or("");
    if !externally_accessible(spec) {
        let stale = old.is_some_and(|o| o.external_traffic_policy == spec.external_traffic_policy);
        if !etp.is_empty() && !stale {
            errs.push(
                path.child("externalTrafficPolicy")
                    .invalid(etp, "may only be set for externally-accessible services"),
            );
        }
    } else if etp.is_empty() {
        errs.push(path.child("externalTrafficPolicy").required(""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(
            path.child("externalTrafficPolicy")
                .not_supported(etp, &TRAFFIC_POLICIES),
        );
    }

    // capstan allocates no health check node ports, so the field is optional here.
    if let Some(hc) = spec.health_check_node_port.filter(|p| *p != 0) {
        let p = path.child("healthCheckNodePort");
        let stale = old.is_some_and(|o| o.health_check_node_port == spec.health_check_node_port);
        if !needs_health_check(spec) {
            if !stale {
                errs.push(p.invalid(
                    hc,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                ));
            }
        } else {
            for m in is_valid_port_num(i64::from(hc)) {
                errs.push(p.invalid(hc, m));
            }
        }
    }

    let ty = service_type(spec);
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(path.child("internalTrafficPolicy").required(""));
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => errs.push(
            path.child("internalTrafficPolicy")
                .not_supported(p, &TRAFFIC_POLICIES),
        ),
        _ => {}
    }
    if let Some(td) = spec.traffic_distribution.as_deref() {
        if !TRAFFIC_DISTRIBUTIONS.contains(&td) {
            errs.push(
                path.child("trafficDistribution")
                    .not_supported(td, &TRAFFIC_DISTRIBUTIONS),
            );
        }
    }
    errs
}

/// What an update may not do: change the primary cluster IP or family (unless the
/// type moves to or from ExternalName), drop a secondary without going SingleStack,
/// change a load balancer's class or its health check node port.
fn validate_update(new: &ServiceSpec, old: &ServiceSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let external_name = service_type(new) == "ExternalName" || service_type(old) == "ExternalName";
    let single_stack = new.ip_family_policy.as_deref() == Some("SingleStack");
    let (new_headless, old_headless) = (is_headless(new), is_headless(old));

    if !(external_name || old_headless && new_headless) {
        let (n, o) = (requested_cluster_ips(new), requested_cluster_ips(old));
        let ips_path = path.child("clusterIPs");
        let changed = ips_path.index(0);
        if n.len() == o.len() {
            for (i, (a, b)) in n.iter().zip(&o).enumerate() {
                if a != b {
                    errs.push(ips_path.index(i).invalid(&n, "may not change once set"));
                }
            }
        } else if o.len() > n.len() {
            if n.is_empty() {
                errs.push(changed.invalid(&n, "primary clusterIP can not be unset"));
            } else if n[0] != o[0] {
                errs.push(changed.invalid(&n, "may not change once set"));
            }
            if n.len() == 1 && !single_stack {
                errs.push(path.child("ipFamilyPolicy").invalid(
                    new.ip_family_policy.as_deref().unwrap_or(""),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !o.is_empty() && n[0] != o[0] {
            errs.push(changed.invalid(&n, "may not change once set"));
        }
    }

    if !external_name && new_headless == old_headless && !new_headless {
        let empty = Vec::new();
        let n = new.ip_families.as_ref().unwrap_or(&empty);
        let o = old.ip_families.as_ref().unwrap_or(&empty);
        let fam_path = path.child("ipFamilies").index(0);
        if n.len() == o.len() {
            if n != o {
                errs.push(fam_path.invalid(n, "may not change once set"));
            }
        } else if o.len() > n.len() {
            if requested_cluster_ips(new).is_empty() {
                errs.push(fam_path.invalid(n, "primary ipFamily can not be unset"));
            }
            if !n.is_empty() && n[0] != o[0] {
                errs.push(fam_path.invalid(n, "may not change once set"));
            }
            if n.len() == 1 && !single_stack {
                errs.push(path.child("ipFamilyPolicy").invalid(
                    new.ip_family_policy.as_deref().unwrap_or(""),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                ));
            }
        } else if !o.is_empty() && n[0] != o[0] {
            errs.push(fam_path.invalid(n, "may not change once set"));
        }
    }

    if service_type(new) == "LoadBalancer"
        && service_type(old) == "LoadBalancer"
        && new.load_balancer_class != old.load_balancer_class
    {
        errs.push(path.child("loadBalancerClass").invalid(
            new.load_balancer_class.as_deref().unwrap_or(""),
            "may not change once set",
        ));
    }
    if needs_health_check(new)
        && needs_health_check(old)
        && old.health_check_node_port.unwrap_or(0) != 0
        && new.health_check_node_port != old.health_check_node_port
    {
        errs.push(
            path.child("healthCheckNodePort")
                .forbidden(FIELD_IMMUTABLE_ERROR),
        );
    }
    errs
}
