//! EndpointSlice rules (`pkg/apis/discovery/validation`): the address type, at most
//! 1000 endpoints of 1 to 100 addresses valid for that type, hostnames, node names,
//! zones and topology hints, and at most 20000 uniquely named ports.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointPort, EndpointSlice};

use super::meta::validate_meta;
use super::names::{
    is_fully_qualified_domain_name, is_label_value, is_valid_ip, is_valid_port_num,
    name_is_dns_subdomain, parse_ip, validate_dns1123_label, validate_endpoint_ip, validate_labels,
    validate_qualified_name, FIELD_IMMUTABLE_ERROR,
};
use super::pod::PROTOCOLS;
use super::{FieldErrors, Path};

const ADDRESS_TYPES: [&str; 3] = ["FQDN", "IPv4", "IPv6"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
const MAX_TOPOLOGY_LABELS: usize = 16;
const MAX_ZONE_HINTS: usize = 8;
const MAX_NODE_HINTS: usize = 8;

/// Validates an EndpointSlice on create (`old == None`) or update.
pub fn validate(slice: &EndpointSlice, old: Option<&EndpointSlice>) -> FieldErrors {
    let mut errs = validate_meta(
        &slice.metadata,
        old.map(|o| &o.metadata),
        true,
        name_is_dns_subdomain,
    );
    let address_type = slice.address_type.as_str();
    let type_path = Path::new("addressType");
    if address_type.is_empty() {
        errs.push(type_path.required(""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errs.push(type_path.not_supported(address_type, &ADDRESS_TYPES));
    }
    errs.extend(validate_endpoints(
        slice.endpoints.as_deref().unwrap_or_default(),
        address_type,
        &Path::new("endpoints"),
    ));
    errs.extend(validate_ports(
        slice.ports.as_deref().unwrap_or_default(),
        &Path::new("ports"),
    ));
    if let Some(old) = old {
        if old.address_type != slice.address_type {
            errs.push(type_path.invalid(address_type, FIELD_IMMUTABLE_ERROR));
        }
    }
    errs
}

fn validate_endpoints(endpoints: &[Endpoint], address_type: &str, path: &Path) -> FieldErrors {
    if endpoints.len() > MAX_ENDPOINTS {
        return vec![path.too_many(endpoints.len(), MAX_ENDPOINTS)];
    }
    let mut errs = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let p = path.index(i);
        let ap = p.child("addresses");
        if ep.addresses.is_empty() {
            errs.push(ap.required("must contain at least 1 address"));
        } else if ep.addresses.len() > MAX_ADDRESSES {
            errs.push(ap.too_many(ep.addresses.len(), MAX_ADDRESSES));
        }
        for (j, addr) in ep.addresses.iter().enumerate() {
            errs.extend(validate_address(addr, address_type, &ap.index(j)));
        }
        if let Some(node) = ep.node_name.as_deref() {
            for m in name_is_dns_subdomain(node, false) {
                errs.push(p.child("nodeName").invalid(node, m));
            }
        }
        if let Some(zone) = ep.zone.as_deref() {
            for m in is_label_value(zone) {
                errs.push(p.child("zone").invalid(zone, m));
            }
        }
        let topology = ep.deprecated_topology.as_ref();
        let tp = p.child("deprecatedTopology");
        if let Some(t) = topology.filter(|t| t.len() > MAX_TOPOLOGY_LABELS) {
            errs.push(tp.too_many(t.len(), MAX_TOPOLOGY_LABELS));
        }
        errs.extend(validate_labels(topology, &tp));
        if let Some(h) = ep.hostname.as_deref() {
            errs.extend(validate_dns1123_label(h, &p.child("hostname")));
        }
        if let Some(hints) = &ep.hints {
            errs.extend(validate_hints(hints, &p.child("hints")));
        }
    }
    errs
}

/// An address of the slice's type; unknown types are left alone (the type itself is
/// reported).
fn validate_address(addr: &str, address_type: &str, path: &Path) -> FieldErrors {
    match address_type {
        "IPv4" | "IPv6" => {
            let want_v6 = address_type == "IPv6";
            let errs = is_valid_ip(path, addr);
            if !errs.is_empty() {
                return errs;
            }
            if parse_ip(addr).is_some_and(|ip| ip.is_ipv6() != want_v6) {
                return vec![path.invalid(addr, format!("must be a valid {address_type} address"))];
            }
            validate_endpoint_ip(path, addr)
        }
        "FQDN" => is_fully_qualified_domain_name(path, addr),
        _ => Vec::new(),
    }
}

fn validate_hints(hints: &EndpointHints, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let zones = hints.for_zones.as_deref().unwrap_or_default();
    let zp = path.child("forZones");
    if zones.len() > MAX_ZONE_HINTS {
        errs.push(zp.too_many(zones.len(), MAX_ZONE_HINTS));
    } else {
        let mut seen = BTreeSet::new();
        for (i, z) in zones.iter().enumerate() {
            let p = zp.index(i).child("name");
            if !seen.insert(z.name.as_str()) {
                errs.push(p.duplicate(&z.name));
            }
            for m in is_label_value(&z.name) {
                errs.push(p.invalid(&z.name, m));
            }
        }
    }
    let nodes = hints.for_nodes.as_deref().unwrap_or_default();
    let np = path.child("forNodes");
    if nodes.len() > MAX_NODE_HINTS {
        errs.push(np.too_many(nodes.len(), MAX_NODE_HINTS));
    } else {
        let mut seen = BTreeSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let p = np.index(i).child("name");
            if !seen.insert(n.name.as_str()) {
                errs.push(p.duplicate(&n.name));
            }
            for m in name_is_dns_subdomain(&n.name, false) {
                errs.push(p.invalid(&n.name, m));
            }
        }
    }
    errs
}

fn validate_ports(ports: &[EndpointPort], path: &Path) -> FieldErrors {
    if ports.len() > MAX_PORTS {
        return vec![path.too_many(ports.len(), MAX_PORTS)];
    }
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            errs.extend(validate_dns1123_label(name, &p.child("name")));
        }
        if !names.insert(name) {
            errs.push(p.child("name").duplicate(name));
        }
        if let Some(n) = port.port {
            for m in is_valid_port_num(i64::from(n)) {
                errs.push(p.child("port").invalid(n, m));
            }
        }
        match port.protocol.as_deref() {
            None => errs.push(p.child("protocol").required("")),
            Some(proto) if !PROTOCOLS.contains(&proto) => {
                errs.push(p.child("protocol").not_supported(proto, &PROTOCOLS));
            }
            Some(_) => {}
        }
        if let Some(ap) = port.app_protocol.as_deref() {
            errs.extend(validate_qualified_name(ap, &p.child("appProtocol")));
        }
    }
    errs
}
