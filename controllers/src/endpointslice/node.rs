//! What the EndpointSlice decision needs to know about a node, and how to read
//! it from a Node object.

use capstan_api::k8s_openapi::api::core::v1::Node;

use super::LABEL_TOPOLOGY_ZONE;

/// Node labels that keep a node out of the zone CPU shares (control planes
/// rarely run the Service's clients).
const EXCLUDED_ROLE_LABELS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// A node as the EndpointSlice controller sees it; the map passed to
/// [`super::desired_slices`] is keyed by node name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The `topology.kubernetes.io/zone` label; it becomes the endpoints' zone.
    pub zone: Option<String>,
    /// `status.allocatable.cpu` in millicores; weighs the zone for hints.
    pub allocatable_cpu_millis: i64,
    /// The Ready condition is True; only ready nodes weigh their zone.
    pub ready: bool,
    /// Labelled `node-role.kubernetes.io/control-plane` (or `master`): left out
    /// of the zone shares, as in Kubernetes.
    pub control_plane: bool,
}

impl NodeInfo {
    /// Reads zone, allocatable CPU, readiness and role from a Node. An
    /// allocatable CPU that does not parse counts as none (which disables
    /// topology hints cluster-wide, as a missing one does in Kubernetes).
    pub fn from_node(node: &Node) -> Self {
        let labels = node.metadata.labels.as_ref();
        let status = node.status.as_ref();
        NodeInfo {
            zone: labels
                .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
                .filter(|z| !z.is_empty())
                .cloned(),
            allocatable_cpu_millis: status
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get("cpu"))
                .and_then(|q| cpu_millis(&q.0))
                .unwrap_or(0),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
            control_plane: labels
                .is_some_and(|l| EXCLUDED_ROLE_LABELS.iter().any(|k| l.contains_key(*k))),
        }
    }
}

/// A resource quantity (`2`, `1500m`, `0.5`, `1k`, `2Ki`, `1e3`) in thousandths,
/// rounded up as Kubernetes' `MilliValue` does. Integer arithmetic, so that
/// `1500m` is 1500 and not 1501.
fn cpu_millis(quantity: &str) -> Option<i64> {
    let q = quantity.trim();
    let q = q.strip_prefix('+').unwrap_or(q);
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = format!("{whole}{frac}");
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = digits.parse().ok()?;
    let (exp10, binary): (i32, i128) = match suffix {
        "" => (0, 1),
        "n" => (-9, 1),
        "u" => (-6, 1),
        "m" => (-3, 1),
        "k" => (3, 1),
        "M" => (6, 1),
        "G" => (9, 1),
        "T" => (12, 1),
        "P" => (15, 1),
        "E" => (18, 1),
        "Ki" => (0, 1 << 10),
        "Mi" => (0, 1 << 20),
        "Gi" => (0, 1 << 30),
        "Ti" => (0, 1 << 40),
        "Pi" => (0, 1 << 50),
        "Ei" => (0, 1 << 60),
        s if s.starts_with(['e', 'E']) => (s[1..].parse().ok()?, 1),
        _ => return None,
    };
    let exp = exp10
        .checked_add(3)?
        .checked_sub(i32::try_from(frac.len()).ok()?)?;
    let value = mantissa.checked_mul(binary)?;
    let millis = if exp >= 0 {
        value.checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?
    } else {
        match 10i128.checked_pow(exp.unsigned_abs()) {
            Some(div) => (value + div - 1) / div,
            None => i128::from(value > 0),
        }
    };
    i64::try_from(millis).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use capstan_api::k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use capstan_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn from_node() {
        let node = |labels: &[(&str, &str)], cpu: Option<&str>, ready: Option<&str>| Node {
            metadata: capstan_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: cpu.map(|c| [("cpu".to_string(), Quantity(c.to_string()))].into()),
                conditions: ready.map(|r| {
                    vec![NodeCondition {
                        type_: "Ready".to_string(),
                        status: r.to_string(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cases = [
            (
                "zoned worker",
                node(
                    &[(LABEL_TOPOLOGY_ZONE, "zone-a")],
                    Some("3500m"),
                    Some("True"),
                ),
                NodeInfo {
                    zone: Some("zone-a".to_string()),
                    allocatable_cpu_millis: 3500,
                    ready: true,
                    control_plane: false,
                },
            ),
            (
                "control plane, not ready",
                node(
                    &[
                        (LABEL_TOPOLOGY_ZONE, "zone-b"),
                        ("node-role.kubernetes.io/control-plane", ""),
                    ],
                    Some("2"),
                    Some("False"),
                ),
                NodeInfo {
                    zone: Some("zone-b".to_string()),
                    allocatable_cpu_millis: 2000,
                    ready: false,
                    control_plane: true,
                },
            ),
            (
                "legacy master label, empty zone, no status",
                node(
                    &[
                        (LABEL_TOPOLOGY_ZONE, ""),
                        ("node-role.kubernetes.io/master", ""),
                    ],
                    None,
                    None,
                ),
                NodeInfo {
                    zone: None,
                    allocatable_cpu_millis: 0,
                    ready: false,
                    control_plane: true,
                },
            ),
            (
                "unknown readiness, unparsable CPU",
                node(&[], Some("lots"), Some("Unknown")),
                NodeInfo::default(),
            ),
        ];
        for (name, n, want) in cases {
            assert_eq!(NodeInfo::from_node(&n), want, "{name}");
        }
    }

    #[test]
    fn cpu_quantities() {
        let cases = [
            ("2", Some(2000)),
            ("1500m", Some(1500)),
            ("0.5", Some(500)),
            ("100m", Some(100)),
            ("1k", Some(1_000_000)),
            ("1Ki", Some(1_024_000)),
            ("1e3", Some(1_000_000)),
            ("250u", Some(1)),
            ("0.1", Some(100)),
            ("+3", Some(3000)),
            ("1.5e3", Some(1_500_000)),
            ("7n", Some(1)),
            ("0", Some(0)),
            ("", None),
            ("abc", None),
            ("1x", None),
        ];
        for (q, want) in cases {
            assert_eq!(cpu_millis(q), want, "{q}");
        }
    }
}
