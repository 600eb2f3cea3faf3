//! The records the cluster zone serves, as plain data: one entry per Service
//! (built from the Service and its EndpointSlices by [`ServiceEntry::build`]), the
//! namespaces, the pod IPs (for verified pod records) and a reverse index for PTR.
//! Nothing here talks to the store; `sync` keeps a [`View`] up to date from informers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// A port's transport protocol, as it appears in SRV names (`_tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The SRV label without its underscore: `tcp`, `udp`, `sctp`.
    pub fn label(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }

    /// Parses an SRV label without its underscore (already lowercase).
    pub fn from_label(s: &[u8]) -> Option<Proto> {
        match s {
            b"tcp" => Some(Proto::Tcp),
            b"udp" => Some(Proto::Udp),
            b"sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

/// One port of a service (ClusterIP) or of an endpoint (headless).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The port's name, lowercase; empty for an unnamed port (no SRV name).
    pub name: String,
    /// Its protocol.
    pub proto: Proto,
    /// Its number.
    pub port: u16,
}

impl Port {
    /// A port from a Service's or an EndpointSlice's fields; `None` when its
    /// protocol or number cannot be published.
    fn new(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<Port> {
        Some(Port {
            name: name.unwrap_or_default().to_ascii_lowercase(),
            proto: Proto::parse(protocol)?,
            port: u16::try_from(port?).ok()?,
        })
    }
}

/// One endpoint of a headless service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub ip: IpAddr,
    /// The first label of its own name: its `hostname`, else its address with dashes
    /// (`10-0-0-1`, `fd00--1`), as CoreDNS names endpoints without a hostname.
    pub label: String,
    /// The ports of the slice it came from.
    pub ports: Arc<Vec<Port>>,
}

/// What a service name answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Records {
    /// A service with cluster IPs (ClusterIP, NodePort, LoadBalancer).
    ClusterIp {
        /// Its cluster IPs, in `spec.clusterIPs` order.
        ips: Vec<IpAddr>,
        /// Its ports.
        ports: Vec<Port>,
    },
    /// A headless service: its endpoints that DNS publishes.
    Headless(Vec<Endpoint>),
    /// An ExternalName service: a CNAME to this name (lowercase, without the final dot).
    ExternalName(String),
}

/// The DNS side of one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    /// Its records.
    pub records: Records,
}

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl ServiceEntry {
    /// The records of `svc` given its EndpointSlices (the caller picks the slices
    /// labelled with the service's name). `None` when the service publishes nothing:
    /// a ClusterIP service whose IP is not allocated yet.
    pub fn build(svc: &Service, slices: &[Arc<EndpointSlice>]) -> Option<ServiceEntry> {
        let spec = svc.spec.as_ref()?;
        if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.as_deref()?.trim_end_matches('.');
            if target.is_empty() {
                return None;
            }
            return Some(ServiceEntry {
                records: Records::ExternalName(target.to_ascii_lowercase()),
            });
        }
        let cluster_ips: Vec<&str> = match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        if cluster_ips.first() == Some(&"None") {
            let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
            return Some(ServiceEntry {
                records: Records::Headless(headless_endpoints(slices, publish_not_ready)),
            });
        }
        let ips: Vec<IpAddr> = cluster_ips.iter().filter_map(|s| s.parse().ok()).collect();
        if ips.is_empty() {
            return None;
        }
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Port::new(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
            .collect();
        Some(ServiceEntry {
            records: Records::ClusterIp { ips, ports },
        })
    }

    /// Every name this entry publishes a PTR for, with the IP it points from.
    fn reverse(&self) -> Vec<(IpAddr, Option<&str>)> {
        match &self.records {
            Records::ClusterIp { ips, .. } => ips.iter().map(|ip| (*ip, None)).collect(),
            Records::Headless(eps) => eps.iter().map(|e| (e.ip, Some(e.label.as_str()))).collect(),
            Records::ExternalName(_) => Vec::new(),
        }
    }
}

/// The service a slice belongs to (`namespace`, `name`), from its label.
pub fn slice_service(slice: &EndpointSlice) -> Option<(String, String)> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((slice.metadata.namespace.clone()?, name.clone()))
}

fn headless_endpoints(slices: &[Arc<EndpointSlice>], publish_not_ready: bool) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    // Slices come from a hash map: sort for answers that do not reorder between
    // rebuilds (and a cache that stays valid).
    let mut slices: Vec<&Arc<EndpointSlice>> = slices.iter().collect();
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        let ports: Arc<Vec<Port>> = Arc::new(
            slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| Port::new(p.name.as_deref(), p.protocol.as_deref(), p.port))
                .collect(),
        );
        for ep in slice.endpoints.iter().flatten() {
            // A nil `ready` means ready (the EndpointSlice API's rule).
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !publish_not_ready {
                continue;
            }
            let hostname = ep
                .hostname
                .as_deref()
                .filter(|h| is_label(h))
                .map(str::to_ascii_lowercase);
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                if !seen.insert(ip) {
                    continue;
                }
                out.push(Endpoint {
                    ip,
                    label: hostname.clone().unwrap_or_else(|| dashed(ip)),
                    ports: ports.clone(),
                });
            }
        }
    }
    out
}

fn is_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An address as one DNS label: `10-0-0-1`, `fd00--1` (CoreDNS's endpoint and pod
/// names).
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Parses [`dashed`]'s output back (lowercase input).
pub fn undashed(label: &str) -> Option<IpAddr> {
    let dots = label.replace('-', ".");
    if let Ok(IpAddr::V4(v4)) = dots.parse::<IpAddr>() {
        return Some(IpAddr::V4(v4));
    }
    match label.replace('-', ":").parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

/// Everything the cluster zone answers from.
#[derive(Debug, Default)]
pub struct View {
    namespaces: HashMap<String, HashMap<String, ServiceEntry>>,
    /// Namespaces that exist as objects (a namespace with no service still answers
    /// NODATA, not NXDOMAIN).
    existing: HashSet<String>,
    /// IP → (namespace, service, endpoint label) for PTR; several services may
    /// share an endpoint IP.
    reverse: HashMap<IpAddr, Vec<(String, String, Option<String>)>>,
    pods: HashMap<String, HashMap<IpAddr, u32>>,
    serial: u32,
}

impl View {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The SOA serial: when the records last changed (unix seconds).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Sets the SOA serial.
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// The entry of service `name` in `namespace`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces.get(namespace)?.get(name)
    }

    /// Whether the namespace exists (as an object, or because a service is in it).
    pub fn namespace_exists(&self, namespace: &str) -> bool {
        self.existing.contains(namespace) || self.namespaces.contains_key(namespace)
    }

    /// Names pointing back at `ip`: (namespace, service, endpoint label).
    pub fn reverse(&self, ip: IpAddr) -> &[(String, String, Option<String>)] {
        self.reverse.get(&ip).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether a pod in `namespace` has `ip`.
    pub fn pod_ip(&self, namespace: &str, ip: IpAddr) -> bool {
        self.pods
            .get(namespace)
            .is_some_and(|m| m.contains_key(&ip))
    }

    /// Number of services with records.
    pub fn services(&self) -> usize {
        self.namespaces.values().map(HashMap::len).sum()
    }

    /// Sets (or, with `None`, removes) one service's entry. Returns whether anything
    /// changed.
    pub fn set_service(
        &mut self,
        namespace: &str,
        name: &str,
        entry: Option<ServiceEntry>,
    ) -> bool {
        let old = self.namespaces.get(namespace).and_then(|m| m.get(name));
        if old == entry.as_ref() {
            return false;
        }
        if let Some(old) = old {
            for (ip, label) in old.reverse() {
                if let Some(v) = self.reverse.get_mut(&ip) {
                    v.retain(|(ns, svc, l)| {
                        !(ns == namespace && svc == name && l.as_deref() == label)
                    });
                    if v.is_empty() {
                        self.reverse.remove(&ip);
                    }
                }
            }
        }
        match entry {
            Some(entry) => {
                for (ip, label) in entry.reverse() {
                    self.reverse.entry(ip).or_default().push((
                        namespace.to_string(),
                        name.to_string(),
                        label.map(str::to_string),
                    ));
                }
                self.namespaces
                    .entry(namespace.to_string())
                    .or_default()
                    .insert(name.to_string(), entry);
            }
            None => {
                if let Some(m) = self.namespaces.get_mut(namespace) {
                    m.remove(name);
                    if m.is_empty() {
                        self.namespaces.remove(namespace);
                    }
                }
            }
        }
        true
    }

    /// Every (namespace, name) with an entry.
    pub fn service_keys(&self) -> Vec<(String, String)> {
        self.namespaces
            .iter()
            .flat_map(|(ns, m)| m.keys().map(move |n| (ns.clone(), n.clone())))
            .collect()
    }

    /// Replaces the set of existing namespaces.
    pub fn set_namespaces(&mut self, names: HashSet<String>) -> bool {
        if self.existing == names {
            return false;
        }
        self.existing = names;
        true
    }

    /// Adds (`+1`) or removes (`-1`) a pod IP in a namespace.
    pub fn pod(&mut self, namespace: &str, ip: IpAddr, add: bool) {
        let m = self.pods.entry(namespace.to_string()).or_default();
        if add {
            *m.entry(ip).or_default() += 1;
        } else if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
        if m.is_empty() {
            self.pods.remove(namespace);
        }
    }
}
