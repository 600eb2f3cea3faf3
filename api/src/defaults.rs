//! Defaulting as the API server's defaulting functions do it (TODO: being written).

/// Sets a Namespace's defaults: the immutable `kubernetes.io/metadata.name` label
/// (which namespace selectors rely on), the `kubernetes` finalizer and phase Active.
pub fn namespace(obj: &mut k8s_openapi::api::core::v1::Namespace) {
    if let Some(name) = obj.metadata.name.clone() {
        obj.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("kubernetes.io/metadata.name".into(), name);
    }
    let spec = obj.spec.get_or_insert_with(Default::default);
    spec.finalizers
        .get_or_insert_with(|| vec!["kubernetes".into()]);
    let status = obj.status.get_or_insert_with(Default::default);
    status.phase.get_or_insert_with(|| "Active".into());
}

/// Sets a Node's defaults.
pub fn node(_obj: &mut k8s_openapi::api::core::v1::Node) {}

/// Sets a Pod's defaults.
pub fn pod(_obj: &mut k8s_openapi::api::core::v1::Pod) {}

/// Sets a Service's defaults.
pub fn service(_obj: &mut k8s_openapi::api::core::v1::Service) {}

/// Sets a ConfigMap's defaults.
pub fn config_map(_obj: &mut k8s_openapi::api::core::v1::ConfigMap) {}

/// Sets a EndpointSlice's defaults.
pub fn endpoint_slice(_obj: &mut k8s_openapi::api::discovery::v1::EndpointSlice) {}

/// Sets a Lease's defaults.
pub fn lease(_obj: &mut k8s_openapi::api::coordination::v1::Lease) {}

/// Sets a PriorityClass's defaults.
pub fn priority_class(_obj: &mut k8s_openapi::api::scheduling::v1::PriorityClass) {}

/// Sets a IPAddress's defaults.
pub fn ip_address(_obj: &mut k8s_openapi::api::networking::v1::IPAddress) {}

/// Sets a ServiceCIDR's defaults.
pub fn service_cidr(_obj: &mut k8s_openapi::api::networking::v1::ServiceCIDR) {}
