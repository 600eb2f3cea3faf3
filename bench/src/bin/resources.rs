//! Resource-layer benchmarks, bounded and self-stopping:
//!
//! - `informer`: N pods (default 150,000, Kubernetes' documented per-cluster limit)
//!   stored as Kubernetes-shaped JSON; a fresh process runs an informer and reports
//!   the time to list them into its cache, its resident memory, and how fast 10,000
//!   later updates reach the cache by watch. Run against capstan and etcd as the
//!   store, side by side.
//! - `slices`: S services x P pods (default 10,000 x 10); the EndpointSlice
//!   controller starts cold and the clock runs until every service has its slice
//!   with all its endpoints.
//!
//! Usage: `capstan-resources-bench --capstan BIN [--etcd BIN] [--pods N]
//! [--services S] [--pods-per-service P]`; prints a Markdown table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capstan_api::client::encode;
use capstan_api::informer::{self, Store};
use capstan_api::k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Node, Pod, PodCondition, PodIP, PodSpec, PodStatus,
    Service, ServicePort, ServiceSpec,
};
use capstan_api::k8s_openapi::api::discovery::v1::EndpointSlice;
use capstan_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use capstan_api::{Client, Object, ObjectRef};
use clap::Parser;
use futures::stream::{self, StreamExt};

#[derive(Parser, Debug)]
struct Args {
    /// The capstan binary.
    #[arg(long)]
    capstan: PathBuf,
    /// The etcd binary (the peer store); skipped when absent.
    #[arg(long)]
    etcd: Option<PathBuf>,
    /// Pods for the informer benchmark.
    #[arg(long, default_value_t = 150_000)]
    pods: usize,
    /// Services for the EndpointSlice benchmark.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Pods per service for the EndpointSlice benchmark.
    #[arg(long, default_value_t = 10)]
    pods_per_service: usize,
    /// Internal: run only the informer measurement against this endpoint.
    #[arg(long, hide = true)]
    measure_informer: Option<String>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One store process; killed by PID on drop.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(bin: &Path, capstan: bool, dir: &Path) -> Result<Server> {
    let (c, p) = (free_port()?, free_port()?);
    let mut cmd = Command::new(bin);
    if capstan {
        cmd.arg("server");
    }
    cmd.args(["--name", "m0", "--data-dir"])
        .arg(dir)
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
        .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{p}"),
        ])
        .args(["--initial-cluster", &format!("m0=http://127.0.0.1:{p}")])
        .args(["--quota-backend-bytes", &(8u64 << 30).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Server(child, format!("127.0.0.1:{c}")))
}

async fn connect(endpoint: &str) -> Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(c) = Client::connect(&[endpoint.to_string()]).await {
            if c.etcd()
                .kv_client()
                .put("bench/ready", "1", None)
                .await
                .is_ok()
            {
                return Ok(c);
            }
        }
        if Instant::now() > deadline {
            bail!("{endpoint} not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A pod shaped like a small real one (labels, a container with resources and a
/// named port, status with IP and conditions): about 1.3 KiB of JSON.
fn pod(ns: &str, name: &str, app: &str, ip: u32, node: usize) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some(ns.into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("00000000-0000-4000-8000-{ip:012x}"));
    p.metadata.labels = Some(
        [
            ("app".to_string(), app.to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into(),
    );
    p.spec = Some(PodSpec {
        node_name: Some(format!("node-{node}")),
        containers: vec![Container {
            name: "app".into(),
            image: Some("registry.example/app:1.2.3".into()),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    });
    p.apply_defaults();
    let addr = std::net::Ipv4Addr::from(0x0a00_0000 + ip).to_string();
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(addr.clone()),
        pod_ips: Some(vec![PodIP { ip: addr }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

/// Writes objects straight to their keys, 256 at a time: the benchmark is about
/// reading them, so loading skips the client's per-object checks.
async fn load<K: Object>(client: &Client, objs: Vec<K>) -> Result<()> {
    let kv = client.etcd();
    let mut puts = stream::iter(objs.into_iter().map(|o| {
        let mut kv = kv.kv_client();
        async move {
            let key = ObjectRef::of(&o).key();
            kv.put(key, encode(&o)?, None).await?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(256);
    while let Some(r) = puts.next().await {
        r?;
    }
    Ok(())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Runs in a fresh process so its memory is the informer's alone.
async fn measure_informer(endpoint: &str) -> Result<()> {
    let client = connect(endpoint).await?;
    let before = rss_mib();
    let store: Store<Pod> = Store::default();
    let start = Instant::now();
    let _guard = informer::TaskGuard(vec![informer::spawn(
        client.clone(),
        None,
        store.clone(),
        |_| {},
    )]);
    tokio::time::timeout(Duration::from_secs(600), store.wait_ready()).await?;
    let list_secs = start.elapsed().as_secs_f64();
    let n = store.len();
    let after = rss_mib();
    // 10,000 updates through the watch.
    let updates = 10_000.min(n);
    let pods: Vec<Pod> = store
        .list()
        .into_iter()
        .take(updates)
        .map(|p| {
            let mut p = p.as_ref().clone();
            p.metadata.annotations = Some([("bench".to_string(), "1".to_string())].into());
            p
        })
        .collect();
    let start = Instant::now();
    load(&client, pods).await?;
    let target = client
        .etcd()
        .kv_client()
        .get("bench/ready", None)
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or(0)
        - 1;
    let reached = store.wait_revision(target, Duration::from_secs(300)).await;
    let watch_secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"objects": n, "list_secs": list_secs, "rss_mib": after, "cache_mib": after - before,
                           "updates": updates, "watch_secs": watch_secs, "caught_up": reached})
    );
    Ok(())
}

async fn informer_bench(args: &Args, bin: &Path, capstan: bool) -> Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let server = start(bin, capstan, dir.path())?;
    let client = connect(&server.1).await?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some("bench".into());
    load(&client, vec![ns]).await?;
    let load_start = Instant::now();
    let mut batch = Vec::new();
    for i in 0..args.pods {
        batch.push(pod(
            "bench",
            &format!("pod-{i:06}"),
            &format!("app-{}", i / 10),
            i as u32,
            i % 500,
        ));
        if batch.len() == 10_000 {
            load(&client, std::mem::take(&mut batch)).await?;
        }
    }
    load(&client, batch).await?;
    eprintln!(
        "loaded {} pods in {:.1}s",
        args.pods,
        load_start.elapsed().as_secs_f64()
    );
    let me = std::env::current_exe()?;
    let out = Command::new(me)
        .args(["--capstan"])
        .arg(&args.capstan)
        .args(["--measure-informer", &server.1])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("informer measurement failed");
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn slices_bench(args: &Args, bin: &Path, capstan: bool) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let server = start(bin, capstan, dir.path())?;
    let client = connect(&server.1).await?;
    let mut ns = Namespace::default();
    ns.metadata.name = Some("bench".into());
    load(&client, vec![ns]).await?;
    let mut services = Vec::new();
    let mut pods = Vec::new();
    for s in 0..args.services {
        let name = format!("svc-{s:05}");
        let mut svc = Service::default();
        svc.metadata.namespace = Some("bench".into());
        svc.metadata.name = Some(name.clone());
        svc.metadata.uid = Some(format!("10000000-0000-4000-8000-{s:012x}"));
        svc.spec = Some(ServiceSpec {
            selector: Some([("app".to_string(), name.clone())].into()),
            cluster_ip: Some(std::net::Ipv4Addr::from(0x0a60_0000 + s as u32 + 1).to_string()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        services.push(svc);
        for p in 0..args.pods_per_service {
            let i = s * args.pods_per_service + p;
            pods.push(pod(
                "bench",
                &format!("{name}-{p}"),
                &name,
                i as u32,
                i % 500,
            ));
        }
    }
    // Pods on nodes the controller does not know are left out, as in Kubernetes.
    let nodes: Vec<Node> = (0..500)
        .map(|i| {
            let mut n = Node::default();
            n.metadata.name = Some(format!("node-{i}"));
            n.metadata.labels = Some(
                [(
                    "topology.kubernetes.io/zone".to_string(),
                    format!("zone-{}", i % 3),
                )]
                .into(),
            );
            n
        })
        .collect();
    load(&client, nodes).await?;
    load(&client, pods).await?;
    load(&client, services).await?;
    let client = client.with_service_allocator(Arc::new(
        capstan_controllers::alloc::Allocator::new(Default::default()),
    ));
    let slices: Store<EndpointSlice> = Store::default();
    let _guard = informer::TaskGuard(vec![informer::spawn(
        client.clone(),
        None,
        slices.clone(),
        |_| {},
    )]);
    slices.wait_ready().await;
    let start = Instant::now();
    let controller = tokio::spawn(capstan_controllers::slices::run(
        client.clone(),
        capstan_controllers::endpointslice::Options {
            max_endpoints_per_slice: 100,
        },
        5,
    ));
    let want = args.services;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let full = slices
            .list()
            .iter()
            .filter(|s| s.endpoints.as_ref().map_or(0, Vec::len) == args.pods_per_service)
            .count();
        if full >= want {
            break;
        }
        if Instant::now() > deadline {
            controller.abort();
            bail!("EndpointSlices did not converge within 900 s ({full}/{want})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    controller.abort();
    Ok(secs)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(endpoint) = &args.measure_informer {
        return measure_informer(endpoint).await;
    }
    let mut systems: Vec<(&str, PathBuf, bool)> = vec![("capstan", args.capstan.clone(), true)];
    if let Some(etcd) = &args.etcd {
        systems.push(("etcd", etcd.clone(), false));
    }
    println!("## Informer: initial list + watch of {} pods\n", args.pods);
    println!("| store | list into cache (s) | informer RSS (MiB) | of which cache (MiB) | 10k updates by watch (s) |");
    println!("|---|---|---|---|---|");
    for (name, bin, capstan) in &systems {
        let r = informer_bench(&args, bin, *capstan).await?;
        println!(
            "| {name} | {:.2} | {:.0} | {:.0} | {:.2} |",
            r["list_secs"].as_f64().unwrap_or(0.0),
            r["rss_mib"].as_f64().unwrap_or(0.0),
            r["cache_mib"].as_f64().unwrap_or(0.0),
            r["watch_secs"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "\n## EndpointSlice sync: {} services x {} pods, cold start to converged\n",
        args.services, args.pods_per_service
    );
    println!("| store | time to converge (s) |");
    println!("|---|---|");
    for (name, bin, capstan) in &systems {
        let secs = slices_bench(&args, bin, *capstan).await?;
        println!("| {name} | {secs:.2} |");
    }
    Ok(())
}
