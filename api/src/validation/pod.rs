//! Pod rules (`ValidatePodCreate`, `ValidatePodSpec`, `ValidatePodUpdate` in
//! Kubernetes' `pkg/apis/core/validation`): containers, ports, resources, probes,
//! scheduling fields (tolerations, affinity, spread constraints), DNS, and what an
//! update may change. Defaulting has run before, so fields it fills are required.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, HTTPGetAction, LifecycleHandler, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, PodDNSConfig, PodSpec,
    PodStatus, Probe, SecurityContext, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::meta::validate_meta;
use super::names::{
    inclusive_range_error, is_dns1123_label, is_env_var_name, is_label_value, is_valid_ip,
    is_valid_port_name, is_valid_port_num, name_is_dns_label, name_is_dns_subdomain,
    set_operator_values, validate_dns1123_label, validate_dns1123_subdomain, validate_label_name,
    validate_label_selector, validate_labels, validate_port_num_or_name, validate_qualified_name,
    Raw, IS_NEGATIVE_ERROR,
};
use super::resources::validate_resource_requirements;
use super::{FieldErrors, Path};

/// Protocols a port may use.
pub const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: [&str; 2] = ["File", "FallbackToLogsOnError"];
const PREEMPTION_POLICIES: [&str; 2] = ["PreemptLowerPriority", "Never"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const TOLERATION_OPERATORS: [&str; 2] = ["Equal", "Exists"];
const WHEN_UNSATISFIABLE: [&str; 2] = ["DoNotSchedule", "ScheduleAnyway"];
const NODE_INCLUSION_POLICIES: [&str; 2] = ["Honor", "Ignore"];
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const IS_NOT_POSITIVE: &str = "must be greater than zero";

/// The fields a pod update may change, as the API server lists them (plus capstan's
/// binding by update, since there is no `pods/binding` subresource).
const UPDATABLE_POD_SPEC_FIELDS: [&str; 6] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    "`spec.nodeName` (only from unset to set)",
];

/// Validates a Pod on create (`old == None`) or update.
pub fn validate(pod: &Pod, old: Option<&Pod>) -> FieldErrors {
    let mut errs = validate_meta(
        &pod.metadata,
        old.map(|o| &o.metadata),
        true,
        name_is_dns_subdomain,
    );
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let spec_path = Path::new("spec");
    errs.extend(validate_pod_spec(spec, &spec_path));
    if let Some(status) = &pod.status {
        errs.extend(validate_status(status, &Path::new("status")));
    }
    match old {
        None => {
            if spec
                .ephemeral_containers
                .as_ref()
                .is_some_and(|e| !e.is_empty())
            {
                errs.push(
                    spec_path
                        .child("ephemeralContainers")
                        .forbidden("cannot be set on create"),
                );
            }
            if has_node_name(spec) && has_scheduling_gates(spec) {
                errs.push(
                    spec_path
                        .child("nodeName")
                        .forbidden("cannot be set until all schedulingGates have been cleared"),
                );
            }
        }
        Some(old) => {
            let old_spec = old.spec.as_ref().unwrap_or(&default_spec);
            errs.extend(validate_update(spec, old_spec, &spec_path));
        }
    }
    errs
}

fn has_node_name(spec: &PodSpec) -> bool {
    spec.node_name.as_deref().is_some_and(|n| !n.is_empty())
}

fn has_scheduling_gates(spec: &PodSpec) -> bool {
    spec.scheduling_gates
        .as_ref()
        .is_some_and(|g| !g.is_empty())
}

/// Checks a pod spec (also usable for specs embedded in other objects).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    match spec.termination_grace_period_seconds {
        None => errs.push(path.child("terminationGracePeriodSeconds").required("")),
        Some(g) if g < 0 => errs.push(
            path.child("terminationGracePeriodSeconds")
                .invalid(g, IS_NEGATIVE_ERROR),
        ),
        Some(_) => {}
    }
    let volumes = volume_names(spec);
    errs.extend(validate_containers(spec, &volumes, path));
    errs.extend(validate_host_network_ports(spec, path));
    errs.extend(one_of(
        spec.restart_policy.as_deref(),
        &RESTART_POLICIES,
        &path.child("restartPolicy"),
    ));
    errs.extend(one_of(
        spec.dns_policy.as_deref(),
        &DNS_POLICIES,
        &path.child("dnsPolicy"),
    ));
    errs.extend(validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    errs.extend(validate_pod_security_context(spec, path));
    if let Some(affinity) = &spec.affinity {
        errs.extend(validate_affinity(affinity, &path.child("affinity")));
    }
    errs.extend(validate_dns_config(spec, &path.child("dnsConfig")));
    for (i, g) in spec.readiness_gates.iter().flatten().enumerate() {
        errs.extend(validate_qualified_name(
            &g.condition_type,
            &path.child("readinessGates").index(i).child("conditionType"),
        ));
    }
    let mut gates = BTreeSet::new();
    for (i, g) in spec.scheduling_gates.iter().flatten().enumerate() {
        let p = path.child("schedulingGates").index(i);
        errs.extend(validate_qualified_name(&g.name, &p));
        if !gates.insert(g.name.as_str()) {
            errs.push(p.duplicate(&g.name));
        }
    }
    errs.extend(validate_topology_spread_constraints(
        spec.topology_spread_constraints
            .as_deref()
            .unwrap_or_default(),
        &path.child("topologySpreadConstraints"),
    ));
    for (field, value) in [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
        ("priorityClassName", &spec.priority_class_name),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            for m in name_is_dns_subdomain(v, false) {
                errs.push(path.child(field).invalid(v, m));
            }
        }
    }
    if let Some(v) = spec.runtime_class_name.as_deref() {
        errs.extend(validate_dns1123_subdomain(
            v,
            &path.child("runtimeClassName"),
        ));
    }
    if let Some(d) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            errs.push(
                path.child("activeDeadlineSeconds")
                    .invalid(d, inclusive_range_error(1, i64::from(i32::MAX))),
            );
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(validate_dns1123_label(v, &path.child(field)));
        }
    }
    errs.extend(validate_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
    ));
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let p = path.child("hostAliases").index(i);
        errs.extend(is_valid_ip(&p.child("ip"), &alias.ip));
        for (j, h) in alias.hostnames.iter().flatten().enumerate() {
            errs.extend(validate_dns1123_subdomain(
                h,
                &p.child("hostnames").index(j),
            ));
        }
    }
    if let Some(p) = spec.preemption_policy.as_deref() {
        errs.extend(one_of(
            Some(p),
            &PREEMPTION_POLICIES,
            &path.child("preemptionPolicy"),
        ));
    }
    if let Some(overhead) = &spec.overhead {
        let reqs = k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(overhead.clone()),
            ..Default::default()
        };
        errs.extend(validate_resource_requirements(
            &reqs,
            &path.child("overhead"),
        ));
    }
    if let Some(resources) = &spec.resources {
        errs.extend(validate_resource_requirements(
            resources,
            &path.child("resources"),
        ));
    }
    if let Some(os) = &spec.os {
        if os.name.is_empty() {
            errs.push(path.child("os").child("name").required("cannot be empty"));
        } else if os.name != "linux" && os.name != "windows" {
            errs.push(
                path.child("os")
                    .not_supported(&os.name, &["linux", "windows"]),
            );
        }
    }
    if spec.scheduler_name.as_deref().unwrap_or("").is_empty() {
        errs.push(path.child("schedulerName").required(""));
    }
    errs
}

/// `value` must be one of `allowed`; empty is `Required`.
fn one_of(value: Option<&str>, allowed: &[&str], path: &Path) -> FieldErrors {
    match value.unwrap_or("") {
        "" => vec![path.required("")],
        v if allowed.contains(&v) => Vec::new(),
        v => vec![path.not_supported(v, allowed)],
    }
}

/// The valid volume names, which volume mounts must refer to.
fn volume_names(spec: &PodSpec) -> BTreeSet<String> {
    spec.volumes
        .iter()
        .flatten()
        .filter(|v| !v.name.is_empty() && is_dns1123_label(&v.name).is_empty())
        .map(|v| v.name.clone())
        .collect()
}

/// Volume names: required, DNS labels, unique.
fn validate_volume_names(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let p = path.index(i).child("name");
        if v.name.is_empty() {
            errs.push(p.required(""));
        } else {
            errs.extend(validate_dns1123_label(&v.name, &p));
        }
        if !seen.insert(v.name.as_str()) {
            errs.push(p.duplicate(&v.name));
        }
    }
    errs
}

fn validate_containers(spec: &PodSpec, volumes: &BTreeSet<String>, path: &Path) -> FieldErrors {
    let mut errs = validate_volume_names(spec, &path.child("volumes"));
    let grace = spec.termination_grace_period_seconds;
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        errs.push(containers_path.required(""));
    }
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = containers_path.index(i);
        errs.extend(validate_container_common(c, volumes, &p));
        if !names.insert(c.name.as_str()) {
            errs.push(p.child("name").duplicate(&c.name));
        }
        errs.extend(validate_lifecycle_and_probes(c, grace, &p));
        if c.restart_policy.is_some() {
            errs.push(
                p.child("restartPolicy")
                    .forbidden("may not be set for non-init containers"),
            );
        }
    }
    errs.extend(check_host_port_conflicts(
        spec.containers.iter().enumerate(),
        &containers_path,
    ));

    let init_path = path.child("initContainers");
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let p = init_path.index(i);
        errs.extend(validate_container_common(c, volumes, &p));
        let mut restart_always = false;
        if let Some(policy) = c.restart_policy.as_deref() {
            if policy == "Always" {
                restart_always = true;
            } else {
                errs.push(p.child("restartPolicy").not_supported(policy, &["Always"]));
            }
        }
        if names.contains(c.name.as_str()) {
            errs.push(p.child("name").duplicate(&c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.as_str());
        }
        // Init containers run one at a time, so only ports within one can conflict.
        errs.extend(check_host_port_conflicts(
            std::iter::once((i, c)),
            &init_path,
        ));
        if restart_always {
            errs.extend(validate_lifecycle_and_probes(c, grace, &p));
        } else {
            let forbidden = "may not be set for init containers without restartPolicy=Always";
            for (field, set) in [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ] {
                if set {
                    errs.push(p.child(field).forbidden(forbidden));
                }
            }
        }
    }
    errs
}

/// What every container is checked for: name, image, termination message policy,
/// ports, env names, volume mounts, pull policy, resources, security context.
fn validate_container_common(
    c: &Container,
    volumes: &BTreeSet<String>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(path.child("name").required(""));
    } else {
        errs.extend(validate_dns1123_label(&c.name, &path.child("name")));
    }
    match c.image.as_deref() {
        None | Some("") => errs.push(path.child("image").required("")),
        Some(image) if image.trim() != image => errs.push(
            path.child("image")
                .invalid(image, "must not have leading or trailing whitespace"),
        ),
        Some(_) => {}
    }
    errs.extend(one_of(
        c.termination_message_policy.as_deref(),
        &TERMINATION_MESSAGE_POLICIES,
        &path.child("terminationMessagePolicy"),
    ));
    errs.extend(validate_container_ports(
        c.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
    ));
    for (i, e) in c.env.iter().flatten().enumerate() {
        let p = path.child("env").index(i).child("name");
        if e.name.is_empty() {
            errs.push(p.required(""));
        } else {
            for m in is_env_var_name(&e.name) {
                errs.push(p.invalid(&e.name, m));
            }
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let p = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(p.child("name").required(""));
        } else if !volumes.contains(&m.name) {
            errs.push(p.child("name").not_found(&m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(p.child("mountPath").required(""));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(
                p.child("mountPath")
                    .invalid(&m.mount_path, "must be unique"),
            );
        }
    }
    errs.extend(one_of(
        c.image_pull_policy.as_deref(),
        &PULL_POLICIES,
        &path.child("imagePullPolicy"),
    ));
    if let Some(resources) = &c.resources {
        errs.extend(validate_resource_requirements(
            resources,
            &path.child("resources"),
        ));
    }
    if let Some(sc) = &c.security_context {
        errs.extend(validate_security_context(
            sc,
            &path.child("securityContext"),
        ));
    }
    errs
}

/// Container ports: names IANA_SVC_NAME and unique within the container, container
/// port required and valid, host port valid, protocol known.
pub fn validate_container_ports(ports: &[ContainerPort], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(p.child("name").invalid(name, m));
                }
            } else if !names.insert(name) {
                errs.push(p.child("name").duplicate(name));
            }
        }
        if port.container_port == 0 {
            errs.push(p.child("containerPort").required(""));
        } else {
            for m in is_valid_port_num(i64::from(port.container_port)) {
                errs.push(p.child("containerPort").invalid(port.container_port, m));
            }
        }
        if let Some(hp) = port.host_port.filter(|hp| *hp != 0) {
            for m in is_valid_port_num(i64::from(hp)) {
                errs.push(p.child("hostPort").invalid(hp, m));
            }
        }
        errs.extend(one_of(
            port.protocol.as_deref(),
            &PROTOCOLS,
            &p.child("protocol"),
        ));
        if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
            errs.extend(is_valid_ip(&p.child("hostIP"), ip));
        }
    }
    errs
}

/// Two ports of the given containers may not claim the same host port, protocol
/// and host IP.
fn check_host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a Container)>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (ci, c) in containers {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = port.host_port.filter(|hp| *hp != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{hp}",
                port.protocol.as_deref().unwrap_or(""),
                port.host_ip.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(
                    path.index(ci)
                        .child("ports")
                        .index(pi)
                        .child("hostPort")
                        .duplicate(key),
                );
            }
        }
    }
    errs
}

/// With host networking the container's port is the host's, so they must agree.
fn validate_host_network_ports(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if spec.host_network != Some(true) {
        return errs;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let hp = port.host_port.unwrap_or(0);
            if hp != port.container_port {
                errs.push(
                    path.child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort")
                        .invalid(hp, "must match `containerPort` when `hostNetwork` is true"),
                );
            }
        }
    }
    errs
}

fn validate_lifecycle_and_probes(c: &Container, grace: Option<i64>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(lc) = &c.lifecycle {
        for (field, handler) in [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)] {
            if let Some(h) = handler {
                errs.extend(validate_lifecycle_handler(
                    h,
                    grace,
                    &path.child("lifecycle").child(field),
                ));
            }
        }
    }
    for (field, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        let Some(probe) = probe else { continue };
        let p = path.child(field);
        errs.extend(validate_probe(probe, &p));
        if field == "readinessProbe" {
            if let Some(t) = probe.termination_grace_period_seconds {
                errs.push(
                    p.child("terminationGracePeriodSeconds")
                        .invalid(t, "must not be set for readinessProbes"),
                );
            }
        } else if probe.success_threshold.unwrap_or(1) != 1 {
            errs.push(
                p.child("successThreshold")
                    .invalid(probe.success_threshold.unwrap_or(0), "must be 1"),
            );
        }
    }
    errs
}

fn validate_probe(probe: &Probe, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut handlers = 0;
    let mut handler = |set: bool, field: &str, check: &dyn Fn(&Path) -> FieldErrors| {
        if !set {
            return;
        }
        if handlers > 0 {
            errs.push(
                path.child(field)
                    .forbidden("may not specify more than 1 handler type"),
            );
        } else {
            handlers += 1;
            errs.extend(check(&path.child(field)));
        }
    };
    handler(probe.exec.is_some(), "exec", &|p| {
        exec_errors(probe.exec.as_ref().and_then(|e| e.command.as_ref()), p)
    });
    handler(probe.http_get.is_some(), "httpGet", &|p| {
        probe
            .http_get
            .as_ref()
            .map(|h| http_get_errors(h, p))
            .unwrap_or_default()
    });
    handler(probe.tcp_socket.is_some(), "tcpSocket", &|p| {
        probe
            .tcp_socket
            .as_ref()
            .map(|t| validate_port_num_or_name(&t.port, &p.child("port")))
            .unwrap_or_default()
    });
    handler(probe.grpc.is_some(), "grpc", &|p| {
        probe
            .grpc
            .as_ref()
            .map(|g| {
                is_valid_port_num(i64::from(g.port))
                    .into_iter()
                    .map(|m| p.child("port").invalid(g.port, m))
                    .collect()
            })
            .unwrap_or_default()
    });
    if handlers == 0 {
        errs.push(path.required("must specify a handler type"));
    }
    for (field, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(path.child(field).invalid(v, IS_NEGATIVE_ERROR));
        }
    }
    if let Some(t) = probe.termination_grace_period_seconds.filter(|t| *t <= 0) {
        errs.push(
            path.child("terminationGracePeriodSeconds")
                .invalid(t, "must be greater than 0"),
        );
    }
    errs
}

fn exec_errors(command: Option<&Vec<String>>, path: &Path) -> FieldErrors {
    if command.is_none_or(|c| c.is_empty()) {
        vec![path.child("command").required("")]
    } else {
        Vec::new()
    }
}

fn http_get_errors(h: &HTTPGetAction, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if h.path.as_deref().unwrap_or("").is_empty() {
        errs.push(path.child("path").required(""));
    }
    errs.extend(validate_port_num_or_name(&h.port, &path.child("port")));
    let scheme = h.scheme.as_deref().unwrap_or("");
    if scheme != "HTTP" && scheme != "HTTPS" {
        errs.push(
            path.child("scheme")
                .not_supported(scheme, &["HTTP", "HTTPS"]),
        );
    }
    errs
}

fn validate_lifecycle_handler(
    h: &LifecycleHandler,
    grace: Option<i64>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let set: Vec<&str> = [
        ("exec", h.exec.is_some()),
        ("httpGet", h.http_get.is_some()),
        ("tcpSocket", h.tcp_socket.is_some()),
        ("sleep", h.sleep.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, s)| s.then_some(n))
    .collect();
    if set.is_empty() {
        errs.push(path.required("must specify a handler type"));
    }
    for extra in set.iter().skip(1) {
        errs.push(
            path.child(extra)
                .forbidden("may not specify more than 1 handler type"),
        );
    }
    match set.first().copied() {
        Some("exec") => errs.extend(exec_errors(
            h.exec.as_ref().and_then(|e| e.command.as_ref()),
            &path.child("exec"),
        )),
        Some("httpGet") => {
            if let Some(g) = &h.http_get {
                errs.extend(http_get_errors(g, &path.child("httpGet")));
            }
        }
        Some("tcpSocket") => {
            if let Some(t) = &h.tcp_socket {
                errs.extend(validate_port_num_or_name(
                    &t.port,
                    &path.child("tcpSocket").child("port"),
                ));
            }
        }
        Some("sleep") => {
            if let (Some(s), Some(g)) = (&h.sleep, grace) {
                if s.seconds < 0 || s.seconds > g {
                    errs.push(path.child("sleep").invalid(
                        s.seconds,
                        format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    errs
}

fn id_errors(value: Option<i64>, path: &Path) -> FieldErrors {
    match value {
        Some(v) if !(0..=i64::from(i32::MAX)).contains(&v) => {
            vec![path.invalid(v, inclusive_range_error(0, i64::from(i32::MAX)))]
        }
        _ => Vec::new(),
    }
}

fn validate_security_context(sc: &SecurityContext, path: &Path) -> FieldErrors {
    let mut errs = id_errors(sc.run_as_user, &path.child("runAsUser"));
    errs.extend(id_errors(sc.run_as_group, &path.child("runAsGroup")));
    if sc.allow_privilege_escalation == Some(false) && sc.privileged == Some(true) {
        errs.push(path.invalid(
            Raw("{privileged: true, allowPrivilegeEscalation: false}".into()),
            "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ));
    }
    if let Some(pm) = sc.proc_mount.as_deref() {
        if pm != "Default" && pm != "Unmasked" {
            errs.push(
                path.child("procMount")
                    .not_supported(pm, &["Default", "Unmasked"]),
            );
        }
    }
    errs
}

fn validate_pod_security_context(spec: &PodSpec, path: &Path) -> FieldErrors {
    let Some(sc) = &spec.security_context else {
        return Vec::new();
    };
    let p = path.child("securityContext");
    let mut errs = id_errors(sc.fs_group, &p.child("fsGroup"));
    errs.extend(id_errors(sc.run_as_user, &p.child("runAsUser")));
    errs.extend(id_errors(sc.run_as_group, &p.child("runAsGroup")));
    for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
        errs.extend(id_errors(Some(*g), &p.child("supplementalGroups").index(i)));
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(p.child("shareProcessNamespace").invalid(
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    if let Some(policy) = sc.fs_group_change_policy.as_deref() {
        if policy != "OnRootMismatch" && policy != "Always" {
            errs.push(
                p.child("fsGroupChangePolicy")
                    .not_supported(policy, &["Always", "OnRootMismatch"]),
            );
        }
    }
    errs
}

fn validate_dns_config(spec: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let config: Option<&PodDNSConfig> = spec.dns_config.as_ref();
    if spec.dns_policy.as_deref() == Some("None") {
        let Some(c) = config else {
            return vec![path.required("must provide `dnsConfig` when `dnsPolicy` is None")];
        };
        if c.nameservers.as_ref().is_none_or(|n| n.is_empty()) {
            return vec![path
                .child("nameservers")
                .required("must provide at least one DNS nameserver when `dnsPolicy` is None")];
        }
    }
    let Some(c) = config else { return errs };
    let nameservers = c.nameservers.as_deref().unwrap_or_default();
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        errs.push(path.child("nameservers").invalid(
            nameservers,
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        errs.extend(is_valid_ip(&path.child("nameservers").index(i), ns));
    }
    let searches = c.searches.as_deref().unwrap_or_default();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(path.child("searches").invalid(
            searches,
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(path.child("searches").invalid(
            searches,
            format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.strip_suffix('.').unwrap_or(s);
        errs.extend(validate_dns1123_subdomain(
            s,
            &path.child("searches").index(i),
        ));
    }
    for (i, o) in c.options.iter().flatten().enumerate() {
        if o.name.as_deref().unwrap_or("").is_empty() {
            errs.push(path.child("options").index(i).required("must not be empty"));
        }
    }
    errs
}

/// Tolerations: key a qualified name (empty only with `Exists`), operator `Equal` or
/// `Exists` (`Exists` takes no value), effect known, `tolerationSeconds` only with
/// `NoExecute`.
pub fn validate_tolerations(tolerations: &[Toleration], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = t.key.as_deref().unwrap_or("");
        let operator = t.operator.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &p.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(p.child("operator").invalid(
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(p.child("effect").invalid(
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let msgs = is_label_value(value);
                if !msgs.is_empty() {
                    errs.push(p.child("operator").invalid(value, msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(
                        p.child("operator")
                            .invalid(value, "value must be empty when `operator` is 'Exists'"),
                    );
                }
            }
            other => errs.push(
                p.child("operator")
                    .not_supported(other, &TOLERATION_OPERATORS),
            ),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(p.child("effect").not_supported(effect, &TAINT_EFFECTS));
        }
    }
    errs
}

fn validate_affinity(a: &Affinity, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(na) = &a.node_affinity {
        let p = path.child("nodeAffinity");
        if let Some(required) = &na.required_during_scheduling_ignored_during_execution {
            errs.extend(validate_node_selector(
                required,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution"),
            ));
        }
        for (i, term) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let tp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            if !(1..=100).contains(&term.weight) {
                errs.push(
                    tp.child("weight")
                        .invalid(term.weight, "must be in the range 1-100"),
                );
            }
            // Preferred terms may name values that are not label values: with one
            // node they can still be satisfied.
            errs.extend(validate_node_selector_term(
                &term.preference,
                false,
                &tp.child("preference"),
            ));
        }
    }
    for (field, terms) in [
        (
            "podAffinity",
            a.pod_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            a.pod_anti_affinity.as_ref().map(|p| {
                (
                    &p.required_during_scheduling_ignored_during_execution,
                    &p.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ] {
        let Some((required, preferred)) = terms else {
            continue;
        };
        let p = path.child(field);
        for (i, t) in required.iter().flatten().enumerate() {
            errs.extend(validate_pod_affinity_term(
                t,
                &p.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
            ));
        }
        errs.extend(validate_weighted_terms(
            preferred.as_deref().unwrap_or_default(),
            &p.child("preferredDuringSchedulingIgnoredDuringExecution"),
        ));
    }
    errs
}

fn validate_weighted_terms(terms: &[WeightedPodAffinityTerm], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, t) in terms.iter().enumerate() {
        let p = path.index(i);
        if !(1..=100).contains(&t.weight) {
            errs.push(
                p.child("weight")
                    .invalid(t.weight, "must be in the range 1-100"),
            );
        }
        errs.extend(validate_pod_affinity_term(
            &t.pod_affinity_term,
            &p.child("podAffinityTerm"),
        ));
    }
    errs
}

/// A node selector (required node affinity): at least one term, each valid.
pub fn validate_node_selector(sel: &NodeSelector, path: &Path) -> FieldErrors {
    let tp = path.child("nodeSelectorTerms");
    if sel.node_selector_terms.is_empty() {
        return vec![tp.required("must have at least one node selector term")];
    }
    sel.node_selector_terms
        .iter()
        .enumerate()
        .flat_map(|(i, t)| validate_node_selector_term(t, true, &tp.index(i)))
        .collect()
}

fn validate_node_selector_term(
    term: &NodeSelectorTerm,
    check_values: bool,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_node_selector_requirement(
            req,
            check_values,
            &path.child("matchExpressions").index(j),
        ));
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        let p = path.child("matchFields").index(j);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    errs.push(p.child("values").required(
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => errs.push(
                p.child("operator")
                    .invalid(other, "not a valid selector operator"),
            ),
        }
        if req.key != "metadata.name" {
            errs.push(
                p.child("key")
                    .invalid(&req.key, "not a valid field selector key"),
            );
        } else {
            for (k, v) in values.iter().enumerate() {
                for m in name_is_dns_subdomain(v, false) {
                    errs.push(p.child("values").index(k).invalid(v, m));
                }
            }
        }
    }
    errs
}

fn validate_node_selector_requirement(
    req: &NodeSelectorRequirement,
    check_values: bool,
    path: &Path,
) -> FieldErrors {
    let values = req.values.as_deref().unwrap_or_default();
    let mut errs = match (
        req.operator.as_str(),
        set_operator_values(&req.operator, values, path),
    ) {
        (_, Some(errs)) => errs,
        ("Gt" | "Lt", None) if values.len() != 1 => vec![path
            .child("values")
            .required("must be specified single value when `operator` is 'Lt' or 'Gt'")],
        ("Gt" | "Lt", None) => Vec::new(),
        (other, None) => vec![path
            .child("operator")
            .invalid(other, "not a valid selector operator")],
    };
    errs.extend(validate_label_name(&req.key, &path.child("key")));
    if check_values {
        for (i, v) in values.iter().enumerate() {
            for m in is_label_value(v) {
                errs.push(path.child("values").index(i).invalid(v, m));
            }
        }
    }
    errs
}

fn validate_pod_affinity_term(t: &PodAffinityTerm, path: &Path) -> FieldErrors {
    let mut errs = validate_label_selector(t.label_selector.as_ref(), &path.child("labelSelector"));
    errs.extend(validate_label_selector(
        t.namespace_selector.as_ref(),
        &path.child("namespaceSelector"),
    ));
    for ns in t.namespaces.iter().flatten() {
        for m in name_is_dns_label(ns, false) {
            errs.push(path.child("namespace").invalid(ns, m));
        }
    }
    errs.extend(validate_match_label_keys(
        path,
        t.match_label_keys.as_deref().unwrap_or_default(),
        t.mismatch_label_keys.as_deref().unwrap_or_default(),
        t.label_selector.as_ref(),
    ));
    if t.topology_key.is_empty() {
        errs.push(path.child("topologyKey").required("can not be empty"));
    }
    errs.extend(validate_label_name(
        &t.topology_key,
        &path.child("topologyKey"),
    ));
    errs
}

fn selector_keys(sel: &LabelSelector) -> BTreeSet<&str> {
    sel.match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .chain(
            sel.match_expressions
                .iter()
                .flatten()
                .map(|e| e.key.as_str()),
        )
        .collect()
}

fn validate_match_label_keys(
    path: &Path,
    match_keys: &[String],
    mismatch_keys: &[String],
    selector: Option<&LabelSelector>,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (field, keys) in [
        ("matchLabelKeys", match_keys),
        ("mismatchLabelKeys", mismatch_keys),
    ] {
        if keys.is_empty() {
            continue;
        }
        if selector.is_none() {
            errs.push(
                path.child(field)
                    .forbidden("must not be specified when labelSelector is not set"),
            );
            continue;
        }
        for (i, k) in keys.iter().enumerate() {
            errs.extend(validate_label_name(k, &path.child(field).index(i)));
        }
    }
    let mismatch: BTreeSet<&String> = mismatch_keys.iter().collect();
    for (i, k) in match_keys.iter().enumerate() {
        if mismatch.contains(k) {
            errs.push(
                path.child("matchLabelKeys")
                    .index(i)
                    .invalid(k, "exists in both matchLabelKeys and mismatchLabelKeys"),
            );
        }
    }
    errs
}

/// Spread constraints: `maxSkew > 0`, a topology key, a known `whenUnsatisfiable`,
/// no two with the same key and action, `minDomains > 0` and only with
/// `DoNotSchedule`, valid node inclusion policies, `matchLabelKeys` and selector.
pub fn validate_topology_spread_constraints(
    constraints: &[TopologySpreadConstraint],
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        if c.max_skew <= 0 {
            errs.push(p.child("maxSkew").invalid(c.max_skew, IS_NOT_POSITIVE));
        }
        if c.topology_key.is_empty() {
            errs.push(p.child("topologyKey").required("can not be empty"));
        }
        if !WHEN_UNSATISFIABLE.contains(&c.when_unsatisfiable.as_str()) {
            errs.push(
                p.child("whenUnsatisfiable")
                    .not_supported(&c.when_unsatisfiable, &WHEN_UNSATISFIABLE),
            );
        }
        let repeated = constraints[i + 1..].iter().any(|o| {
            o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
        });
        if repeated {
            errs.push(
                p.child("{topologyKey, whenUnsatisfiable}")
                    .duplicate(format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable)),
            );
        }
        if let Some(min) = c.min_domains {
            if min <= 0 {
                errs.push(p.child("minDomains").invalid(min, IS_NOT_POSITIVE));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errs.push(p.child("minDomains").invalid(
                    min,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                        c.when_unsatisfiable
                    ),
                ));
            }
        }
        for (field, policy) in [
            ("nodeAffinityPolicy", &c.node_affinity_policy),
            ("nodeTaintsPolicy", &c.node_taints_policy),
        ] {
            if let Some(v) = policy.as_deref() {
                if !NODE_INCLUSION_POLICIES.contains(&v) {
                    errs.push(p.child(field).not_supported(v, &NODE_INCLUSION_POLICIES));
                }
            }
        }
        let keys = c.match_label_keys.as_deref().unwrap_or_default();
        if !keys.is_empty() {
            match &c.label_selector {
                None => errs.push(
                    p.child("matchLabelKeys")
                        .forbidden("must not be specified when labelSelector is not set"),
                ),
                Some(sel) => {
                    let in_selector = selector_keys(sel);
                    for (j, k) in keys.iter().enumerate() {
                        let kp = p.child("matchLabelKeys").index(j);
                        errs.extend(validate_label_name(k, &kp));
                        if in_selector.contains(k.as_str()) {
                            errs.push(
                                kp.invalid(k, "exists in both matchLabelKeys and labelSelector"),
                            );
                        }
                    }
                }
            }
        }
        errs.extend(validate_label_selector(
            c.label_selector.as_ref(),
            &p.child("labelSelector"),
        ));
    }
    errs
}

/// Status fields other components rely on: pod and host IPs (valid, one per family),
/// the nominated node's name.
fn validate_status(status: &PodStatus, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (field, ips) in [
        (
            "podIPs",
            status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "hostIPs",
            status
                .host_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .collect::<Vec<_>>(),
        ),
    ] {
        errs.extend(validate_ip_list(&ips, &path.child(field)));
    }
    if let Some(n) = status
        .nominated_node_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        for m in name_is_dns_subdomain(n, false) {
            errs.push(path.child("nominatedNodeName").invalid(n, m));
        }
    }
    errs
}

/// A list of IPs (pod IPs, host IPs): each valid, no duplicates, at most one per
/// family.
fn validate_ip_list(ips: &[&str], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        errs.extend(is_valid_ip(&path.index(i), ip));
    }
    if ips.len() > 1 && errs.is_empty() {
        let v4 = ips.iter().filter(|ip| !ip.contains(':')).count();
        if ips.len() > 2 || v4 != 1 {
            errs.push(path.invalid(ips, "may specify no more than one IP for each IP family"));
        }
        let mut seen = BTreeSet::new();
        for (i, ip) in ips.iter().enumerate() {
            if !seen.insert(*ip) {
                errs.push(path.index(i).duplicate(ip));
            }
        }
    }
    errs
}

/// What a pod update may change: images, a shorter active deadline, added
/// tolerations, removed scheduling gates, the node once (binding). Anything else is
/// refused with the API server's message and a list of the differences.
fn validate_update(new: &PodSpec, old: &PodSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let empty = Vec::new();
    let new_init = new.init_containers.as_ref().unwrap_or(&empty);
    let old_init = old.init_containers.as_ref().unwrap_or(&empty);
    for (field, n, o) in [
        ("containers", &new.containers, &old.containers),
        ("initContainers", new_init, old_init),
    ] {
        if n.len() != o.len() {
            errs.push(
                path.child(field)
                    .forbidden("pod updates may not add or remove containers"),
            );
            return errs;
        }
    }

    let deadline_path = path.child("activeDeadlineSeconds");
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(deadline_path.invalid(n, inclusive_range_error(0, i64::from(i32::MAX))));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(deadline_path.invalid(n, "must be less than or equal to previous value"));
            return errs;
        }
        (None, Some(_)) => errs.push(deadline_path.invalid(
            Raw("null".into()),
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }

    // Existing tolerations stay, though their tolerationSeconds may change.
    let new_tolerations = new.tolerations.as_deref().unwrap_or_default();
    for o in old.tolerations.iter().flatten() {
        let kept = new_tolerations.iter().any(|n| {
            let mut o = o.clone();
            o.toleration_seconds = n.toleration_seconds;
            &o == n
        });
        if !kept {
            errs.push(
                path.child("tolerations").forbidden(
                    "existing toleration can not be modified except its tolerationSeconds",
                ),
            );
            break;
        }
    }

    let old_gates: BTreeSet<&str> = old
        .scheduling_gates
        .iter()
        .flatten()
        .map(|g| g.name.as_str())
        .collect();
    for (i, g) in new.scheduling_gates.iter().flatten().enumerate() {
        if !old_gates.contains(g.name.as_str()) {
            errs.push(
                path.child("schedulingGates")
                    .index(i)
                    .child("name")
                    .forbidden(format!(
                        "only deletion is allowed, but found new scheduling gate '{}'",
                        g.name
                    )),
            );
        }
    }

    let binding = !has_node_name(old) && has_node_name(new);
    if binding && has_scheduling_gates(new) {
        errs.push(
            path.child("nodeName")
                .forbidden("cannot be set until all schedulingGates have been cleared"),
        );
    }

    if new == old {
        return errs;
    }
    let mut munged = new.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&o.image);
    }
    for (c, o) in munged
        .init_containers
        .iter_mut()
        .flatten()
        .zip(old_init.iter())
    {
        c.image.clone_from(&o.image);
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.scheduling_gates.clone_from(&old.scheduling_gates);
    munged.tolerations.clone_from(&old.tolerations);
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if binding {
        munged.node_name.clone_from(&old.node_name);
    }
    if munged != *old {
        let diff = spec_diff(old, &munged);
        errs.push(path.forbidden(format!(
            "pod updates may not change fields other than {}\n{}",
            UPDATABLE_POD_SPEC_FIELDS.join(","),
            diff
        )));
    }
    errs
}

/// The leaves that differ between two specs, one `spec.x.y: old -> new` line each
/// (the API server prints a Go diff there; this is the same information).
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return String::new();
    };
    let mut lines = Vec::new();
    json_diff(&a, &b, "spec".to_string(), &mut lines);
    const MAX_LINES: usize = 10;
    if lines.len() > MAX_LINES {
        let more = lines.len() - MAX_LINES;
        lines.truncate(MAX_LINES);
        lines.push(format!("  ... and {more} more"));
    }
    lines.join("\n")
}

fn json_diff(a: &serde_json::Value, b: &serde_json::Value, path: String, out: &mut Vec<String>) {
    use serde_json::Value;
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                json_diff(
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    format!("{path}.{k}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                json_diff(p, q, format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(format!("  {path}: {a} -> {b}")),
    }
}
