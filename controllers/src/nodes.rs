//! Node lifecycle: nodes heartbeat by renewing their Lease in `kube-node-lease`.
//! A node not heard from for `--node-monitor-grace-period` (40 s) gets
//! Ready=Unknown and the `node.kubernetes.io/unreachable` taints, and its pods are
//! marked not ready, so their endpoints leave the services' ready sets. When the
//! node reports Ready again (its agent writes the condition), the taints go.
//!
//! Heartbeat age is measured by this controller's clock, from when it last saw the
//! lease or the node's Ready condition change, as kube-controller-manager does, so
//! clock skew between machines does not matter.

use std::collections::HashMap;
use std::time::Duration;

use capstan_api::informer::{self, Store};
use capstan_api::k8s_openapi::api::coordination::v1::Lease;
use capstan_api::k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use capstan_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use capstan_api::{Client, Error, Kind, ObjectRef};
use tokio::time::Instant;

/// The taint key of an unreachable node.
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The namespace of node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What to change on a node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeChange {
    /// Set Ready (and the other conditions the agent owns) to Unknown.
    pub mark_unknown: bool,
    /// Add the unreachable taints (NoSchedule and NoExecute).
    pub add_unreachable_taints: bool,
    /// Remove the unreachable taints.
    pub remove_unreachable_taints: bool,
    /// Mark the node's pods not ready.
    pub mark_pods_not_ready: bool,
}

/// The pure decision for one node, given how long ago its heartbeat was seen.
pub fn decide(node: &Node, since_heartbeat: Duration, grace: Duration) -> NodeChange {
    let ready = ready_status(node);
    let tainted = has_unreachable_taint(node);
    if since_heartbeat > grace {
        NodeChange {
            mark_unknown: ready.as_deref() != Some("Unknown"),
            add_unreachable_taints: !tainted,
            remove_unreachable_taints: false,
            mark_pods_not_ready: ready.as_deref() != Some("Unknown"),
        }
    } else {
        NodeChange {
            remove_unreachable_taints: tainted && ready.as_deref() != Some("Unknown"),
            ..Default::default()
        }
    }
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn has_unreachable_taint(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == UNREACHABLE_TAINT))
}

/// Applies a decision to a node object.
pub fn apply_change(node: &mut Node, change: &NodeChange, now: &Time) {
    if change.mark_unknown {
        let status = node.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|c| c.type_ == t) {
                Some(c) => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
                None => conditions.push(NodeCondition {
                    type_: t.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(now.clone()),
                    ..Default::default()
                }),
            }
        }
    }
    let spec = node.spec.get_or_insert_with(Default::default);
    if change.add_unreachable_taints {
        let taints = spec.taints.get_or_insert_with(Vec::new);
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints
                .iter()
                .any(|t| t.key == UNREACHABLE_TAINT && t.effect == effect)
            {
                taints.push(Taint {
                    key: UNREACHABLE_TAINT.into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then(|| now.clone()),
                    value: None,
                });
            }
        }
    }
    if change.remove_unreachable_taints {
        if let Some(taints) = spec.taints.as_mut() {
            taints.retain(|t| t.key != UNREACHABLE_TAINT);
        }
    }
}

/// Runs the node lifecycle controller until the task is aborted, checking every
/// `period` (kube's node-monitor-period is 5 s).
pub async fn run(client: Client, grace: Duration, period: Duration) {
    let nodes: Store<Node> = Store::default();
    let leases: Store<Lease> = Store::default();
    let pods: Store<Pod> = {
        let mut idx = informer::indexers::standard::<Pod>();
        idx.push((
            informer::indexers::NODE_NAME,
            informer::indexers::pod_node_name,
        ));
        Store::new(idx)
    };
    let _informers = informer::TaskGuard(vec![
        informer::spawn(client.clone(), None, nodes.clone(), |_| {}),
        informer::spawn(
            client.clone(),
            Some(NODE_LEASE_NAMESPACE.into()),
            leases.clone(),
            |_| {},
        ),
        informer::spawn(client.clone(), None, pods.clone(), |_| {}),
    ]);
    nodes.wait_ready().await;
    leases.wait_ready().await;
    pods.wait_ready().await;
    // node name -> (what we last saw, when we saw it change)
    let mut seen: HashMap<String, (String, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let all = nodes.list();
        seen.retain(|name, _| all.iter().any(|n| n.metadata.name.as_deref() == Some(name)));
        for node in all {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let lease = leases.get(&ObjectRef::namespaced(
                Kind::Lease,
                NODE_LEASE_NAMESPACE,
                &name,
            ));
            // A heartbeat is a new lease renewTime or a new Ready condition heartbeat.
            let beat = format!(
                "{:?}|{:?}",
                lease
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.renew_time.clone()),
                node.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .map(|c| (c.status.clone(), c.last_heartbeat_time.clone())),
            );
            let entry = seen
                .entry(name.clone())
                .or_insert_with(|| (beat.clone(), now));
            if entry.0 != beat {
                *entry = (beat, now);
            }
            let change = decide(&node, now.duration_since(entry.1), grace);
            if change == NodeChange::default() {
                continue;
            }
            if let Err(e) = write_change(&client, &name, &change).await {
                tracing::warn!(node = %name, error = %e, "node lifecycle update failed; will retry");
                continue;
            }
            if change.mark_pods_not_ready {
                tracing::warn!(node = %name, "node stopped posting status: marked Unknown, tainted unreachable");
                for pod in pods.by_index(informer::indexers::NODE_NAME, &name) {
                    if let Err(e) = mark_pod_not_ready(&client, &ObjectRef::of(pod.as_ref())).await
                    {
                        tracing::warn!(node = %name, error = %e, "could not mark pod not ready");
                    }
                }
            }
        }
    }
}

async fn write_change(client: &Client, name: &str, change: &NodeChange) -> Result<(), Error> {
    let r = ObjectRef::cluster(Kind::Node, name);
    for _ in 0..5 {
        let mut node: Node = client.get(&r).await?;
        apply_change(&mut node, change, &capstan_api::client::now());
        match client.update(node).await {
            Ok(_) => return Ok(()),
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict { object: r })
}

/// Sets a pod's Ready condition to False, as kube's MarkPodsNotReady does.
async fn mark_pod_not_ready(client: &Client, r: &ObjectRef) -> Result<(), Error> {
    for _ in 0..5 {
        let mut pod: Pod = client.get(r).await?;
        let status = pod.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        match conditions.iter_mut().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == "False" => return Ok(()),
            Some(c) => {
                c.status = "False".into();
                c.last_transition_time = Some(capstan_api::client::now());
            }
            None => conditions.push(PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(capstan_api::client::now()),
                ..Default::default()
            }),
        }
        match client.update(pod).await {
            Ok(_) => return Ok(()),
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict { object: r.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(ready: Option<&str>, tainted: bool) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.status = Some(NodeStatus {
            conditions: ready.map(|s| {
                vec![NodeCondition {
                    type_: "Ready".into(),
                    status: s.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        if tainted {
            n.spec = Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: UNREACHABLE_TAINT.into(),
                    effect: "NoExecute".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            });
        }
        n
    }

    #[test]
    fn decisions() {
        let grace = Duration::from_secs(40);
        let fresh = Duration::from_secs(10);
        let stale = Duration::from_secs(41);
        let cases = [
            (
                "healthy",
                node(Some("True"), false),
                fresh,
                NodeChange::default(),
            ),
            (
                "goes silent",
                node(Some("True"), false),
                stale,
                NodeChange {
                    mark_unknown: true,
                    add_unreachable_taints: true,
                    mark_pods_not_ready: true,
                    ..Default::default()
                },
            ),
            (
                "silent, already handled",
                node(Some("Unknown"), true),
                stale,
                NodeChange::default(),
            ),
            (
                "silent, taint removed by hand",
                node(Some("Unknown"), false),
                stale,
                NodeChange {
                    add_unreachable_taints: true,
                    ..Default::default()
                },
            ),
            (
                "back but agent not reporting yet",
                node(Some("Unknown"), true),
                fresh,
                NodeChange::default(),
            ),
            (
                "back and Ready",
                node(Some("True"), true),
                fresh,
                NodeChange {
                    remove_unreachable_taints: true,
                    ..Default::default()
                },
            ),
            (
                "never reported",
                node(None, false),
                stale,
                NodeChange {
                    mark_unknown: true,
                    add_unreachable_taints: true,
                    mark_pods_not_ready: true,
                    ..Default::default()
                },
            ),
            (
                "exactly at grace",
                node(Some("True"), false),
                grace,
                NodeChange::default(),
            ),
        ];
        for (name, n, age, want) in cases {
            assert_eq!(decide(&n, age, grace), want, "{name}");
        }
    }

    #[test]
    fn apply_marks_and_taints() {
        let mut n = node(Some("True"), false);
        let now = capstan_api::client::now();
        let change = decide(&n, Duration::from_secs(50), Duration::from_secs(40));
        apply_change(&mut n, &change, &now);
        assert_eq!(ready_status(&n).as_deref(), Some("Unknown"));
        let taints = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        assert_eq!(taints.len(), 2);
        assert!(taints.iter().all(|t| t.key == UNREACHABLE_TAINT));
        // Applying again adds nothing twice.
        apply_change(
            &mut n,
            &NodeChange {
                add_unreachable_taints: true,
                ..Default::default()
            },
            &now,
        );
        assert_eq!(
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .map(Vec::len),
            Some(2)
        );
        apply_change(
            &mut n,
            &NodeChange {
                remove_unreachable_taints: true,
                ..Default::default()
            },
            &now,
        );
        assert!(!has_unreachable_taint(&n));
    }
}
