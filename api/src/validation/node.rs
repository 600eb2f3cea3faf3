//! Node rules (`ValidateNode`, `ValidateNodeUpdate`): taints, pod CIDRs, resource
//! quantities in status, and the fields set once (pod CIDRs, provider ID).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};

use super::meta::validate_meta;
use super::names::{
    is_label_value, is_valid_cidr, name_is_dns_subdomain, parse_cidr, validate_label_name, Raw,
};
use super::resources::validate_resource_list;
use super::{FieldErrors, Path};

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Validates a Node on create (`old == None`) or update.
pub fn validate(node: &Node, old: Option<&Node>) -> FieldErrors {
    let mut errs = validate_meta(
        &node.metadata,
        old.map(|o| &o.metadata),
        false,
        name_is_dns_subdomain,
    );
    let default = NodeSpec::default();
    let spec = node.spec.as_ref().unwrap_or(&default);
    let spec_path = Path::new("spec");
    errs.extend(validate_taints(
        spec.taints.as_deref().unwrap_or_default(),
        &spec_path.child("taints"),
    ));
    errs.extend(validate_pod_cidrs(spec, &spec_path));
    if let Some(status) = &node.status {
        let sp = Path::new("status");
        errs.extend(validate_resource_list(
            status.capacity.as_ref(),
            &sp.child("capacity"),
        ));
        errs.extend(validate_resource_list(
            status.allocatable.as_ref(),
            &sp.child("allocatable"),
        ));
    }
    if let Some(old) = old {
        let old_spec = old.spec.as_ref().unwrap_or(&default);
        errs.extend(validate_update(node, spec, old_spec, &spec_path));
    }
    errs
}

/// Taints: key a qualified name, value a label value, effect required and known, no
/// two with the same key and effect.
pub fn validate_taints(taints: &[Taint], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_label_name(&t.key, &p.child("key")));
        let value = t.value.as_deref().unwrap_or("");
        let msgs = is_label_value(value);
        if !msgs.is_empty() {
            errs.push(p.child("value").invalid(value, msgs.join(";")));
        }
        if t.effect.is_empty() {
            errs.push(p.child("effect").required(""));
        } else if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            errs.push(p.child("effect").not_supported(&t.effect, &TAINT_EFFECTS));
        }
        if !seen.insert((t.effect.as_str(), t.key.as_str())) {
            let mut e = p.duplicate(Raw(format!(
                "{{key: {:?}, value: {value:?}, effect: {:?}}}",
                t.key, t.effect
            )));
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    errs
}

/// Pod CIDRs: valid, `podCIDRs[0]` the same as `podCIDR`, at most one per family,
/// no duplicates.
fn validate_pod_cidrs(spec: &NodeSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let cidrs = spec.pod_cidrs.as_deref().unwrap_or_default();
    if let Some(single) = spec.pod_cidr.as_deref().filter(|c| !c.is_empty()) {
        if cidrs.is_empty() {
            errs.extend(is_valid_cidr(&path.child("podCIDR"), single));
        } else if cidrs[0] != single {
            errs.push(
                path.child("podCIDRs")
                    .invalid(cidrs, "first value must match `podCIDR`"),
            );
        }
    }
    let p = path.child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(is_valid_cidr(&p.index(i), c));
    }
    if cidrs.len() > 1 {
        let v4 = cidrs
            .iter()
            .filter(|c| parse_cidr(c).is_some_and(|c| c.addr.is_ipv4()))
            .count();
        if cidrs.len() > 2 || v4 != 1 {
            errs.push(p.invalid(
                cidrs,
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c.as_str()) {
                errs.push(p.index(i).duplicate(c));
            }
        }
    }
    errs
}

/// Pod CIDRs and provider ID are set once (by the node IPAM controller and the
/// cloud provider); status addresses are unique.
fn validate_update(node: &Node, new: &NodeSpec, old: &NodeSpec, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let old_cidrs = old.pod_cidrs.as_deref().unwrap_or_default();
    if !old_cidrs.is_empty() && old_cidrs != new.pod_cidrs.as_deref().unwrap_or_default() {
        errs.push(
            path.child("podCIDRs")
                .forbidden("node updates may not change podCIDR except from \"\" to valid"),
        );
    }
    let old_provider = old.provider_id.as_deref().unwrap_or("");
    if !old_provider.is_empty() && Some(old_provider) != new.provider_id.as_deref() {
        errs.push(
            path.child("providerID")
                .forbidden("node updates may not change providerID except from \"\" to valid"),
        );
    }
    if new.external_id != old.external_id {
        errs.push(path.child("externalID").forbidden("may not be updated"));
    }
    let mut seen = BTreeSet::new();
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref());
    for (i, a) in addresses.unwrap_or_default().iter().enumerate() {
        if !seen.insert((a.type_.as_str(), a.address.as_str())) {
            errs.push(
                Path::new("status")
                    .child("addresses")
                    .index(i)
                    .duplicate(Raw(format!(
                        "{{type: {:?}, address: {:?}}}",
                        a.type_, a.address
                    ))),
            );
        }
    }
    errs
}
