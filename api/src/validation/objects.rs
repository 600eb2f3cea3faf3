//! Per-kind validation (TODO: being written).

use super::FieldErrors;

/// Validates a Namespace on create (`old == None`) or update.
pub fn namespace(
    _obj: &k8s_openapi::api::core::v1::Namespace,
    _old: Option<&k8s_openapi::api::core::v1::Namespace>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a Node on create (`old == None`) or update.
pub fn node(
    _obj: &k8s_openapi::api::core::v1::Node,
    _old: Option<&k8s_openapi::api::core::v1::Node>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a Pod on create (`old == None`) or update.
pub fn pod(
    _obj: &k8s_openapi::api::core::v1::Pod,
    _old: Option<&k8s_openapi::api::core::v1::Pod>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a Service on create (`old == None`) or update.
pub fn service(
    _obj: &k8s_openapi::api::core::v1::Service,
    _old: Option<&k8s_openapi::api::core::v1::Service>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a ConfigMap on create (`old == None`) or update.
pub fn config_map(
    _obj: &k8s_openapi::api::core::v1::ConfigMap,
    _old: Option<&k8s_openapi::api::core::v1::ConfigMap>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a EndpointSlice on create (`old == None`) or update.
pub fn endpoint_slice(
    _obj: &k8s_openapi::api::discovery::v1::EndpointSlice,
    _old: Option<&k8s_openapi::api::discovery::v1::EndpointSlice>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a Lease on create (`old == None`) or update.
pub fn lease(
    _obj: &k8s_openapi::api::coordination::v1::Lease,
    _old: Option<&k8s_openapi::api::coordination::v1::Lease>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a PriorityClass on create (`old == None`) or update.
pub fn priority_class(
    _obj: &k8s_openapi::api::scheduling::v1::PriorityClass,
    _old: Option<&k8s_openapi::api::scheduling::v1::PriorityClass>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a IPAddress on create (`old == None`) or update.
pub fn ip_address(
    _obj: &k8s_openapi::api::networking::v1::IPAddress,
    _old: Option<&k8s_openapi::api::networking::v1::IPAddress>,
) -> FieldErrors {
    Vec::new()
}

/// Validates a ServiceCIDR on create (`old == None`) or update.
pub fn service_cidr(
    _obj: &k8s_openapi::api::networking::v1::ServiceCIDR,
    _old: Option<&k8s_openapi::api::networking::v1::ServiceCIDR>,
) -> FieldErrors {
    Vec::new()
}
