//! Table tests: each case is a manifest as a user writes it, defaulted as the client
//! does, then validated; the expectation is the set of fields named in errors (and
//! for a few, the exact message the API server prints).

#![allow(clippy::unwrap_used)]

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::kind::Object;

/// Defaults and validates `manifest` on create; returns the fields with errors.
fn fields<K: Object + DeserializeOwned>(manifest: Value) -> Vec<String> {
    let mut obj: K = serde_json::from_value(manifest).unwrap();
    obj.apply_defaults();
    obj.validate(None).into_iter().map(|e| e.field).collect()
}

/// Like [`fields`], for an update from `old` to `new` (both defaulted).
fn update_fields<K: Object + DeserializeOwned>(old: Value, new: Value) -> Vec<String> {
    let mut old: K = serde_json::from_value(old).unwrap();
    old.apply_defaults();
    let mut new: K = serde_json::from_value(new).unwrap();
    new.apply_defaults();
    new.validate(Some(&old))
        .into_iter()
        .map(|e| e.field)
        .collect()
}

/// Every error message for `manifest`, rendered as the API server renders one.
fn messages<K: Object + DeserializeOwned>(manifest: Value) -> Vec<String> {
    let mut obj: K = serde_json::from_value(manifest).unwrap();
    obj.apply_defaults();
    obj.validate(None).iter().map(ToString::to_string).collect()
}

/// Merges `patch` into `base` (objects recursively, `null` removes).
fn merged(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    merge(&mut out, patch);
    out
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

mod service {
    use k8s_openapi::api::core::v1::Service;

    use super::*;

    fn base() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
        })
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("minimal", json!({}), vec![]),
            (
                "name not a DNS-1035 label",
                json!({"metadata": {"name": "1web"}}),
                vec!["metadata.name"],
            ),
            (
                "name with dots",
                json!({"metadata": {"name": "web.shop"}}),
                vec!["metadata.name"],
            ),
            (
                "no namespace",
                json!({"metadata": {"namespace": null}}),
                vec!["metadata.namespace"],
            ),
            (
                "no ports",
                json!({"spec": {"ports": []}}),
                vec!["spec.ports"],
            ),
            (
                "headless without ports",
                json!({"spec": {"clusterIP": "None", "ports": []}}),
                vec![],
            ),
            (
                "port 0 (targetPort defaults to it)",
                json!({"spec": {"ports": [{"port": 0}]}}),
                vec!["spec.ports[0].port", "spec.ports[0].targetPort"],
            ),
            (
                "port too big",
                json!({"spec": {"ports": [{"port": 70000, "targetPort": 8080}]}}),
                vec!["spec.ports[0].port"],
            ),
            (
                "bad protocol",
                json!({"spec": {"ports": [{"port": 80, "protocol": "HTTP"}]}}),
                vec!["spec.ports[0].protocol"],
            ),
            (
                "named target port",
                json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}]}}),
                vec![],
            ),
            (
                "bad named target port",
                json!({"spec": {"ports": [{"port": 80, "targetPort": "HTTP_PORT"}]}}),
                vec!["spec.ports[0].targetPort"],
            ),
            (
                "target port out of range",
                json!({"spec": {"ports": [{"port": 80, "targetPort": 65536}]}}),
                vec!["spec.ports[0].targetPort"],
            ),
            (
                "two ports need names",
                json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}}),
                vec!["spec.ports[0].name", "spec.ports[1].name"],
            ),
            (
                "duplicate port names",
                json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 443}]}}),
                vec!["spec.ports[1].name"],
            ),
            (
                "duplicate port and protocol",
                json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}}),
                vec!["spec.ports[1]"],
            ),
            (
                "bad type",
                json!({"spec": {"type": "Ingress"}}),
                vec!["spec.type"],
            ),
            ("node port", json!({"spec": {"type": "NodePort"}}), vec![]),
            (
                "load balancer",
                json!({"spec": {"type": "LoadBalancer"}}),
                vec![],
            ),
            (
                "node port on ClusterIP",
                json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
                vec!["spec.ports[0].nodePort"],
            ),
            (
                "headless node port",
                json!({"spec": {"type": "NodePort", "clusterIP": "None"}}),
                vec!["spec.clusterIPs[0]"],
            ),
            (
                "bad cluster IP",
                json!({"spec": {"clusterIP": "10.0.0.300"}}),
                vec!["spec.clusterIPs[0]"],
            ),
            (
                "cluster IP",
                json!({"spec": {"clusterIP": "10.96.0.10"}}),
                vec![],
            ),
            (
                "external name",
                json!({"spec": {"type": "ExternalName", "externalName": "db.example.com", "selector": null, "ports": null}}),
                vec![],
            ),
            (
                "external name not a name",
                json!({"spec": {"type": "ExternalName", "externalName": "-bad-", "ports": null}}),
                vec!["spec.externalName"],
            ),
            (
                "external name missing",
                json!({"spec": {"type": "ExternalName", "ports": null}}),
                vec!["spec.externalName"],
            ),
            (
                "bad session affinity",
                json!({"spec": {"sessionAffinity": "Cookie"}}),
                vec!["spec.sessionAffinity"],
            ),
            (
                "client IP affinity",
                json!({"spec": {"sessionAffinity": "ClientIP"}}),
                vec![],
            ),
            (
                "affinity timeout too long",
                json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}}),
                vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds"],
            ),
            (
                "affinity config without ClientIP",
                json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}),
                vec!["spec.sessionAffinityConfig"],
            ),
            (
                "bad internal traffic policy",
                json!({"spec": {"internalTrafficPolicy": "Node"}}),
                vec!["spec.internalTrafficPolicy"],
            ),
            (
                "local internal traffic",
                json!({"spec": {"internalTrafficPolicy": "Local"}}),
                vec![],
            ),
            (
                "external policy on ClusterIP",
                json!({"spec": {"externalTrafficPolicy": "Local"}}),
                vec!["spec.externalTrafficPolicy"],
            ),
            (
                "traffic distribution",
                json!({"spec": {"trafficDistribution": "PreferSameZone"}}),
                vec![],
            ),
            (
                "bad traffic distribution",
                json!({"spec": {"trafficDistribution": "Nearby"}}),
                vec!["spec.trafficDistribution"],
            ),
            (
                "bad selector value",
                json!({"spec": {"selector": {"app": "web site"}}}),
                vec!["spec.selector"],
            ),
            (
                "bad label",
                json!({"metadata": {"labels": {"-x": "y"}}}),
                vec!["metadata.labels"],
            ),
            (
                "bad ip family",
                json!({"spec": {"ipFamilies": ["IPv5"]}}),
                vec!["spec.ipFamilies[0]"],
            ),
            (
                "bad ip family policy",
                json!({"spec": {"ipFamilyPolicy": "Both"}}),
                vec!["spec.ipFamilyPolicy"],
            ),
        ];
        for (name, patch, want) in cases {
            let mut got = fields::<Service>(merged(&base(), patch));
            got.sort();
            got.dedup();
            assert_eq!(got, want, "case {name:?}");
        }
    }

    #[test]
    fn defaults_are_kubernetes() {
        let mut svc: Service = serde_json::from_value(merged(
            &base(),
            json!({"spec": {"type": "NodePort", "sessionAffinity": "ClientIP"}}),
        ))
        .unwrap();
        svc.apply_defaults();
        let v = serde_json::to_value(&svc).unwrap();
        assert_eq!(v["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(v["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(v["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(v["spec"]["internalTrafficPolicy"], "Cluster");
        assert_eq!(
            v["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        let mut plain: Service = serde_json::from_value(base()).unwrap();
        plain.apply_defaults();
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(v["spec"]["type"], "ClusterIP");
        assert_eq!(v["spec"]["sessionAffinity"], "None");
        assert!(v["spec"].get("externalTrafficPolicy").is_none());
        // Defaulting is idempotent.
        let mut again = plain.clone();
        again.apply_defaults();
        assert_eq!(again, plain);
    }

    #[test]
    fn messages_read_like_the_api_server() {
        let msgs = messages::<Service>(merged(
            &base(),
            json!({"spec": {"ports": [{"port": 0}], "sessionAffinity": "Cookie"}}),
        ));
        assert!(
            msgs.contains(
                &"spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"spec.sessionAffinity: Unsupported value: \"Cookie\": supported values: \"ClientIP\", \"None\"".to_string()),
            "{msgs:?}"
        );
    }

    #[test]
    fn updates() {
        let with_ip = merged(&base(), json!({"spec": {"clusterIP": "10.96.0.10"}}));
        let moved = merged(&base(), json!({"spec": {"clusterIP": "10.96.0.11"}}));
        assert_eq!(
            update_fields::<Service>(with_ip.clone(), moved),
            vec!["spec.clusterIPs[0]"]
        );
        let relabelled = merged(&with_ip, json!({"metadata": {"labels": {"tier": "front"}}}));
        assert!(update_fields::<Service>(with_ip.clone(), relabelled).is_empty());
        let renamed = merged(&with_ip, json!({"metadata": {"name": "other"}}));
        assert_eq!(
            update_fields::<Service>(with_ip, renamed),
            vec!["metadata.name"]
        );
    }
}

mod pod {
    use k8s_openapi::api::core::v1::Pod;

    use super::*;

    fn base() -> Value {
        json!({
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
        })
    }

    fn container(patch: Value) -> Value {
        let c = merged(&json!({"name": "app", "image": "nginx:1.27"}), patch);
        json!({"spec": {"containers": [c]}})
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("minimal", json!({}), vec![]),
            ("bad name", json!({"metadata": {"name": "Web_0"}}), vec!["metadata.name"]),
            ("no containers", json!({"spec": {"containers": []}}), vec!["spec.containers"]),
            ("no image", container(json!({"image": null})), vec!["spec.containers[0].image"]),
            ("bad container name", container(json!({"name": "App"})), vec!["spec.containers[0].name"]),
            (
                "duplicate container names",
                json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}}),
                vec!["spec.containers[1].name"],
            ),
            ("container port", container(json!({"ports": [{"containerPort": 8080, "name": "http"}]})), vec![]),
            (
                "container port 0",
                container(json!({"ports": [{"containerPort": 0}]})),
                vec!["spec.containers[0].ports[0].containerPort"],
            ),
            (
                "bad port protocol",
                container(json!({"ports": [{"containerPort": 80, "protocol": "ICMP"}]})),
                vec!["spec.containers[0].ports[0].protocol"],
            ),
            (
                "port name too long",
                container(json!({"ports": [{"containerPort": 80, "name": "a-very-long-port-name"}]})),
                vec!["spec.containers[0].ports[0].name"],
            ),
            (
                "requests within limits",
                container(json!({"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}})),
                vec![],
            ),
            (
                "request over limit",
                container(json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}})),
                vec!["spec.containers[0].resources.requests"],
            ),
            (
                "negative request",
                container(json!({"resources": {"requests": {"memory": "-1Mi"}}})),
                vec!["spec.containers[0].resources.requests[memory]"],
            ),
            ("bad restart policy", json!({"spec": {"restartPolicy": "Sometimes"}}), vec!["spec.restartPolicy"]),
            ("bad dns policy", json!({"spec": {"dnsPolicy": "Cluster"}}), vec!["spec.dnsPolicy"]),
            (
                "negative grace period",
                json!({"spec": {"terminationGracePeriodSeconds": -1}}),
                vec!["spec.terminationGracePeriodSeconds"],
            ),
            (
                "toleration",
                json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}}),
                vec![],
            ),
            (
                "toleration Exists with value",
                json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists", "value": "yes"}]}}),
                vec!["spec.tolerations[0].operator"],
            ),
            (
                "toleration bad effect",
                json!({"spec": {"tolerations": [{"key": "gpu", "value": "yes", "effect": "NoRun"}]}}),
                vec!["spec.tolerations[0].effect"],
            ),
            (
                "tolerationSeconds without NoExecute",
                json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]}}),
                vec!["spec.tolerations[0].effect"],
            ),
            (
                "node affinity",
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}}),
                vec![],
            ),
            (
                "node affinity In without values",
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]}}}}}),
                vec!["spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values"],
            ),
            (
                "node affinity Gt with two values",
                json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["1", "2"]}]}]}}}}}),
                vec!["spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values"],
            ),
            (
                "selector Exists with values",
                json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]}}]}}),
                vec!["spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values"],
            ),
            (
                "selector bad operator",
                json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}}]}}),
                vec!["spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].operator"],
            ),
            (
                "spread constraint",
                json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
                vec![],
            ),
            (
                "spread constraint skew 0",
                json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}}),
                vec!["spec.topologySpreadConstraints[0].maxSkew"],
            ),
            ("bad node selector", json!({"spec": {"nodeSelector": {"zone": "a b"}}}), vec!["spec.nodeSelector"]),
            (
                "volume mount of a missing volume",
                container(json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]})),
                vec!["spec.containers[0].volumeMounts[0].name"],
            ),
            (
                "volume mount",
                merged(
                    &container(json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]})),
                    json!({"spec": {"volumes": [{"name": "data"}]}}),
                ),
                vec![],
            ),
            ("relaxed env name", container(json!({"env": [{"name": "1X", "value": "y"}]})), vec![]),
            ("bad env name", container(json!({"env": [{"name": "A=B", "value": "y"}]})), vec!["spec.containers[0].env[0].name"]),
            ("bad hostname", json!({"spec": {"hostname": "Web"}}), vec!["spec.hostname"]),
            ("bad preemption policy", json!({"spec": {"preemptionPolicy": "Always"}}), vec!["spec.preemptionPolicy"]),
        ];
        for (name, patch, want) in cases {
            let mut got = fields::<Pod>(merged(&base(), patch));
            got.sort();
            got.dedup();
            assert_eq!(got, want, "case {name:?}");
        }
    }

    #[test]
    fn defaults_are_kubernetes() {
        let mut pod: Pod = serde_json::from_value(merged(
            &base(),
            json!({"spec": {"containers": [
                {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}],
                 "readinessProbe": {"httpGet": {"port": 80}},
                 "resources": {"limits": {"cpu": "1"}}},
                {"name": "side", "image": "registry:5000/side:v2"}
            ], "volumes": [{"name": "scratch"}]}}),
        ))
        .unwrap();
        pod.apply_defaults();
        let v = serde_json::to_value(&pod).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["enableServiceLinks"], true);
        let app = &spec["containers"][0];
        assert_eq!(app["imagePullPolicy"], "Always", "untagged pulls always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(app["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(app["terminationMessagePolicy"], "File");
        assert_eq!(app["ports"][0]["protocol"], "TCP");
        assert_eq!(app["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(app["readinessProbe"]["httpGet"]["path"], "/");
        assert_eq!(app["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(
            app["resources"]["requests"]["cpu"], "1",
            "requests from limits"
        );
        assert!(spec["volumes"][0]["emptyDir"].is_object());
        assert_eq!(v["status"]["phase"], "Pending");
        let mut again = pod.clone();
        again.apply_defaults();
        assert_eq!(again, pod, "defaulting is idempotent");
        assert!(pod.validate(None).is_empty(), "{:?}", pod.validate(None));
    }

    #[test]
    fn updates() {
        let bound = merged(&base(), json!({"spec": {"nodeName": "n1"}}));
        assert!(
            update_fields::<Pod>(base(), bound.clone()).is_empty(),
            "binding"
        );
        let rebound = merged(&base(), json!({"spec": {"nodeName": "n2"}}));
        assert_eq!(update_fields::<Pod>(bound, rebound), vec!["spec"]);
        let new_image = container(json!({"image": "nginx:1.28"}));
        assert!(update_fields::<Pod>(base(), merged(&base(), new_image)).is_empty());
        let new_port = container(json!({"ports": [{"containerPort": 81}]}));
        assert_eq!(
            update_fields::<Pod>(base(), merged(&base(), new_port)),
            vec!["spec"]
        );
        let status = merged(
            &base(),
            json!({"status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}}),
        );
        assert!(
            update_fields::<Pod>(base(), status).is_empty(),
            "status changes"
        );
    }
}

mod small_kinds {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
    use k8s_openapi::api::scheduling::v1::PriorityClass;

    use super::*;

    #[test]
    fn namespaces() {
        assert!(fields::<Namespace>(json!({"metadata": {"name": "shop"}})).is_empty());
        assert_eq!(
            fields::<Namespace>(json!({"metadata": {"name": "shop.eu"}})),
            vec!["metadata.name"]
        );
        assert_eq!(
            fields::<Namespace>(
                json!({"metadata": {"name": "shop"}, "spec": {"finalizers": ["mine"]}})
            ),
            vec!["spec.finalizers[0]"]
        );
    }

    #[test]
    fn config_maps() {
        let cm = |patch: Value| {
            merged(
                &json!({"metadata": {"name": "cfg", "namespace": "shop"}}),
                patch,
            )
        };
        assert!(fields::<ConfigMap>(cm(json!({"data": {"a.conf": "x", "B_2": "y"}}))).is_empty());
        assert_eq!(
            fields::<ConfigMap>(cm(json!({"metadata": {"name": "Bad_Name"}}))),
            vec!["metadata.name"]
        );
        assert_eq!(
            fields::<ConfigMap>(cm(json!({"data": {"a/b": "x"}}))),
            vec!["data[a/b]"]
        );
        assert_eq!(
            fields::<ConfigMap>(cm(json!({"data": {"k": "x"}, "binaryData": {"k": "eA=="}}))),
            vec!["data[k]"]
        );
        let big = "x".repeat(1024 * 1024 + 1);
        assert_eq!(
            fields::<ConfigMap>(cm(json!({"data": {"k": big}}))),
            vec![""]
        );
        let frozen = cm(json!({"data": {"k": "1"}, "immutable": true}));
        assert_eq!(
            update_fields::<ConfigMap>(
                frozen.clone(),
                merged(&frozen, json!({"data": {"k": "2"}}))
            ),
            vec!["data"]
        );
    }

    #[test]
    fn nodes() {
        let node = |patch: Value| merged(&json!({"metadata": {"name": "n1"}}), patch);
        assert!(fields::<Node>(node(
            json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}})
        ))
        .is_empty());
        assert_eq!(
            fields::<Node>(node(
                json!({"spec": {"taints": [{"key": "gpu", "effect": "Never"}]}})
            )),
            vec!["spec.taints[0].effect"]
        );
        assert_eq!(
            fields::<Node>(node(
                json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}, {"key": "gpu", "value": "x", "effect": "NoSchedule"}]}})
            )),
            vec!["spec.taints[1]"]
        );
        let mut n: Node =
            serde_json::from_value(node(json!({"status": {"capacity": {"cpu": "4"}}}))).unwrap();
        n.apply_defaults();
        assert_eq!(
            serde_json::to_value(&n).unwrap()["status"]["allocatable"]["cpu"],
            "4"
        );
    }

    #[test]
    fn endpoint_slices() {
        let slice = |patch: Value| {
            merged(
                &json!({
                    "metadata": {"name": "web-abc", "namespace": "shop"},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": true}}],
                    "ports": [{"name": "http", "port": 8080}]
                }),
                patch,
            )
        };
        assert!(fields::<EndpointSlice>(slice(json!({}))).is_empty());
        assert_eq!(
            fields::<EndpointSlice>(slice(json!({"addressType": "IPv5"}))),
            vec!["addressType"]
        );
        assert_eq!(
            fields::<EndpointSlice>(slice(json!({"endpoints": [{"addresses": ["fd00::1"]}]}))),
            vec!["endpoints[0].addresses[0]"]
        );
        assert_eq!(
            fields::<EndpointSlice>(slice(
                json!({"ports": [{"name": "http", "port": 8080}, {"name": "http", "port": 8081}]})
            )),
            vec!["ports[1].name"]
        );
        let mut s: EndpointSlice = serde_json::from_value(slice(json!({}))).unwrap();
        s.apply_defaults();
        assert_eq!(s.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn events() {
        let ev = |patch: Value| {
            merged(
                &json!({"metadata": {"name": "web.1a2b", "namespace": "shop"},
                        "involvedObject": {"kind": "Service", "name": "web", "namespace": "shop"},
                        "reason": "Broken", "message": "it broke"}),
                patch,
            )
        };
        assert!(fields::<k8s_openapi::api::core::v1::Event>(ev(json!({}))).is_empty());
        assert_eq!(
            fields::<k8s_openapi::api::core::v1::Event>(ev(
                json!({"involvedObject": {"namespace": "other"}})
            )),
            vec!["involvedObject.namespace"]
        );
        assert_eq!(
            fields::<k8s_openapi::api::core::v1::Event>(ev(json!({"type": "Error"}))),
            vec!["type"]
        );
    }

    #[test]
    fn leases() {
        let lease = |spec: Value| json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": spec});
        assert!(fields::<Lease>(lease(
            json!({"holderIdentity": "n1", "leaseDurationSeconds": 40})
        ))
        .is_empty());
        assert_eq!(
            fields::<Lease>(lease(json!({"leaseDurationSeconds": 0}))),
            vec!["spec.leaseDurationSeconds"]
        );
        assert_eq!(
            fields::<Lease>(lease(json!({"leaseTransitions": -1}))),
            vec!["spec.leaseTransitions"]
        );
    }

    #[test]
    fn priority_classes() {
        let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(fields::<PriorityClass>(pc("high", 1000)).is_empty());
        assert_eq!(
            fields::<PriorityClass>(pc("huge", 1_000_000_001)),
            vec!["value"]
        );
        assert_eq!(
            fields::<PriorityClass>(pc("system-mine", 10)),
            vec!["metadata.name"]
        );
        assert!(fields::<PriorityClass>(pc("system-node-critical", 2_000_001_000)).is_empty());
        assert_eq!(
            fields::<PriorityClass>(pc("system-node-critical", 5)),
            vec!["metadata.name"]
        );
        assert_eq!(
            update_fields::<PriorityClass>(pc("high", 1000), pc("high", 2000)),
            vec!["value"]
        );
        let mut p: PriorityClass = serde_json::from_value(pc("high", 1)).unwrap();
        p.apply_defaults();
        assert_eq!(p.preemption_policy.as_deref(), Some("PreemptLowerPriority"));
    }

    #[test]
    fn ip_addresses_and_service_cidrs() {
        let ip = |name: &str| json!({"metadata": {"name": name}, "spec": {"parentRef": {"resource": "services", "namespace": "shop", "name": "web"}}});
        assert!(fields::<IPAddress>(ip("10.96.0.10")).is_empty());
        assert!(fields::<IPAddress>(ip("2001:db8::a")).is_empty());
        assert_eq!(
            fields::<IPAddress>(ip("2001:DB8::A")),
            vec!["metadata.name"]
        );
        assert_eq!(fields::<IPAddress>(ip("web")), vec!["metadata.name"]);
        let cidr =
            |cidrs: Value| json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": cidrs}});
        assert!(fields::<ServiceCIDR>(cidr(json!(["10.96.0.0/12"]))).is_empty());
        assert!(fields::<ServiceCIDR>(cidr(json!(["10.96.0.0/12", "fd00::/108"]))).is_empty());
        assert_eq!(
            fields::<ServiceCIDR>(cidr(json!(["10.96.0.1/12"]))),
            vec!["spec.cidrs[0]"]
        );
        assert_eq!(
            fields::<ServiceCIDR>(cidr(json!(["10.96.0.0/12", "10.0.0.0/8"]))),
            vec!["spec.cidrs"]
        );
        assert_eq!(fields::<ServiceCIDR>(cidr(json!([]))), vec!["spec.cidrs"]);
        assert!(update_fields::<ServiceCIDR>(
            cidr(json!(["10.96.0.0/12"])),
            cidr(json!(["10.96.0.0/12", "fd00::/108"]))
        )
        .is_empty());
        assert_eq!(
            update_fields::<ServiceCIDR>(
                cidr(json!(["10.96.0.0/12"])),
                cidr(json!(["10.0.0.0/12"]))
            ),
            vec!["spec.cidrs"]
        );
    }
}
