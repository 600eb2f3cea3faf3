//! Address and port ranges, and picking a free member of one. Pure.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use rand::Rng;

/// An IP family, as `spec.ipFamilies` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// `IPv4`
    V4,
    /// `IPv6`
    V6,
}

impl Family {
    /// The name in `spec.ipFamilies`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
    /// Parses `IPv4` / `IPv6`.
    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// A service CIDR: the addresses cluster IPs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpRange {
    net: IpNet,
}

impl IpRange {
    /// A range from a CIDR; refuses ranges with fewer than 8 usable addresses
    /// (Kubernetes refuses them too).
    pub fn new(net: IpNet) -> Result<Self, String> {
        let r = IpRange { net: net.trunc() };
        if r.size() < 8 {
            return Err(format!(
                "service CIDR {net} is too small: it needs at least 8 usable addresses"
            ));
        }
        Ok(r)
    }

    /// The CIDR.
    pub fn net(&self) -> IpNet {
        self.net
    }

    /// The family.
    pub fn family(&self) -> Family {
        Family::of(&self.net.network())
    }

    fn base(&self) -> u128 {
        match self.net.network() {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn bits(&self) -> u32 {
        u32::from(self.net.max_prefix_len() - self.net.prefix_len())
    }

    /// How many addresses can be handed out: the network address is never used,
    /// and for IPv4 the broadcast address neither, as in Kubernetes. Offsets run
    /// from 1 to `size()`.
    pub fn size(&self) -> u128 {
        let all = if self.bits() >= 128 {
            u128::MAX
        } else {
            1u128 << self.bits()
        };
        match self.family() {
            Family::V4 => all.saturating_sub(2),
            Family::V6 => all.saturating_sub(1),
        }
    }

    /// The address at `offset` (1-based).
    pub fn at(&self, offset: u128) -> IpAddr {
        let v = self.base() + offset;
        match self.family() {
            Family::V4 => IpAddr::V4((v as u32).into()),
            Family::V6 => IpAddr::V6(v.into()),
        }
    }

    /// Whether `ip` is one this range hands out.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        if !self.net.contains(ip) {
            return false;
        }
        let v = match ip {
            IpAddr::V4(a) => u32::from(*a) as u128,
            IpAddr::V6(a) => u128::from(*a),
        };
        let offset = v - self.base();
        offset >= 1 && offset <= self.size()
    }

    /// The low part kept for addresses users ask for by hand (Kubernetes'
    /// static subrange: size/16, at least 16 and at most 256).
    fn static_size(&self) -> u128 {
        (self.size() / 16).clamp(16, 256).min(self.size())
    }

    /// A free address: random in the dynamic (upper) part first, then the static
    /// part, skipping `taken`; `None` when every address is taken.
    pub fn pick(&self, taken: &HashSet<IpAddr>) -> Option<IpAddr> {
        let size = self.size();
        let split = self.static_size();
        let parts = [(split + 1, size), (1, split)];
        let mut rng = rand::thread_rng();
        for (lo, hi) in parts {
            if lo > hi {
                continue;
            }
            // Random probes find a free address fast in a sparse range; a linear walk
            // from a random start finishes the job in a dense one.
            for _ in 0..16 {
                let ip = self.at(rng.gen_range(lo..=hi));
                if !taken.contains(&ip) {
                    return Some(ip);
                }
            }
            let span = hi - lo + 1;
            let start = rng.gen_range(0..span);
            let limit = span.min(taken.len() as u128 + 1);
            for i in 0..limit {
                let ip = self.at(lo + (start + i) % span);
                if !taken.contains(&ip) {
                    return Some(ip);
                }
            }
        }
        None
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.net.fmt(f)
    }
}

/// Parses `--service-cluster-ip-range`: one CIDR, or two of different families
/// (dual-stack; the first is the primary family).
pub fn parse_service_cidrs(s: &str) -> Result<Vec<IpRange>, String> {
    let mut out: Vec<IpRange> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net =
            IpNet::from_str(part).map_err(|e| format!("invalid service CIDR {part:?}: {e}"))?;
        let range = IpRange::new(net)?;
        if out.iter().any(|r| r.family() == range.family()) {
            return Err(format!("service CIDRs {s:?}: at most one per IP family"));
        }
        out.push(range);
    }
    match out.len() {
        1 | 2 => Ok(out),
        _ => Err(format!(
            "service CIDRs {s:?}: give one CIDR, or two of different families"
        )),
    }
}

/// A node port range, `30000-32767`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub base: i32,
    /// Last port (inclusive).
    pub last: i32,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            base: 30000,
            last: 32767,
        }
    }
}

impl PortRange {
    /// Parses `30000-32767` (or a single port).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s.trim().split_once('-').unwrap_or((s.trim(), s.trim()));
        let base: i32 = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid port range {s:?}"))?;
        let last: i32 = b
            .trim()
            .parse()
            .map_err(|_| format!("invalid port range {s:?}"))?;
        if !(1..=65535).contains(&base) || !(1..=65535).contains(&last) || base > last {
            return Err(format!(
                "invalid port range {s:?}: want FIRST-LAST within 1-65535"
            ));
        }
        Ok(PortRange { base, last })
    }

    /// Whether the port is in the range.
    pub fn contains(&self, port: i32) -> bool {
        (self.base..=self.last).contains(&port)
    }

    /// A free port, random first, then a linear walk; `None` when all are taken.
    pub fn pick(&self, taken: &HashSet<i32>) -> Option<i32> {
        let mut rng = rand::thread_rng();
        for _ in 0..16 {
            let p = rng.gen_range(self.base..=self.last);
            if !taken.contains(&p) {
                return Some(p);
            }
        }
        let span = self.last - self.base + 1;
        let start = rng.gen_range(0..span);
        (0..span)
            .map(|i| self.base + (start + i) % span)
            .find(|p| !taken.contains(p))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.base, self.last)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_sizes() {
        let cases = [
            ("10.96.0.0/12", Family::V4, (1u128 << 20) - 2),
            ("10.0.0.0/28", Family::V4, 14),
            ("10.0.0.7/28", Family::V4, 14),
            ("fd00:10:96::/112", Family::V6, (1u128 << 16) - 1),
            ("fd00::/124", Family::V6, 15),
        ];
        for (cidr, fam, size) in cases {
            let r = IpRange::new(cidr.parse().unwrap()).unwrap();
            assert_eq!(r.family(), fam, "{cidr}");
            assert_eq!(r.size(), size, "{cidr}");
        }
        assert!(IpRange::new("10.0.0.0/29".parse().unwrap()).is_err());
        let r = IpRange::new("10.0.0.0/28".parse().unwrap()).unwrap();
        assert!(!r.contains(&ip("10.0.0.0")));
        assert!(r.contains(&ip("10.0.0.1")));
        assert!(r.contains(&ip("10.0.0.14")));
        assert!(!r.contains(&ip("10.0.0.15")), "broadcast");
        assert!(!r.contains(&ip("10.0.1.1")));
        assert!(!r.contains(&ip("fd00::1")));
        let r6 = IpRange::new("fd00::/124".parse().unwrap()).unwrap();
        assert!(!r6.contains(&ip("fd00::")));
        assert!(r6.contains(&ip("fd00::f")));
        assert!(IpRange::new("fd00::/125".parse().unwrap()).is_err());
    }

    #[test]
    fn pick_fills_the_whole_range_without_repeats() {
        for cidr in ["10.0.0.0/28", "10.0.0.0/24", "fd00::/120"] {
            let r = IpRange::new(cidr.parse().unwrap()).unwrap();
            let mut taken = HashSet::new();
            for _ in 0..r.size() {
                let ip = r.pick(&taken).unwrap();
                assert!(r.contains(&ip), "{cidr}: {ip}");
                assert!(taken.insert(ip), "{cidr}: {ip} twice");
            }
            assert_eq!(r.pick(&taken), None, "{cidr} is full");
        }
    }

    #[test]
    fn dynamic_picks_avoid_the_static_subrange() {
        let r = IpRange::new("10.96.0.0/24".parse().unwrap()).unwrap();
        // 254 usable, static part is the first 16.
        for _ in 0..200 {
            let ip = r.pick(&HashSet::new()).unwrap();
            assert!(ip > self::ip("10.96.0.16"), "{ip}");
        }
    }

    #[test]
    fn parse_cidr_lists() {
        assert_eq!(parse_service_cidrs("10.96.0.0/12").unwrap().len(), 1);
        let dual = parse_service_cidrs("10.96.0.0/12, fd00:10:96::/112").unwrap();
        assert_eq!(dual[0].family(), Family::V4);
        assert_eq!(dual[1].family(), Family::V6);
        assert!(parse_service_cidrs("10.96.0.0/12,10.0.0.0/16").is_err());
        assert!(parse_service_cidrs("nonsense").is_err());
        assert!(parse_service_cidrs("").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("30000-32767").unwrap(),
            PortRange::default()
        );
        assert!(PortRange::parse("32767-30000").is_err());
        assert!(PortRange::parse("0-10").is_err());
        assert!(PortRange::parse("a-b").is_err());
        let r = PortRange::parse("30000-30009").unwrap();
        let mut taken = HashSet::new();
        for _ in 0..10 {
            let p = r.pick(&taken).unwrap();
            assert!(r.contains(p));
            assert!(taken.insert(p));
        }
        assert_eq!(r.pick(&taken), None);
    }
}
