//! Defaulting as the API server's defaulting functions do it (`pkg/apis/core/v1`,
//! `discovery/v1`, `scheduling/v1` `defaults.go`), run by the client before
//! validation on every create and update. A default never overwrites a value the
//! user gave, so defaulting twice changes nothing.
//!
//! Defaults that need other objects (a pod's priority from its PriorityClass, a
//! Service's cluster IPs and `ipFamilyPolicy`) are the client's and the allocator's.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, ConfigMap, Container, ContainerPort, EnvVar, HTTPGetAction, Namespace, Node,
    Pod, PodSpec, Probe, Service, SessionAffinityConfig, Volume,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The scheduler a pod gets when it names none.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Seconds a pod gets to stop before it is killed.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// ClientIP session affinity's default timeout (3 hours).
pub const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS: i32 = 10800;
/// The file mode projected and config volumes get (0644).
const DEFAULT_VOLUME_MODE: i32 = 0o644;

fn set<T>(field: &mut Option<T>, value: impl FnOnce() -> T) {
    if field.is_none() {
        *field = Some(value());
    }
}

fn set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

/// Sets a Namespace's defaults: the immutable `kubernetes.io/metadata.name` label
/// (which namespace selectors rely on), the `kubernetes` finalizer and phase Active.
pub fn namespace(obj: &mut Namespace) {
    if let Some(name) = obj.metadata.name.clone() {
        obj.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".into(), name);
    }
    let spec = obj.spec.get_or_insert_with(Default::default);
    set(&mut spec.finalizers, || vec!["kubernetes".into()]);
    let status = obj.status.get_or_insert_with(Default::default);
    set_str(&mut status.phase, "Active");
}

/// Sets a Node's defaults: allocatable is the capacity when the node reports none.
pub fn node(obj: &mut Node) {
    if let Some(status) = obj.status.as_mut() {
        if status.allocatable.is_none() {
            status.allocatable = status.capacity.clone();
        }
    }
}

/// Sets a Pod's defaults: the spec's (scheduler, restart and DNS policy, grace
/// period, security context, service links), each container's (pull policy,
/// termination message, port protocols, probes, requests from limits), volumes',
/// and phase Pending for a pod with no status yet.
pub fn pod(obj: &mut Pod) {
    let spec = obj.spec.get_or_insert_with(Default::default);
    pod_spec(spec);
    let status = obj.status.get_or_insert_with(Default::default);
    set_str(&mut status.phase, "Pending");
}

/// Defaults of a pod spec (also for specs embedded in workload templates).
pub fn pod_spec(spec: &mut PodSpec) {
    set_str(&mut spec.dns_policy, "ClusterFirst");
    set_str(&mut spec.restart_policy, "Always");
    set(&mut spec.security_context, Default::default);
    set(&mut spec.termination_grace_period_seconds, || {
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    });
    set_str(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    set(&mut spec.enable_service_links, || true);
    let host_network = spec.host_network == Some(true);
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

fn container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let policy = match c.image.as_deref() {
            Some(image) if pulls_always(image) => "Always",
            Some(_) => "IfNotPresent",
            None => "Always",
        };
        c.image_pull_policy = Some(policy.into());
    }
    set_str(&mut c.termination_message_path, "/dev/termination-log");
    set_str(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        container_port(p, host_network);
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        self::probe(probe);
    }
    for handler in c
        .lifecycle
        .iter_mut()
        .flat_map(|l| [l.post_start.as_mut(), l.pre_stop.as_mut()])
        .flatten()
    {
        if let Some(h) = handler.http_get.as_mut() {
            http_get(h);
        }
    }
    for e in c.env.iter_mut().flatten() {
        env_var(e);
    }
    // Requests default to the limits for every resource that has only a limit.
    if let Some(resources) = c.resources.as_mut() {
        if let Some(limits) = resources.limits.clone() {
            let requests = resources.requests.get_or_insert_with(BTreeMap::new);
            for (name, q) in limits {
                requests.entry(name).or_insert(q);
            }
        }
    }
}

/// An image pulls `Always` when it has no tag (or `latest`) and no digest.
fn pulls_always(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    // The tag follows the last ':' after the last '/' (a registry port is not one).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

fn container_port(p: &mut ContainerPort, host_network: bool) {
    set_str(&mut p.protocol, "TCP");
    if host_network && p.host_port.unwrap_or(0) == 0 {
        p.host_port = Some(p.container_port);
    }
}

fn probe(p: &mut Probe) {
    set(&mut p.timeout_seconds, || 1);
    set(&mut p.period_seconds, || 10);
    set(&mut p.success_threshold, || 1);
    set(&mut p.failure_threshold, || 3);
    if let Some(h) = p.http_get.as_mut() {
        http_get(h);
    }
}

fn http_get(h: &mut HTTPGetAction) {
    set_str(&mut h.path, "/");
    set_str(&mut h.scheme, "HTTP");
}

fn env_var(e: &mut EnvVar) {
    if let Some(field) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
        set_str(&mut field.api_version, "v1");
    }
}

fn volume(v: &mut Volume) {
    // A volume with no source at all is an emptyDir.
    let has_source = serde_json::to_value(&*v)
        .ok()
        .and_then(|j| j.as_object().map(|o| o.keys().any(|k| k != "name")))
        .unwrap_or(true);
    if !has_source {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.config_map.as_mut() {
        set(&mut s.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.secret.as_mut() {
        set(&mut s.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.projected.as_mut() {
        set(&mut s.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.downward_api.as_mut() {
        set(&mut s.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.host_path.as_mut() {
        set(&mut s.type_, String::new);
    }
}

/// Sets a Service's defaults: type ClusterIP, session affinity None (ClientIP gets
/// its 3-hour timeout), port protocol TCP and targetPort = port, internal traffic
/// policy Cluster, and for NodePort and LoadBalancer external traffic policy Cluster.
pub fn service(obj: &mut Service) {
    let spec = obj.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.type_, "ClusterIP");
    set_str(&mut spec.session_affinity, "None");
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let config = spec
            .session_affinity_config
            .get_or_insert_with(SessionAffinityConfig::default);
        let client_ip = config.client_ip.get_or_insert_with(ClientIPConfig::default);
        set(&mut client_ip.timeout_seconds, || {
            DEFAULT_CLIENT_IP_TIMEOUT_SECONDS
        });
    }
    for p in spec.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    let ty = spec.type_.as_deref().unwrap_or_default().to_string();
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        set_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if ty != "ExternalName" {
        set_str(&mut spec.internal_traffic_policy, "Cluster");
    }
    if ty == "LoadBalancer" {
        set(&mut spec.allocate_load_balancer_node_ports, || true);
    }
}

/// ConfigMaps have no defaults.
pub fn config_map(_obj: &mut ConfigMap) {}

/// Sets an EndpointSlice's defaults: each port gets an empty name and protocol TCP.
pub fn endpoint_slice(obj: &mut EndpointSlice) {
    for p in obj.ports.iter_mut().flatten() {
        set(&mut p.name, String::new);
        set_str(&mut p.protocol, "TCP");
    }
}

/// Leases have no defaults.
pub fn lease(_obj: &mut Lease) {}

/// Sets a PriorityClass's defaults: preemption policy PreemptLowerPriority.
pub fn priority_class(obj: &mut PriorityClass) {
    set_str(&mut obj.preemption_policy, "PreemptLowerPriority");
}

/// IPAddresses have no defaults.
pub fn ip_address(_obj: &mut IPAddress) {}

/// Sets an Event's defaults: type Normal, count 1.
pub fn event(obj: &mut k8s_openapi::api::core::v1::Event) {
    set_str(&mut obj.type_, "Normal");
    set(&mut obj.count, || 1);
}

/// ServiceCIDRs have no defaults.
pub fn service_cidr(_obj: &mut ServiceCIDR) {}
