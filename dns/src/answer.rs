//! The cluster zone's answers: [`answer`] maps one question and a [`View`] to the
//! records, following the Kubernetes DNS-based service discovery specification
//! (schema 1.1.0) the way CoreDNS's `kubernetes` plugin reads it. Pure: no I/O, no
//! clock, so every rule has a table test.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::view::{dashed, undashed, Endpoint, Port, Proto, Records, ServiceEntry, View};

/// The schema version `dns-version.<zone>` answers.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Whether and how `a-b-c-d.<ns>.pod.<zone>` answers (CoreDNS's `pods` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodRecords {
    /// No pod records: NXDOMAIN.
    Disabled,
    /// Any well-formed name in an existing namespace answers its own address.
    Insecure,
    /// Only when a pod in that namespace has that address.
    Verified,
}

/// The zone's settings.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The cluster domain, lowercase and fully qualified (`cluster.local.`).
    pub origin: Name,
    /// TTL of every record, and of negative answers.
    pub ttl: u32,
    /// Pod records.
    pub pods: PodRecords,
    /// The addresses `ns.dns.<zone>` answers with (the DNS server's own).
    pub ns_addrs: Vec<IpAddr>,
}

impl Zone {
    /// A zone for `domain` (`cluster.local`) with CoreDNS's defaults.
    pub fn new(domain: &str) -> Result<Zone, String> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err("the cluster domain is empty".into());
        }
        let origin = Name::from_ascii(format!("{domain}."))
            .map_err(|e| format!("invalid cluster domain {domain:?}: {e}"))?;
        Ok(Zone {
            origin,
            ttl: 5,
            pods: PodRecords::Disabled,
            ns_addrs: Vec::new(),
        })
    }

    fn name(&self, relative: &str) -> Name {
        let s = if relative.is_empty() {
            self.origin.to_ascii()
        } else {
            format!("{relative}.{}", self.origin.to_ascii())
        };
        // Relative parts are labels we produced from validated object names.
        Name::from_ascii(&s).unwrap_or_else(|_| self.origin.clone())
    }

    /// The SOA record at the apex, with `serial`.
    pub fn soa(&self, serial: u32) -> Record {
        let ttl = self.ttl;
        Record::from_rdata(
            self.origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                self.name("ns.dns"),
                self.name("hostmaster"),
                serial,
                7200,
                1800,
                86400,
                ttl,
            )),
        )
    }
}

/// What the zone says about one question.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// NoError or NXDomain.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
    /// The additional section (addresses of SRV targets, of the NS).
    pub additionals: Vec<Record>,
    /// An ExternalName's target outside the zone: the server may resolve it upstream
    /// and append the result after the CNAME, as CoreDNS does.
    pub chase: Option<Name>,
}

/// Who answers a question.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The cluster zone answers (authoritatively).
    Local(Answer),
    /// Not a cluster name: forward upstream (or refuse when there is no upstream).
    Upstream,
}

/// Answers `qtype` for `name` (already lowercase) from `view`.
pub fn answer(name: &Name, qtype: RecordType, view: &View, zone: &Zone) -> Outcome {
    let serial = view.serial();
    if zone.origin.zone_of(name) {
        let labels: Vec<&[u8]> = name.iter().collect();
        let rel = labels.len() - zone.origin.num_labels() as usize;
        let mut a = Builder::new(zone, name, qtype, serial);
        let found = in_zone(&mut a, &labels[..rel], view);
        return Outcome::Local(a.finish(found));
    }
    if qtype == RecordType::PTR || qtype == RecordType::ANY {
        if let Some(ip) = reverse_ip(name) {
            let names = view.reverse(ip);
            if !names.is_empty() {
                let mut a = Builder::new(zone, name, qtype, serial);
                for (ns, svc, label) in names {
                    let target = match label {
                        Some(l) => zone.name(&format!("{l}.{svc}.{ns}.svc")),
                        None => zone.name(&format!("{svc}.{ns}.svc")),
                    };
                    a.answer(RData::PTR(PTR(target)));
                }
                // The reverse zones are not ours: no SOA to cite, no AA.
                return Outcome::Local(a.finish(Found::Yes));
            }
        }
    }
    Outcome::Upstream
}

/// Whether a name exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    /// It exists (with or without records of the asked type).
    Yes,
    /// It does not exist.
    No,
}

struct Builder<'a> {
    zone: &'a Zone,
    owner: &'a Name,
    qtype: RecordType,
    answers: Vec<Record>,
    additionals: Vec<Record>,
    chase: Option<Name>,
    serial: u32,
}

impl<'a> Builder<'a> {
    fn new(zone: &'a Zone, owner: &'a Name, qtype: RecordType, serial: u32) -> Self {
        Builder {
            serial,
            zone,
            owner,
            qtype,
            answers: Vec::new(),
            additionals: Vec::new(),
            chase: None,
        }
    }

    fn wants(&self, t: RecordType) -> bool {
        self.qtype == t || self.qtype == RecordType::ANY
    }

    fn answer(&mut self, rdata: RData) {
        self.answers
            .push(Record::from_rdata(self.owner.clone(), self.zone.ttl, rdata));
    }

    /// A / AAAA for `ip` at the owner, when asked.
    fn address(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) if self.wants(RecordType::A) => self.answer(RData::A(A(v4))),
            IpAddr::V6(v6) if self.wants(RecordType::AAAA) => self.answer(RData::AAAA(AAAA(v6))),
            _ => {}
        }
    }

    fn additional(&mut self, owner: &Name, ip: IpAddr) {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        let r = Record::from_rdata(owner.clone(), self.zone.ttl, rdata);
        if !self.additionals.contains(&r) {
            self.additionals.push(r);
        }
    }

    fn finish(self, found: Found) -> Answer {
        let negative = self.answers.is_empty();
        let in_zone = self.zone.origin.zone_of(self.owner);
        Answer {
            rcode: if found == Found::No {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            },
            authority: if negative && in_zone {
                vec![self.zone.soa(self.serial)]
            } else {
                Vec::new()
            },
            answers: self.answers,
            additionals: self.additionals,
            chase: self.chase,
        }
    }
}

/// `rel`: the labels before the zone, most specific first.
fn in_zone(a: &mut Builder<'_>, rel: &[&[u8]], view: &View) -> Found {
    match rel {
        [] => {
            if a.wants(RecordType::SOA) {
                let soa = a.zone.soa(a.serial);
                a.answers.push(soa);
            }
            if a.wants(RecordType::NS) {
                let ns = a.zone.name("ns.dns");
                a.answer(RData::NS(NS(ns.clone())));
                for ip in a.zone.ns_addrs.clone() {
                    a.additional(&ns, ip);
                }
            }
            Found::Yes
        }
        [b"dns-version"] => {
            if a.wants(RecordType::TXT) {
                a.answer(RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])));
            }
            Found::Yes
        }
        [b"svc"] | [b"pod"] | [b"dns"] => Found::Yes,
        [b"ns", b"dns"] => {
            for ip in a.zone.ns_addrs.clone() {
                a.address(ip);
            }
            Found::Yes
        }
        [ns, b"svc"] | [ns, b"pod"] => exists(view.namespace_exists(utf8(ns))),
        [svc, ns, b"svc"] => match view.service(utf8(ns), utf8(svc)) {
            Some(entry) => {
                service(a, entry, utf8(svc), utf8(ns));
                Found::Yes
            }
            None => Found::No,
        },
        [first, svc, ns, b"svc"] => match view.service(utf8(ns), utf8(svc)) {
            Some(entry) => sub_service(a, entry, first),
            None => Found::No,
        },
        [port, proto, svc, ns, b"svc"] => match view.service(utf8(ns), utf8(svc)) {
            Some(entry) => srv(a, entry, port, proto, utf8(svc), utf8(ns)),
            None => Found::No,
        },
        [ip, ns, b"pod"] => pod(a, utf8(ip), utf8(ns), view),
        _ => Found::No,
    }
}

fn exists(b: bool) -> Found {
    if b {
        Found::Yes
    } else {
        Found::No
    }
}

/// Labels come from a parsed name; one that is not UTF-8 cannot match any object.
fn utf8(label: &[u8]) -> &str {
    std::str::from_utf8(label).unwrap_or("\u{0}")
}

/// `<svc>.<ns>.svc.<zone>`.
fn service(a: &mut Builder<'_>, entry: &ServiceEntry, svc: &str, ns: &str) {
    match &entry.records {
        Records::ClusterIp { ips, ports } => {
            for ip in ips {
                a.address(*ip);
            }
            if a.wants(RecordType::SRV) {
                // CoreDNS answers SRV at the service name with every port.
                let target = a.owner.clone();
                for p in ports {
                    srv_record(a, p.port, 1, &target);
                }
                if !ports.is_empty() {
                    for ip in ips {
                        a.additional(&target, *ip);
                    }
                }
            }
        }
        Records::Headless(eps) => {
            for e in eps {
                a.address(e.ip);
            }
            if a.wants(RecordType::SRV) {
                let all: Vec<(&Endpoint, &Port)> = eps
                    .iter()
                    .flat_map(|e| e.ports.iter().map(move |p| (e, p)))
                    .collect();
                let count = all.len();
                for (e, p) in all {
                    let target = a.zone.name(&format!("{}.{svc}.{ns}.svc", e.label));
                    srv_record(a, p.port, count, &target);
                    a.additional(&target, e.ip);
                }
            }
        }
        Records::ExternalName(target) => cname(a, target),
    }
}

/// An ExternalName answers every type with its CNAME (the name is an alias).
fn cname(a: &mut Builder<'_>, target: &str) {
    let Ok(target) = Name::from_ascii(format!("{target}.")) else {
        return;
    };
    a.answer(RData::CNAME(CNAME(target.clone())));
    if a.qtype != RecordType::CNAME {
        a.chase = Some(target);
    }
}

fn srv_record(a: &mut Builder<'_>, port: u16, count: usize, target: &Name) {
    // CoreDNS spreads a weight of 100 over the targets of one answer.
    let weight = u16::try_from((100 / count.max(1)).max(1)).unwrap_or(1);
    a.answer(RData::SRV(SRV::new(0, weight, port, target.clone())));
}

/// `<first>.<svc>.<ns>.svc.<zone>`: a headless endpoint's own name, or the `_proto`
/// empty non-terminal of SRV names.
fn sub_service(a: &mut Builder<'_>, entry: &ServiceEntry, first: &[u8]) -> Found {
    if let Some(proto) = first.strip_prefix(b"_") {
        let Some(proto) = Proto::from_label(proto) else {
            return Found::No;
        };
        let has = |ports: &[Port]| ports.iter().any(|p| p.proto == proto && !p.name.is_empty());
        return exists(match &entry.records {
            Records::ClusterIp { ports, .. } => has(ports),
            Records::Headless(eps) => eps.iter().any(|e| has(&e.ports)),
            Records::ExternalName(_) => false,
        });
    }
    let Records::Headless(eps) = &entry.records else {
        return Found::No;
    };
    let label = utf8(first);
    let mut found = Found::No;
    for e in eps.iter().filter(|e| e.label == label) {
        found = Found::Yes;
        a.address(e.ip);
    }
    found
}

/// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`.
fn srv(
    a: &mut Builder<'_>,
    entry: &ServiceEntry,
    port: &[u8],
    proto: &[u8],
    svc: &str,
    ns: &str,
) -> Found {
    let (Some(port), Some(proto)) = (
        port.strip_prefix(b"_"),
        proto.strip_prefix(b"_").and_then(Proto::from_label),
    ) else {
        return Found::No;
    };
    let port = utf8(port);
    let matches = |p: &Port| !p.name.is_empty() && p.name == port && p.proto == proto;
    match &entry.records {
        Records::ClusterIp { ips, ports } => {
            let hits: Vec<u16> = ports
                .iter()
                .filter(|p| matches(p))
                .map(|p| p.port)
                .collect();
            if hits.is_empty() {
                return Found::No;
            }
            if a.wants(RecordType::SRV) {
                let target = a.zone.name(&format!("{svc}.{ns}.svc"));
                for n in &hits {
                    srv_record(a, *n, hits.len(), &target);
                }
                for ip in ips {
                    a.additional(&target, *ip);
                }
            }
            Found::Yes
        }
        Records::Headless(eps) => {
            let hits: Vec<(&Endpoint, u16)> = eps
                .iter()
                .flat_map(|e| {
                    e.ports
                        .iter()
                        .filter(|p| matches(p))
                        .map(move |p| (e, p.port))
                })
                .collect();
            if hits.is_empty() {
                return Found::No;
            }
            if a.wants(RecordType::SRV) {
                let count = hits.len();
                for (e, n) in hits {
                    let target = a.zone.name(&format!("{}.{svc}.{ns}.svc", e.label));
                    srv_record(a, n, count, &target);
                    a.additional(&target, e.ip);
                }
            }
            Found::Yes
        }
        Records::ExternalName(_) => Found::No,
    }
}

/// `a-b-c-d.<ns>.pod.<zone>`.
fn pod(a: &mut Builder<'_>, label: &str, ns: &str, view: &View) -> Found {
    if a.zone.pods == PodRecords::Disabled || !view.namespace_exists(ns) {
        return Found::No;
    }
    let Some(ip) = undashed(label) else {
        return Found::No;
    };
    // Only the canonical spelling is a name (`10-0-0-01` is not 10.0.0.1's).
    if dashed(ip) != label {
        return Found::No;
    }
    if a.zone.pods == PodRecords::Verified && !view.pod_ip(ns, ip) {
        return Found::No;
    }
    a.address(ip);
    Found::Yes
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa.`, 32 nibbles `.ip6.arpa.`)
/// stands for; `None` for partial names.
pub fn reverse_ip(name: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.as_slice() {
        [d, c, b, a, b"in-addr", b"arpa"] => {
            let octet = |l: &[u8]| -> Option<u8> {
                let s = std::str::from_utf8(l).ok()?;
                if s.len() > 1 && s.starts_with('0') {
                    return None;
                }
                s.parse().ok()
            };
            Some(IpAddr::from([octet(a)?, octet(b)?, octet(c)?, octet(d)?]))
        }
        [nibbles @ .., b"ip6", b"arpa"] if nibbles.len() == 32 => {
            let mut bytes = [0u8; 16];
            for (i, l) in nibbles.iter().rev().enumerate() {
                let [h] = l else { return None };
                let v = (*h as char).to_digit(16)? as u8;
                bytes[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
            }
            Some(IpAddr::from(bytes))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
