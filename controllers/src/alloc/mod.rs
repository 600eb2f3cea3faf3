//! ClusterIP and NodePort allocation.
//!
//! An allocation is a *claim*: a key written in the same compare-and-swap
//! transaction as the Service, which must not exist yet. A cluster IP is claimed by
//! creating its `networking.k8s.io/v1` IPAddress object (`/registry/ipaddresses/<ip>`,
//! as Kubernetes' IPAddress allocator does), a node port by creating
//! `/registry/servicenodeports/<port>`. Two writers racing for one address both
//! compare on the claim key, so one of them fails and picks again: there is no
//! double allocation, whatever the number of writers. A claim never outlives its
//! Service because both are written and deleted together; [`repair`] still
//! reconciles both ways on start, for data written by anything else.
//!
//! The ranges live in the store, so every writer (ctl, controllers, scheduler)
//! allocates from the same ones: the ServiceCIDR named `kubernetes` and the
//! RangeAllocation at `/registry/ranges/servicenodeports`, written by
//! `capstan controllers` from `--service-cluster-ip-range` and
//! `--service-node-port-range`.

mod range;
pub mod repair;

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use capstan_api::client::{now, Claim, ServiceAllocator};
use capstan_api::k8s_openapi::api::core::v1::Service;
use capstan_api::k8s_openapi::api::networking::v1::{
    IPAddress, IPAddressSpec, ParentReference, ServiceCIDR, ServiceCIDRSpec,
};
use capstan_api::kind::{node_port_key, NODE_PORT_RANGE_KEY};
use capstan_api::validation::{FieldError, Path};
use capstan_api::{Client, Error, Kind, ObjectRef, Result};
use parking_lot::Mutex;

pub use range::{parse_service_cidrs, Family, IpRange, PortRange};

/// The name of the ServiceCIDR holding the cluster's service ranges.
pub const DEFAULT_SERVICE_CIDR: &str = "kubernetes";

/// Kubernetes' usual default for `--service-cluster-ip-range` (kubeadm's).
pub const DEFAULT_CLUSTER_IP_RANGE: &str = "10.96.0.0/12";

/// The ranges allocations come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranges {
    /// One service CIDR per family; the first is the primary family.
    pub cidrs: Vec<IpRange>,
    /// The node port range.
    pub node_ports: PortRange,
}

impl Ranges {
    /// Parses the two flags.
    pub fn parse(
        cluster_ip_range: &str,
        node_port_range: &str,
    ) -> std::result::Result<Self, String> {
        Ok(Ranges {
            cidrs: parse_service_cidrs(cluster_ip_range)?,
            node_ports: PortRange::parse(node_port_range)?,
        })
    }

    fn for_family(&self, f: Family) -> Option<&IpRange> {
        self.cidrs.iter().find(|r| r.family() == f)
    }

    fn cidr_list(&self) -> String {
        self.cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads the ranges from the store; `None` where nothing is stored yet.
    pub async fn read(client: &Client) -> Result<Option<Self>> {
        let cidr: Option<ServiceCIDR> = client
            .get_opt(&ObjectRef::cluster(Kind::ServiceCidr, DEFAULT_SERVICE_CIDR))
            .await?;
        let Some(cidr) = cidr else { return Ok(None) };
        let list = cidr
            .spec
            .and_then(|s| s.cidrs)
            .unwrap_or_default()
            .join(",");
        let cidrs = parse_service_cidrs(&list).map_err(Error::BadRequest)?;
        let resp = client
            .etcd()
            .kv_client()
            .get(NODE_PORT_RANGE_KEY, None)
            .await?;
        let node_ports = match resp.kvs().first() {
            Some(kv) => {
                let v: serde_json::Value = serde_json::from_slice(kv.value()).map_err(|e| {
                    Error::BadRequest(format!("{NODE_PORT_RANGE_KEY} does not parse: {e}"))
                })?;
                PortRange::parse(v["range"].as_str().unwrap_or_default())
                    .map_err(Error::BadRequest)?
            }
            None => PortRange::default(),
        };
        Ok(Some(Ranges { cidrs, node_ports }))
    }

    /// Stores these ranges as the cluster's (creates, or updates what differs).
    pub async fn publish(&self, client: &Client) -> Result<()> {
        let r = ObjectRef::cluster(Kind::ServiceCidr, DEFAULT_SERVICE_CIDR);
        let wanted: Vec<String> = self.cidrs.iter().map(ToString::to_string).collect();
        match client.get_opt::<ServiceCIDR>(&r).await? {
            None => {
                let mut obj = ServiceCIDR::default();
                obj.metadata.name = Some(DEFAULT_SERVICE_CIDR.into());
                obj.spec = Some(ServiceCIDRSpec {
                    cidrs: Some(wanted),
                });
                match client.create(obj).await {
                    Ok(_) | Err(Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(existing) => {
                let have = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.cidrs.clone())
                    .unwrap_or_default();
                if have != wanted {
                    tracing::warn!(stored = ?have, flag = ?wanted, "the stored service CIDR differs from --service-cluster-ip-range; keeping the stored one (ServiceCIDRs are immutable)");
                }
            }
        }
        let value = serde_json::json!({
            "kind": "RangeAllocation",
            "apiVersion": "v1",
            "metadata": {"name": ""},
            "range": self.node_ports.to_string(),
        });
        client
            .etcd()
            .kv_client()
            .put(NODE_PORT_RANGE_KEY, value.to_string(), None)
            .await?;
        Ok(())
    }
}

impl Default for Ranges {
    fn default() -> Self {
        Ranges {
            cidrs: parse_service_cidrs(DEFAULT_CLUSTER_IP_RANGE).unwrap_or_default(),
            node_ports: PortRange::default(),
        }
    }
}

/// The Service allocator every writing client carries.
#[derive(Debug)]
pub struct Allocator {
    ranges: Ranges,
    /// Claim keys known to be taken when the allocator was loaded; the client adds
    /// the ones it runs into.
    known: Mutex<HashSet<String>>,
}

/// The key claiming a cluster IP.
pub fn ip_key(ip: &IpAddr) -> String {
    ObjectRef::cluster(Kind::IpAddress, ip.to_string()).key()
}

impl Allocator {
    /// An allocator over fixed ranges that knows of no allocation yet.
    pub fn new(ranges: Ranges) -> Self {
        Allocator {
            ranges,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// An allocator over the cluster's stored ranges (defaults if none is stored),
    /// primed with the claims that exist now so a crowded range does not need many
    /// retries.
    pub async fn load(client: &Client) -> Result<Self> {
        let ranges = Ranges::read(client).await?.unwrap_or_default();
        let alloc = Allocator::new(ranges);
        alloc.refresh(client).await?;
        Ok(alloc)
    }

    /// Re-reads which claims exist.
    pub async fn refresh(&self, client: &Client) -> Result<()> {
        let mut keys = HashSet::new();
        for prefix in [Kind::IpAddress.prefix(None), node_port_prefix()] {
            let resp = client
                .etcd()
                .kv_client()
                .get(prefix, Some(etcd_opts()))
                .await?;
            keys.extend(
                resp.kvs()
                    .iter()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned()),
            );
        }
        *self.known.lock() = keys;
        Ok(())
    }

    /// The ranges.
    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }

    fn decide(
        &self,
        svc: &mut Service,
        old: Option<&Service>,
        taken: &HashSet<String>,
    ) -> std::result::Result<Vec<Claim>, Vec<FieldError>> {
        let known = self.known.lock().clone();
        let is_taken = |k: &String| taken.contains(k) || known.contains(k);
        let svc_ref = ObjectRef::of(&*svc);
        let spec = svc.spec.get_or_insert_with(Default::default);
        let path = Path::new("spec");
        let ty = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        let old_spec = old.and_then(|o| o.spec.clone()).unwrap_or_default();
        let old_ips: HashSet<String> = old_spec
            .cluster_ips
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut claims = Vec::new();

        if ty == "ExternalName" {
            spec.cluster_ip = None;
            spec.cluster_ips = None;
            spec.ip_families = None;
            spec.ip_family_policy = None;
            for p in spec.ports.iter_mut().flatten() {
                p.node_port = None;
            }
            return Ok(claims);
        }

        // Families and policy, as the API server defaults them.
        let mut requested: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
        if requested.is_empty() {
            if let Some(ip) = spec.cluster_ip.clone().filter(|s| !s.is_empty()) {
                requested.push(ip);
            }
        }
        let headless = requested.first().map(String::as_str) == Some("None");
        let has_selector = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
        let cluster_dual = self.ranges.cidrs.len() == 2;
        let primary = self
            .ranges
            .cidrs
            .first()
            .map(IpRange::family)
            .unwrap_or(Family::V4);
        let policy = spec.ip_family_policy.clone().unwrap_or_else(|| {
            if headless && !has_selector {
                "RequireDualStack".into()
            } else {
                "SingleStack".into()
            }
        });
        let mut errors = Vec::new();
        if policy == "RequireDualStack"
            && !cluster_dual
            && !(headless && !has_selector && spec.ip_family_policy.is_none())
        {
            errors.push(path.child("ipFamilyPolicy").invalid(
                &policy,
                "this cluster is not configured for dual-stack services",
            ));
        }
        let mut families: Vec<Family> = Vec::new();
        for (i, f) in spec.ip_families.iter().flatten().enumerate() {
            match Family::parse(f) {
                Some(fam) if self.ranges.for_family(fam).is_some() => families.push(fam),
                Some(_) => errors.push(
                    path.child("ipFamilies")
                        .index(i)
                        .invalid(f, "not configured on this cluster"),
                ),
                None => errors.push(
                    path.child("ipFamilies")
                        .index(i)
                        .not_supported(f, &["IPv4", "IPv6"]),
                ),
            }
        }
        if families.is_empty() && !headless {
            for ip in &requested {
                if let Ok(addr) = ip.parse::<IpAddr>() {
                    families.push(Family::of(&addr));
                }
            }
        }
        if families.is_empty() {
            families.push(primary);
        }
        let want_two = match policy.as_str() {
            "RequireDualStack" | "PreferDualStack" => cluster_dual,
            _ => false,
        };
        if want_two && families.len() == 1 {
            if let Some(other) = self
                .ranges
                .cidrs
                .iter()
                .map(IpRange::family)
                .find(|f| *f != families[0])
            {
                families.push(other);
            }
        }
        if policy == "SingleStack" {
            families.truncate(1);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        spec.ip_family_policy = Some(policy);
        spec.ip_families = Some(families.iter().map(|f| f.name().to_string()).collect());

        if headless {
            spec.cluster_ip = Some("None".into());
            spec.cluster_ips = Some(vec!["None".into()]);
        } else {
            let mut ips = Vec::new();
            let mut picked: HashSet<IpAddr> = HashSet::new();
            for (i, fam) in families.iter().enumerate() {
                let field = path.child("clusterIPs").index(i);
                let Some(range) = self.ranges.for_family(*fam) else {
                    errors.push(
                        path.child("ipFamilies")
                            .index(i)
                            .invalid(fam.name(), "not configured on this cluster"),
                    );
                    continue;
                };
                match requested.get(i).filter(|s| !s.is_empty()) {
                    Some(text) => {
                        let Ok(ip) = text.parse::<IpAddr>() else {
                            errors.push(field.invalid(text, "must be a valid IP address"));
                            continue;
                        };
                        if Family::of(&ip) != *fam {
                            errors.push(field.invalid(
                                text,
                                format!(
                                    "expected an {} address to match spec.ipFamilies[{i}]",
                                    fam.name()
                                ),
                            ));
                            continue;
                        }
                        if !old_ips.contains(&ip.to_string()) {
                            if !range.contains(&ip) {
                                errors.push(field.invalid(text, format!("failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is {}", self.ranges.cidr_list())));
                                continue;
                            }
                            if is_taken(&ip_key(&ip)) {
                                errors.push(field.invalid(text, format!("failed to allocate IP {ip}: provided IP is already allocated")));
                                continue;
                            }
                            claims.push(ip_claim(&svc_ref, &ip));
                        }
                        ips.push(ip.to_string());
                    }
                    None => {
                        let avoid: HashSet<IpAddr> = known
                            .iter()
                            .chain(taken.iter())
                            .filter_map(|k| k.rsplit('/').next()?.parse().ok())
                            .chain(picked.iter().copied())
                            .collect();
                        match range.pick(&avoid) {
                            Some(ip) => {
                                picked.insert(ip);
                                claims.push(ip_claim(&svc_ref, &ip));
                                ips.push(ip.to_string());
                            }
                            None => errors.push(field.invalid(
                                "",
                                format!("failed to allocate a serviceIP: range {range} is full"),
                            )),
                        }
                    }
                }
            }
            spec.cluster_ip = ips.first().cloned();
            spec.cluster_ips = Some(ips);
        }

        // Node ports.
        let wants_node_ports = ty == "NodePort"
            || (ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports != Some(false));
        let old_ports: HashSet<i32> = old_spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.node_port)
            .collect();
        let mut used: BTreeSet<i32> = BTreeSet::new();
        if wants_node_ports {
            let range = self.ranges.node_ports;
            let mut avoid: HashSet<i32> = known
                .iter()
                .chain(taken.iter())
                .filter_map(|k| k.strip_prefix(node_port_prefix().as_str())?.parse().ok())
                .collect();
            // Ports the user asked for first, so a random pick does not take them.
            for (i, p) in spec.ports.iter().flatten().enumerate() {
                if let Some(np) = p.node_port.filter(|n| *n != 0) {
                    let field = path.child("ports").index(i).child("nodePort");
                    if !old_ports.contains(&np) && !used.contains(&np) {
                        if !range.contains(np) {
                            errors.push(field.invalid(np, format!("provided port is not in the valid range. The range of valid ports is {range}")));
                            continue;
                        }
                        if avoid.contains(&np) {
                            errors.push(field.invalid(np, "provided port is already allocated"));
                            continue;
                        }
                        claims.push(port_claim(&svc_ref, np));
                    }
                    used.insert(np);
                }
            }
            avoid.extend(used.iter().copied());
            for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
                if p.node_port.unwrap_or(0) != 0 {
                    continue;
                }
                match range.pick(&avoid) {
                    Some(np) => {
                        avoid.insert(np);
                        used.insert(np);
                        p.node_port = Some(np);
                        claims.push(port_claim(&svc_ref, np));
                    }
                    None => errors.push(path.child("ports").index(i).child("nodePort").invalid(
                        0,
                        format!("failed to allocate a nodePort: range {range} is full"),
                    )),
                }
            }
        } else {
            for p in spec.ports.iter_mut().flatten() {
                p.node_port = None;
            }
        }
        if errors.is_empty() {
            Ok(claims)
        } else {
            Err(errors)
        }
    }
}

fn etcd_opts() -> capstan_api::etcd_client::GetOptions {
    capstan_api::etcd_client::GetOptions::new()
        .with_prefix()
        .with_keys_only()
}

pub(crate) fn node_port_prefix() -> String {
    let k = node_port_key(0);
    k[..k.len() - 1].to_string()
}

pub(crate) fn ip_claim(svc: &ObjectRef, ip: &IpAddr) -> Claim {
    let mut obj = IPAddress::default();
    obj.metadata.name = Some(ip.to_string());
    obj.metadata.labels = Some(
        [
            (
                "ipaddress.kubernetes.io/ip-family".to_string(),
                Family::of(ip).name().to_string(),
            ),
            (
                "ipaddress.kubernetes.io/managed-by".to_string(),
                "ipallocator.k8s.io".to_string(),
            ),
        ]
        .into(),
    );
    obj.metadata.creation_timestamp = Some(now());
    obj.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
    obj.metadata.generation = Some(1);
    obj.spec = IPAddressSpec {
        parent_ref: ParentReference {
            group: Some(String::new()),
            resource: "services".into(),
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
        },
    };
    Claim {
        key: ip_key(ip),
        value: serde_json::to_vec(&obj).unwrap_or_default(),
    }
}

pub(crate) fn port_claim(svc: &ObjectRef, port: i32) -> Claim {
    let value = serde_json::json!({
        "namespace": svc.namespace,
        "name": svc.name,
    });
    Claim {
        key: node_port_key(port),
        value: value.to_string().into_bytes(),
    }
}

impl ServiceAllocator for Allocator {
    fn allocate(
        &self,
        svc: &mut Service,
        old: Option<&Service>,
        taken: &HashSet<String>,
    ) -> Result<Vec<Claim>> {
        self.decide(svc, old, taken)
            .map_err(|errors| Error::Invalid {
                object: ObjectRef::of(&*svc),
                errors,
            })
    }

    fn claim_keys(&self, svc: &Service) -> Vec<String> {
        claim_keys(svc)
    }

    fn claim_prefixes(&self) -> Vec<String> {
        vec![Kind::IpAddress.prefix(None), node_port_prefix()]
    }
}

/// The claim keys a Service holds: its cluster IPs and node ports.
pub fn claim_keys(svc: &Service) -> Vec<String> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let mut keys: Vec<String> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|ip| ip_key(&ip))
        .collect();
    let ports: BTreeSet<i32> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port)
        .filter(|p| *p > 0)
        .collect();
    keys.extend(ports.into_iter().map(node_port_key));
    keys
}

#[cfg(test)]
mod tests;
