//! `capstan ctl` as a user runs it, a real process against a real `capstan server`:
//! Kubernetes manifests applied (created, then unchanged, then configured after an
//! edit, allocated addresses kept), read back as tables, JSON and YAML, described,
//! refused whole when one object is invalid, and deleted.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::{server_command_for, Cluster};
use serde_json::Value;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: shop-high
value: 1000
description: checkout path
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: hello
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: front
  namespace: shop
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
spec:
  clusterIP: None
  selector:
    app: db
  ports:
  - port: 5432
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels:
    app: web
spec:
  priorityClassName: shop-high
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - name: http
      containerPort: 8080
    resources:
      requests:
        cpu: 100m
        memory: 64Mi
"#;

struct Ctl {
    endpoint: String,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Output {
        server_command_for("ctl")
            .args(["--endpoints", &self.endpoint])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "capstan ctl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "capstan ctl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

fn lines(s: &str) -> Vec<&str> {
    let mut l: Vec<&str> = s.lines().collect();
    l.sort_unstable();
    l
}

#[test]
fn manifests_round_trip_through_ctl() {
    let cluster = Cluster::start(1);
    let ctl = Ctl {
        endpoint: format!("http://{}", cluster.endpoint(0)),
    };
    let manifest = cluster.dir().join("shop.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let file = manifest.to_str().unwrap();

    // Created, in an order that satisfies the namespace and the priority class.
    let out = ctl.ok(&["apply", "-f", file]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "namespace/shop created",
            "priorityclass.scheduling.k8s.io/shop-high created",
            "configmap/web-config created",
            "service/web created",
            "service/front created",
            "service/db created",
            "pod/web-0 created",
        ]
    );

    // Server-side defaults and allocations are there.
    let front = ctl.json(&["get", "svc", "front", "-n", "shop"]);
    let ip = front["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("10."),
        "allocated from the default range: {ip}"
    );
    let node_port = front["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert_eq!(front["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(front["spec"]["ports"][0]["protocol"], "TCP");
    let pod = ctl.json(&["get", "pod", "web-0", "-n", "shop"]);
    assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
    assert_eq!(pod["spec"]["priority"], 1000, "priority from the class");
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["status"]["phase"], "Pending");

    // Applying the same manifests again changes nothing.
    let out = ctl.ok(&["apply", "-f", file]);
    assert!(
        out.lines().all(|l| l.ends_with(" unchanged")),
        "second apply:\n{out}"
    );

    // An edit configures exactly what changed, and keeps the allocations.
    let edited = MANIFEST
        .replace("greeting: hello", "greeting: hi")
        .replace("targetPort: 8080", "targetPort: 8081");
    std::fs::write(&manifest, edited).unwrap();
    let out = ctl.ok(&["apply", "-f", file]);
    assert!(out.contains("configmap/web-config configured"), "{out}");
    assert!(out.contains("service/front configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    assert!(out.contains("pod/web-0 unchanged"), "{out}");
    let front = ctl.json(&["get", "svc", "front", "-n", "shop"]);
    assert_eq!(front["spec"]["clusterIP"], ip.as_str());
    assert_eq!(front["spec"]["ports"][0]["nodePort"], node_port);
    assert_eq!(front["spec"]["ports"][0]["targetPort"], 8081);
    let cm = ctl.json(&["get", "configmap", "web-config", "-n", "shop"]);
    assert_eq!(cm["data"]["greeting"], "hi");

    // Tables with kubectl's columns; YAML and lists parse back.
    let table = ctl.ok(&["get", "svc", "-n", "shop"]);
    let rows = lines(&table);
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.lines().next().unwrap().split_whitespace().eq([
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]),
        "{table}"
    );
    assert!(
        rows.iter().any(|r| r.split_whitespace().take(5).eq([
            "db",
            "ClusterIP",
            "None",
            "<none>",
            "5432/TCP"
        ])),
        "{table}"
    );
    let port_col = format!("80:{node_port}/TCP");
    assert!(
        rows.iter().any(|r| r.split_whitespace().take(5).eq([
            "front",
            "NodePort",
            ip.as_str(),
            "<none>",
            port_col.as_str()
        ])),
        "{table}"
    );
    let wide = ctl.ok(&["get", "pods", "-A", "-o", "wide"]);
    assert!(wide.starts_with("NAMESPACE "), "{wide}");
    assert!(wide.contains("READINESS GATES"), "{wide}");
    let yaml: Value =
        serde_norway::from_str(&ctl.ok(&["get", "services", "-n", "shop", "-o", "yaml"])).unwrap();
    assert_eq!(yaml["kind"], "List");
    assert_eq!(yaml["items"].as_array().unwrap().len(), 3);
    let names = ctl.ok(&["get", "svc", "-n", "shop", "-l", "app=web", "-o", "name"]);
    assert_eq!(names.trim(), "service/web");

    // describe shows the allocated address and the defaults.
    let described = ctl.ok(&["describe", "svc", "front", "-n", "shop"]);
    assert!(described.starts_with("Name:"), "{described}");
    assert!(
        described.contains(&format!(
            "NodePort:                 <unset>  {node_port}/TCP"
        )),
        "{described}"
    );
    assert!(described.contains(&ip), "{described}");
    assert!(
        described.contains("External Traffic Policy:  Cluster"),
        "{described}"
    );

    // One invalid object: the whole apply is refused with the field named, and the
    // valid object beside it is not written.
    let bad = cluster.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
  namespace: shop
data: {a: b}
---
apiVersion: v1
kind: Service
metadata:
  name: broken
  namespace: shop
spec:
  ports:
  - port: 80
    protocol: HTTP
"#,
    )
    .unwrap();
    let err = ctl.fails(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(
        err.contains(
            r#"Service "broken" is invalid: spec.ports[0].protocol: Unsupported value: "HTTP""#
        ),
        "{err}"
    );
    let err = ctl.fails(&["get", "configmap", "fine", "-n", "shop"]);
    assert!(err.contains("not found"), "{err}");
    let err = ctl.fails(&["apply", "-f", "/nonexistent/manifest.yaml"]);
    assert!(err.contains("/nonexistent/manifest.yaml"), "{err}");
    let err = ctl.fails(&["get", "deployments.apps.v99"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");

    // Delete by name, then the rest by manifest; the namespace goes last.
    assert_eq!(
        ctl.ok(&["delete", "svc", "web", "-n", "shop"]).trim(),
        r#"service "web" deleted"#
    );
    std::fs::write(&manifest, MANIFEST).unwrap();
    let err = ctl.fails(&["delete", "-f", file]);
    assert!(err.contains(r#"services "web" not found"#), "{err}");
    let empty = ctl.run(&["get", "svc", "-n", "shop"]);
    assert!(empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("No resources found in shop namespace."),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );
    // The address claims went with the Services.
    let ips = ctl.ok(&["get", "ipaddresses", "-o", "name"]);
    assert!(ips.trim().is_empty(), "leftover claims: {ips}");
}
