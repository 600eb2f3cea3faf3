//! Resource names and quantities: container requests and limits, pod overhead, node
//! capacity. Quantities are strings in k8s-openapi; here they are parsed with
//! [`crate::quantity`] and compared exactly.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as OpenApiQuantity;

use super::names::{is_qualified_name, IS_NEGATIVE_ERROR};
use super::{FieldErrors, Path};
use crate::quantity::{Quantity, QUANTITY_FORMAT_ERROR};

/// Resource names a container may use without a domain prefix.
const STANDARD_CONTAINER_RESOURCES: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Whether Kubernetes defines the resource (no prefix, or a `kubernetes.io/` one).
pub fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Whether the resource is a huge page size (`hugepages-2Mi`).
pub fn is_huge_page_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Whether the resource is an extended one (`example.com/gpu`): prefixed, not native.
pub fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

/// Whether requests may be below limits for the resource (not for huge pages and
/// extended resources, which are never overcommitted).
pub fn is_overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_huge_page_resource(name)
}

/// Parses a quantity field, or the API server's format error at `path`.
pub fn parse_field(q: &OpenApiQuantity, path: &Path) -> Result<Quantity, FieldErrors> {
    Quantity::from_openapi(q).map_err(|e| {
        let detail = match e {
            crate::quantity::QuantityError::Format => QUANTITY_FORMAT_ERROR.to_string(),
            other => other.to_string(),
        };
        vec![path.invalid(&q.0, detail)]
    })
}

/// A quantity for a resource: parses, is not negative, and is whole where the
/// resource counts things (extended resources).
pub fn validate_resource_quantity(
    name: &str,
    q: &OpenApiQuantity,
    path: &Path,
) -> Result<Quantity, FieldErrors> {
    let value = parse_field(q, path)?;
    let mut errs = Vec::new();
    if value.is_negative() {
        errs.push(path.invalid(value.to_string(), IS_NEGATIVE_ERROR));
    }
    if (is_extended_resource(name) || name == "pods") && !value.is_integer() {
        errs.push(path.invalid(value.to_string(), "must be an integer"));
    }
    if errs.is_empty() {
        Ok(value)
    } else {
        Err(errs)
    }
}

/// A container resource name: a qualified name; unprefixed it must be a standard
/// container resource, prefixed and not Kubernetes' own it must be an extended one.
pub fn validate_container_resource_name(name: &str, path: &Path) -> FieldErrors {
    let errs: FieldErrors = is_qualified_name(name)
        .into_iter()
        .map(|m| path.invalid(name, m))
        .collect();
    if !errs.is_empty() {
        return errs;
    }
    if !name.contains('/') {
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_huge_page_resource(name) {
            return vec![path.invalid(name, "must be a standard resource for containers")];
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        return vec![path.invalid(name, "doesn't follow extended resource name standard")];
    }
    Vec::new()
}

/// The page size of a huge page resource, if its name carries a valid one.
fn huge_page_size(name: &str) -> Option<Quantity> {
    crate::quantity::parse_quantity(name.strip_prefix("hugepages-")?).filter(|q| !q.is_negative())
}

/// Requests and limits of a container (or a pod's overhead, as limits): names,
/// quantities, requests not above limits (equal where overcommit is not allowed),
/// and huge pages only next to cpu or memory.
pub fn validate_resource_requirements(reqs: &ResourceRequirements, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let empty = BTreeMap::new();
    let limits_raw = reqs.limits.as_ref().unwrap_or(&empty);
    let requests_raw = reqs.requests.as_ref().unwrap_or(&empty);
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let (mut cpu_or_memory, mut huge_pages) = (false, false);

    for (name, q) in limits_raw {
        let p = lim_path.key(name);
        errs.extend(validate_container_resource_name(name, &p));
        match validate_resource_quantity(name, q, &p) {
            Ok(v) => {
                errs.extend(validate_huge_page_value(name, v, &p));
                limits.insert(name, v);
            }
            Err(e) => errs.extend(e),
        }
        huge_pages |= is_huge_page_resource(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    for (name, q) in requests_raw {
        let p = req_path.key(name);
        errs.extend(validate_container_resource_name(name, &p));
        let request = match validate_resource_quantity(name, q, &p) {
            Ok(v) => v,
            Err(e) => {
                errs.extend(e);
                continue;
            }
        };
        errs.extend(validate_huge_page_value(name, request, &p));
        match limits.get(name.as_str()) {
            Some(limit) if request != *limit && !is_overcommit_allowed(name) => {
                errs.push(req_path.invalid(
                    request.to_string(),
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > *limit => {
                errs.push(req_path.invalid(
                    request.to_string(),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
            None if !limits_raw.contains_key(name) && !is_overcommit_allowed(name) => {
                errs.push(lim_path.required("Limit must be set for non overcommitable resources"));
            }
            _ => {}
        }
        huge_pages |= is_huge_page_resource(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    if huge_pages && !cpu_or_memory {
        errs.push(path.forbidden("HugePages require cpu or memory"));
    }
    errs
}

fn validate_huge_page_value(name: &str, value: Quantity, path: &Path) -> FieldErrors {
    if !is_huge_page_resource(name) {
        return Vec::new();
    }
    let divisible = huge_page_size(name).is_some_and(|size| {
        !size.is_zero() && value.as_nanos() > 0 && value.as_nanos() % size.as_nanos() == 0
    });
    if divisible {
        Vec::new()
    } else {
        vec![path.invalid(
            value.to_string(),
            format!("{value} is not positive integer multiple of {name}"),
        )]
    }
}

/// A map of quantities, like a node's `status.capacity`: each parses and is not
/// negative. Errors name `path.<resource>`, as the API server does.
pub fn validate_resource_list(
    list: Option<&BTreeMap<String, OpenApiQuantity>>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (name, q) in list.into_iter().flatten() {
        if let Err(e) = validate_resource_quantity(name, q, &path.child(name)) {
            errs.extend(e);
        }
    }
    errs
}
