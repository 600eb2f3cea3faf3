//! One validation entry point per kind, as the client calls them. The large kinds
//! (Pod, Service, Node, EndpointSlice) have their own modules; the small ones are
//! here: Namespace, ConfigMap, Lease, PriorityClass, IPAddress and ServiceCIDR.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::meta::{validate_finalizers, validate_meta};
use super::names::{
    is_config_map_key, is_valid_cidr, name_is_dns_label, name_is_dns_subdomain, parse_cidr,
    parse_ip, Raw, FIELD_IMMUTABLE_ERROR,
};
use super::{endpoint_slice as slice_rules, node as node_rules, pod as pod_rules};
use super::{service as service_rules, FieldErrors, Path};

/// Most bytes a ConfigMap's data and binaryData may hold together.
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;
/// The highest priority a user-defined PriorityClass may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The priority of `system-cluster-critical`.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2 * HIGHEST_USER_DEFINABLE_PRIORITY;
/// The PriorityClasses Kubernetes itself defines, with their values.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i32); 2] = [
    ("system-cluster-critical", SYSTEM_CRITICAL_PRIORITY),
    ("system-node-critical", SYSTEM_CRITICAL_PRIORITY + 1000),
];
const PREEMPTION_POLICIES: [&str; 2] = ["Never", "PreemptLowerPriority"];

/// Validates a Namespace on create (`old == None`) or update.
pub fn namespace(obj: &Namespace, old: Option<&Namespace>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        false,
        name_is_dns_label,
    );
    let finalizers = obj
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_deref())
        .unwrap_or_default();
    errs.extend(validate_finalizers(
        finalizers,
        &Path::new("spec").child("finalizers"),
    ));
    errs
}

/// Validates a Node on create (`old == None`) or update.
pub fn node(obj: &Node, old: Option<&Node>) -> FieldErrors {
    node_rules::validate(obj, old)
}

/// Validates a Pod on create (`old == None`) or update.
pub fn pod(obj: &Pod, old: Option<&Pod>) -> FieldErrors {
    pod_rules::validate(obj, old)
}

/// Validates a Service on create (`old == None`) or update.
pub fn service(obj: &Service, old: Option<&Service>) -> FieldErrors {
    service_rules::validate(obj, old)
}

/// Validates an EndpointSlice on create (`old == None`) or update.
pub fn endpoint_slice(obj: &EndpointSlice, old: Option<&EndpointSlice>) -> FieldErrors {
    slice_rules::validate(obj, old)
}

/// Validates a ConfigMap on create (`old == None`) or update: keys are config keys,
/// no key is in both `data` and `binaryData`, everything together fits in 1 MiB, and
/// an immutable ConfigMap keeps its data.
pub fn config_map(obj: &ConfigMap, old: Option<&ConfigMap>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        true,
        name_is_dns_subdomain,
    );
    let mut total = 0;
    for (key, value) in obj.data.iter().flatten() {
        for m in is_config_map_key(key) {
            errs.push(Path::new("data").key(key).invalid(key, m));
        }
        if obj
            .binary_data
            .as_ref()
            .is_some_and(|b| b.contains_key(key))
        {
            errs.push(
                Path::new("data")
                    .key(key)
                    .invalid(key, "duplicate of key present in binaryData"),
            );
        }
        total += value.len();
    }
    for (key, value) in obj.binary_data.iter().flatten() {
        for m in is_config_map_key(key) {
            errs.push(Path::new("binaryData").key(key).invalid(key, m));
        }
        total += value.0.len();
    }
    if total > MAX_CONFIG_MAP_BYTES {
        errs.push(Path::new("").too_long(Raw(String::new()), MAX_CONFIG_MAP_BYTES));
    }
    if let Some(old) = old {
        if old.immutable == Some(true) {
            if obj.immutable != Some(true) {
                errs.push(
                    Path::new("immutable").forbidden("field is immutable when `immutable` is set"),
                );
            }
            if obj.data != old.data {
                errs.push(
                    Path::new("data").forbidden("field is immutable when `immutable` is set"),
                );
            }
            if obj.binary_data != old.binary_data {
                errs.push(
                    Path::new("binaryData").forbidden("field is immutable when `immutable` is set"),
                );
            }
        }
    }
    errs
}

/// Validates a Lease on create (`old == None`) or update: durations positive,
/// transitions not negative, a known coordination strategy.
pub fn lease(obj: &Lease, old: Option<&Lease>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        true,
        name_is_dns_subdomain,
    );
    let spec_path = Path::new("spec");
    if let Some(spec) = &obj.spec {
        if let Some(d) = spec.lease_duration_seconds.filter(|d| *d <= 0) {
            errs.push(
                spec_path
                    .child("leaseDurationSeconds")
                    .invalid(d, "must be greater than 0"),
            );
        }
        if let Some(t) = spec.lease_transitions.filter(|t| *t < 0) {
            errs.push(
                spec_path
                    .child("leaseTransitions")
                    .invalid(t, "must be greater than or equal to 0"),
            );
        }
        if let Some(s) = spec.strategy.as_deref() {
            if s != "OldestEmulationVersion" {
                errs.push(
                    spec_path
                        .child("strategy")
                        .not_supported(s, &["OldestEmulationVersion"]),
                );
            }
        } else if spec.preferred_holder.is_some() {
            errs.push(
                spec_path
                    .child("preferredHolder")
                    .forbidden("may only be specified if `strategy` is defined"),
            );
        }
    }
    errs
}

/// Validates a PriorityClass on create (`old == None`) or update: the `system-`
/// prefix is reserved for Kubernetes' own classes (with their values), user classes
/// stay at or below 1,000,000,000, and value and preemption policy never change.
pub fn priority_class(obj: &PriorityClass, old: Option<&PriorityClass>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        false,
        name_is_dns_subdomain,
    );
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let value = obj.value.unwrap_or_default();
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
        Some((_, fixed)) if value != *fixed => errs.push(Path::new("metadata").child("name").invalid(
            name,
            format!("priority class {name} can only have value {fixed}"),
        )),
        Some(_) => {}
        None if name.starts_with("system-") => errs.push(
            Path::new("metadata").child("name").invalid(
                name,
                "priority class names with 'system-' prefix are reserved for system use only",
            ),
        ),
        None if value > HIGHEST_USER_DEFINABLE_PRIORITY => errs.push(
            Path::new("value").forbidden(format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            )),
        ),
        None => {}
    }
    if let Some(p) = obj.preemption_policy.as_deref() {
        if !PREEMPTION_POLICIES.contains(&p) {
            errs.push(Path::new("preemptionPolicy").not_supported(p, &PREEMPTION_POLICIES));
        }
    }
    if let Some(old) = old {
        if obj.value != old.value {
            errs.push(Path::new("value").forbidden("may not be changed in an update."));
        }
        if obj.preemption_policy != old.preemption_policy {
            errs.push(Path::new("preemptionPolicy").invalid(
                obj.preemption_policy.as_deref().unwrap_or_default(),
                FIELD_IMMUTABLE_ERROR,
            ));
        }
    }
    errs
}

/// Validates an IPAddress on create (`old == None`) or update: the name is an IP in
/// canonical form, the parent reference names a resource and an object, and it
/// never changes.
pub fn ip_address(obj: &IPAddress, old: Option<&IPAddress>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        false,
        canonical_ip_name,
    );
    let spec_path = Path::new("spec");
    let parent = &obj.spec.parent_ref;
    let p = spec_path.child("parentRef");
    if parent.resource.is_empty() {
        errs.push(p.child("resource").required(""));
    }
    if parent.name.is_empty() {
        errs.push(p.child("name").required(""));
    }
    if old.is_some_and(|old| old.spec.parent_ref != *parent) {
        errs.push(p.invalid(Raw(String::new()), FIELD_IMMUTABLE_ERROR));
    }
    errs
}

/// An IPAddress is named after its address, spelled canonically.
fn canonical_ip_name(name: &str, _prefix: bool) -> Vec<String> {
    match parse_ip(name) {
        None => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
        Some(ip) if ip.to_string() != name => {
            vec![format!("must be in canonical form ({:?})", ip.to_string())]
        }
        Some(_) => Vec::new(),
    }
}

/// Validates a ServiceCIDR on create (`old == None`) or update: one or two canonical
/// CIDRs, two only when of different families; on update a single-stack range may
/// gain its second family, nothing else changes.
pub fn service_cidr(obj: &ServiceCIDR, old: Option<&ServiceCIDR>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        false,
        name_is_dns_subdomain,
    );
    let path = Path::new("spec").child("cidrs");
    let cidrs = obj
        .spec
        .as_ref()
        .and_then(|s| s.cidrs.as_deref())
        .unwrap_or_default();
    match cidrs.len() {
        0 => errs.push(path.required("at least one CIDR required")),
        1 | 2 => {
            for (i, c) in cidrs.iter().enumerate() {
                errs.extend(is_valid_cidr(&path.index(i), c));
            }
            if cidrs.len() == 2 {
                let v4 = |c: &String| parse_cidr(c).map(|c| c.addr.is_ipv4());
                if let (Some(a), Some(b)) = (v4(&cidrs[0]), v4(&cidrs[1])) {
                    if a == b {
                        errs.push(path.invalid(
                            Raw(format!("{cidrs:?}")),
                            "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
                        ));
                    }
                }
            }
        }
        n => errs.push(path.too_many(n, 2)),
    }
    if let Some(old) = old {
        let old_cidrs = old
            .spec
            .as_ref()
            .and_then(|s| s.cidrs.as_deref())
            .unwrap_or_default();
        let grew = old_cidrs.len() == 1 && cidrs.len() == 2 && cidrs[0] == old_cidrs[0];
        if cidrs != old_cidrs && !grew {
            errs.push(path.invalid(Raw(format!("{cidrs:?}")), FIELD_IMMUTABLE_ERROR));
        }
    }
    errs
}

/// Longest event reason.
const MAX_EVENT_REASON: usize = 128;
/// Longest event message the API server accepts from a recorder (client-go
/// truncates to 1024 before sending; the server allows up to 4096 for old clients).
const MAX_EVENT_MESSAGE: usize = 4096;

/// Validates an Event on create (`old == None`) or update: it lives in its
/// object's namespace (or `default` for cluster-scoped objects), with a known type
/// and bounded reason and message.
pub fn event(obj: &Event, old: Option<&Event>) -> FieldErrors {
    let mut errs = validate_meta(
        &obj.metadata,
        old.map(|o| &o.metadata),
        true,
        name_is_dns_subdomain,
    );
    let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
    let involved = obj.involved_object.namespace.as_deref().unwrap_or_default();
    if !involved.is_empty() && involved != ns {
        errs.push(
            Path::new("involvedObject")
                .child("namespace")
                .invalid(involved, "does not match event.namespace"),
        );
    }
    if obj
        .involved_object
        .name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(Path::new("involvedObject").child("name").required(""));
    }
    if let Some(t) = obj.type_.as_deref() {
        if t != "Normal" && t != "Warning" {
            errs.push(Path::new("type").not_supported(t, &["Normal", "Warning"]));
        }
    }
    if let Some(r) = obj.reason.as_deref().filter(|r| r.len() > MAX_EVENT_REASON) {
        errs.push(Path::new("reason").too_long(r, MAX_EVENT_REASON));
    }
    if let Some(m) = obj
        .message
        .as_deref()
        .filter(|m| m.len() > MAX_EVENT_MESSAGE)
    {
        errs.push(
            Path::new("message").too_long(Raw(format!("{} bytes", m.len())), MAX_EVENT_MESSAGE),
        );
    }
    errs
}
