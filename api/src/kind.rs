//! Kinds, typed object references and the one function that turns them into store keys.
//!
//! Keys follow Kubernetes' own etcd layout (`/registry/pods/<ns>/<name>`,
//! `/registry/services/specs/<ns>/<name>`, `/registry/minions/<name>`, ...) so that
//! tools written for a Kubernetes etcd (etcdctl, auger, backups) find objects where
//! they expect them.

use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Every key capstan writes starts with this prefix, as Kubernetes' do.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// The key recording which Service holds a node port. Kubernetes keeps one bitmap
/// (`/registry/ranges/servicenodeports`); a key per port lets an allocation be one
/// more compare-and-swap in the Service's own transaction.
pub fn node_port_key(port: i32) -> String {
    format!("{REGISTRY_PREFIX}servicenodeports/{port}")
}

/// The key holding the node port range (a `RangeAllocation`, as in Kubernetes).
pub const NODE_PORT_RANGE_KEY: &str = "/registry/ranges/servicenodeports";

/// The kinds of object the resource layer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// `v1 Namespace` (cluster-scoped).
    Namespace,
    /// `v1 Node` (cluster-scoped; stored under `minions`, as Kubernetes does).
    Node,
    /// `v1 Pod`.
    Pod,
    /// `v1 Service`.
    Service,
    /// `v1 ConfigMap`.
    ConfigMap,
    /// `discovery.k8s.io/v1 EndpointSlice`.
    EndpointSlice,
    /// `coordination.k8s.io/v1 Lease`.
    Lease,
    /// `scheduling.k8s.io/v1 PriorityClass` (cluster-scoped).
    PriorityClass,
    /// `networking.k8s.io/v1 IPAddress` (cluster-scoped): one per allocated cluster IP.
    IpAddress,
    /// `networking.k8s.io/v1 ServiceCIDR` (cluster-scoped): the ranges cluster IPs come from.
    ServiceCidr,
    /// `v1 Event`: what controllers report about an object (stored with a one-hour
    /// lease, as the API server's `--event-ttl`).
    Event,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 11] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::ConfigMap,
        Kind::EndpointSlice,
        Kind::Lease,
        Kind::PriorityClass,
        Kind::IpAddress,
        Kind::ServiceCidr,
        Kind::Event,
    ];

    /// The Kubernetes `kind` string.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::ConfigMap => "ConfigMap",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Lease => "Lease",
            Kind::PriorityClass => "PriorityClass",
            Kind::IpAddress => "IPAddress",
            Kind::ServiceCidr => "ServiceCIDR",
            Kind::Event => "Event",
        }
    }

    /// The `apiVersion` objects of this kind carry.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace
            | Kind::Node
            | Kind::Pod
            | Kind::Service
            | Kind::ConfigMap
            | Kind::Event => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::PriorityClass => "scheduling.k8s.io/v1",
            Kind::IpAddress | Kind::ServiceCidr => "networking.k8s.io/v1",
        }
    }

    /// The plural lower-case name kubectl uses (`pods`, `services`, ...).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::ConfigMap => "configmaps",
            Kind::EndpointSlice => "endpointslices",
            Kind::Lease => "leases",
            Kind::PriorityClass => "priorityclasses",
            Kind::IpAddress => "ipaddresses",
            Kind::ServiceCidr => "servicecidrs",
            Kind::Event => "events",
        }
    }

    /// The path segment under `/registry/` (Kubernetes' etcd layout).
    fn registry_segment(self) -> &'static str {
        match self {
            Kind::Node => "minions",
            Kind::Service => "services/specs",
            other => other.plural(),
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace
                | Kind::Node
                | Kind::PriorityClass
                | Kind::IpAddress
                | Kind::ServiceCidr
        )
    }

    /// Parses what a user types: kind, plural, singular or kubectl's short name,
    /// case-insensitively (`po`, `svc`, `no`, `ns`, `cm`, `endpointslice`, ...).
    pub fn parse(s: &str) -> Option<Kind> {
        let l = s.to_ascii_lowercase();
        let l = l.split('.').next().unwrap_or_default();
        Kind::ALL.into_iter().find(|k| {
            l == k.plural()
                || l == k.name().to_ascii_lowercase()
                || l == k.short_name().unwrap_or("\u{0}")
        })
    }

    /// kubectl's short name, where there is one.
    pub fn short_name(self) -> Option<&'static str> {
        match self {
            Kind::Namespace => Some("ns"),
            Kind::Node => Some("no"),
            Kind::Pod => Some("po"),
            Kind::Service => Some("svc"),
            Kind::ConfigMap => Some("cm"),
            Kind::PriorityClass => Some("pc"),
            Kind::IpAddress => Some("ip"),
            Kind::Event => Some("ev"),
            Kind::EndpointSlice | Kind::Lease | Kind::ServiceCidr => None,
        }
    }

    /// The key prefix holding every object of this kind, or of one namespace.
    pub fn prefix(self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced() => {
                format!("{REGISTRY_PREFIX}{}/{ns}/", self.registry_segment())
            }
            _ => format!("{REGISTRY_PREFIX}{}/", self.registry_segment()),
        }
    }

    /// Looks up a kind by its `apiVersion` and `kind` (as in a manifest).
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind && k.api_version() == api_version)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed reference to one object: its kind, namespace (for namespaced kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The object's kind.
    pub kind: Kind,
    /// The namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to a namespaced object.
    pub fn namespaced(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// A reference to a cluster-scoped object.
    pub fn cluster(kind: Kind, name: impl Into<String>) -> Self {
        ObjectRef {
            kind,
            namespace: None,
            name: name.into(),
        }
    }

    /// The reference of an object, from its kind and metadata.
    pub fn of<K: Object>(obj: &K) -> Self {
        let meta = obj.metadata();
        ObjectRef {
            kind: K::TYPE,
            namespace: if K::TYPE.namespaced() {
                meta.namespace.clone()
            } else {
                None
            },
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// The store key: the one place `/registry/...` keys are produced.
    pub fn key(&self) -> String {
        let mut key = self.kind.prefix(self.namespace.as_deref());
        key.push_str(&self.name);
        key
    }

    /// Parses a store key back into a reference (the inverse of [`ObjectRef::key`]).
    pub fn from_key(kind: Kind, key: &[u8]) -> Option<Self> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(&kind.prefix(None))?;
        if kind.namespaced() {
            let (ns, name) = rest.split_once('/')?;
            (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
                .then(|| ObjectRef::namespaced(kind, ns, name))
        } else {
            (!rest.is_empty() && !rest.contains('/')).then(|| ObjectRef::cluster(kind, rest))
        }
    }

    /// The key of the namespace this object needs, if it is namespaced.
    pub fn namespace_ref(&self) -> Option<ObjectRef> {
        self.namespace
            .as_ref()
            .map(|ns| ObjectRef::cluster(Kind::Namespace, ns.clone()))
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A Kubernetes object the resource layer can store: its kind, its metadata, and its
/// validation and defaulting rules.
pub trait Object:
    k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The kind, which decides the key layout.
    const TYPE: Kind;

    /// Sets defaults that need nothing but the object itself (as the API server's
    /// defaulting functions do).
    fn apply_defaults(&mut self) {}

    /// Checks the object on create (`old == None`) or update. Errors name the field.
    fn validate(&self, old: Option<&Self>) -> crate::validation::FieldErrors;

    /// Whether a change from `old` to `self` bumps `metadata.generation`
    /// (a change of anything but metadata and status).
    fn spec_changed(&self, old: &Self) -> bool;
}

macro_rules! object {
    ($ty:ty, $kind:expr, $defaults:path, $validate:path, $spec:ident) => {
        impl Object for $ty {
            const TYPE: Kind = $kind;
            fn apply_defaults(&mut self) {
                $defaults(self)
            }
            fn validate(&self, old: Option<&Self>) -> crate::validation::FieldErrors {
                $validate(self, old)
            }
            fn spec_changed(&self, old: &Self) -> bool {
                self.$spec != old.$spec
            }
        }
    };
}

use crate::defaults as d;
use crate::validation as v;
object!(Namespace, Kind::Namespace, d::namespace, v::namespace, spec);
object!(Node, Kind::Node, d::node, v::node, spec);
object!(Pod, Kind::Pod, d::pod, v::pod, spec);
object!(Service, Kind::Service, d::service, v::service, spec);
object!(
    ConfigMap,
    Kind::ConfigMap,
    d::config_map,
    v::config_map,
    data
);
object!(
    EndpointSlice,
    Kind::EndpointSlice,
    d::endpoint_slice,
    v::endpoint_slice,
    endpoints
);
object!(Lease, Kind::Lease, d::lease, v::lease, spec);
object!(
    PriorityClass,
    Kind::PriorityClass,
    d::priority_class,
    v::priority_class,
    value
);
object!(
    IPAddress,
    Kind::IpAddress,
    d::ip_address,
    v::ip_address,
    spec
);
object!(
    ServiceCIDR,
    Kind::ServiceCidr,
    d::service_cidr,
    v::service_cidr,
    spec
);
object!(Event, Kind::Event, d::event, v::event, involved_object);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kubernetes_layout() {
        let cases = [
            (
                ObjectRef::namespaced(Kind::Pod, "default", "web-0"),
                "/registry/pods/default/web-0",
            ),
            (
                ObjectRef::namespaced(Kind::Service, "shop", "web"),
                "/registry/services/specs/shop/web",
            ),
            (
                ObjectRef::namespaced(Kind::EndpointSlice, "shop", "web-abc"),
                "/registry/endpointslices/shop/web-abc",
            ),
            (ObjectRef::cluster(Kind::Node, "n1"), "/registry/minions/n1"),
            (
                ObjectRef::namespaced(Kind::Lease, "kube-node-lease", "n1"),
                "/registry/leases/kube-node-lease/n1",
            ),
            (
                ObjectRef::cluster(Kind::Namespace, "shop"),
                "/registry/namespaces/shop",
            ),
            (
                ObjectRef::cluster(Kind::PriorityClass, "high"),
                "/registry/priorityclasses/high",
            ),
            (
                ObjectRef::namespaced(Kind::ConfigMap, "a", "b"),
                "/registry/configmaps/a/b",
            ),
            (
                ObjectRef::cluster(Kind::IpAddress, "10.96.0.1"),
                "/registry/ipaddresses/10.96.0.1",
            ),
        ];
        for (r, key) in cases {
            assert_eq!(r.key(), key);
            assert_eq!(
                ObjectRef::from_key(r.kind, key.as_bytes()),
                Some(r.clone()),
                "{key}"
            );
        }
        assert_eq!(
            ObjectRef::from_key(Kind::Pod, b"/registry/pods/onlyns"),
            None
        );
        assert_eq!(
            ObjectRef::from_key(Kind::Pod, b"/registry/pods/a/b/c"),
            None
        );
        assert_eq!(ObjectRef::from_key(Kind::Node, b"/registry/pods/a/b"), None);
        assert_eq!(
            Kind::Service.prefix(Some("x")),
            "/registry/services/specs/x/"
        );
        assert_eq!(Kind::Node.prefix(Some("x")), "/registry/minions/");
    }

    #[test]
    fn kinds_parse_like_kubectl() {
        for (s, k) in [
            ("po", Kind::Pod),
            ("pods", Kind::Pod),
            ("Pod", Kind::Pod),
            ("svc", Kind::Service),
            ("no", Kind::Node),
            ("endpointslices", Kind::EndpointSlice),
            ("endpointslices.discovery.k8s.io", Kind::EndpointSlice),
            ("ns", Kind::Namespace),
            ("lease", Kind::Lease),
        ] {
            assert_eq!(Kind::parse(s), Some(k), "{s}");
        }
        assert_eq!(Kind::parse("deployments"), None);
        assert_eq!(
            Kind::from_type("discovery.k8s.io/v1", "EndpointSlice"),
            Some(Kind::EndpointSlice)
        );
        assert_eq!(Kind::from_type("v1", "EndpointSlice"), None);
    }
}
