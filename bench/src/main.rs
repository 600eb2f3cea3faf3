//! `capstan-bench`: runs capstan and etcd side by side, with the same client
//! (the `etcd-client` crate) on the same machine, and prints a Markdown table
//! of both figures and their ratio.
//!
//! Every phase is bounded in request count and in time and stops by itself;
//! the servers it starts listen on loopback only and are killed (by PID) when
//! the run ends, also on error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use etcd_client::{Client, GetOptions, WatchOptions};
use futures::StreamExt;

#[derive(Parser, Debug)]
#[command(about = "Benchmark capstan against etcd, side by side, on loopback")]
struct Args {
    /// The capstan binary (build it with --release).
    #[arg(long, default_value = "target/release/capstan")]
    capstan: PathBuf,
    /// The etcd binary (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Cluster sizes to run.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<usize>,
    /// Concurrent clients for the put test.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    clients: Vec<usize>,
    /// Multiplies every request count (0.1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Directory for data dirs (default: a temp dir; put it on the disk you want to measure).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Etcd,
    Capstan,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Capstan => "capstan",
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Servers of one run; killed by PID on drop.
struct Cluster {
    children: Vec<Child>,
    endpoints: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    fn start(system: System, bin: &Path, n: usize, dir: &Path) -> Result<Cluster> {
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push((free_port()?, free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p, _))| format!("m{i}=http://127.0.0.1:{p}"))
            .collect();
        let initial = initial.join(",");
        let mut cluster = Cluster {
            children: Vec::new(),
            endpoints: Vec::new(),
        };
        for (i, (c, p, m)) in ports.iter().enumerate() {
            let data = dir.join(format!("{}-{n}-m{i}", system.name()));
            let log = std::fs::File::create(dir.join(format!("{}-{n}-m{i}.log", system.name())))?;
            let mut cmd = Command::new(bin);
            if system == System::Capstan {
                cmd.arg("server");
            }
            cmd.args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{p}"),
                ])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "bench"])
                .args(["--listen-metrics-urls", &format!("http://127.0.0.1:{m}")]);
            if system == System::Etcd {
                cmd.args(["--logger", "zap", "--log-level", "error"]);
            }
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            cluster.children.push(
                cmd.spawn()
                    .with_context(|| format!("starting {}", bin.display()))?,
            );
            cluster.endpoints.push(format!("127.0.0.1:{c}"));
        }
        Ok(cluster)
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = Client::connect(&self.endpoints, None).await {
                if c.put("bench/ready", "1", None).await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("cluster {:?} not ready within 30 s", self.endpoints);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Peak resident memory (VmHWM) summed over members, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/status", c.id())).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .sum::<f64>()
            / 1024.0
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

fn stats(mut lat_us: Vec<u32>, elapsed: Duration, errors: usize) -> Stats {
    lat_us.sort_unstable();
    let pct = |p: f64| {
        if lat_us.is_empty() {
            0.0
        } else {
            let i = ((lat_us.len() as f64 - 1.0) * p).round() as usize;
            f64::from(lat_us[i]) / 1000.0
        }
    };
    Stats {
        ops_per_sec: lat_us.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

async fn connections(endpoints: &[String], n: usize) -> Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Client::connect(endpoints, None).await?);
    }
    Ok(out)
}

type Measured = tokio::task::JoinHandle<(Vec<u32>, usize)>;

/// Joins measuring tasks (latencies in µs, error count) into one [`Stats`].
async fn gather(tasks: Vec<Measured>, started: Instant) -> Result<Stats> {
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    Ok(stats(lat, started.elapsed(), errors))
}

/// `clients` concurrent writers put 256-byte values until `total` puts are done
/// or `limit` passes.
async fn put_bench(
    endpoints: &[String],
    clients: usize,
    total: usize,
    limit: Duration,
) -> Result<Stats> {
    let conns = connections(endpoints, clients.div_ceil(8).min(32)).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let value = vec![b'x'; 256];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let mut c = conns[i % conns.len()].clone();
        let next = next.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || started.elapsed() > limit {
                    break;
                }
                let key = format!("bench/put/{:08}", (n * 7919) % 100_000);
                let t = Instant::now();
                match c.put(key, value.clone(), None).await {
                    Ok(_) => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    gather(tasks, started).await
}

/// Loads `keys` keys under one prefix, then reads the whole prefix `reads` times
/// (linearizable) from 4 concurrent readers.
async fn range_bench(
    endpoints: &[String],
    keys: usize,
    reads: usize,
    limit: Duration,
) -> Result<Stats> {
    let conns = connections(endpoints, 4).await?;
    put_keys(&conns, "bench/range/", keys, 64).await?;
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in conns {
        let mut c = c.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while done.fetch_add(1, Ordering::Relaxed) < reads && started.elapsed() < limit {
                let t = Instant::now();
                match c
                    .get("bench/range/", Some(GetOptions::new().with_prefix()))
                    .await
                {
                    Ok(r) if r.kvs().len() == keys => lat.push(t.elapsed().as_micros() as u32),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    gather(tasks, started).await
}

/// `watchers` watchers on one prefix; `events` puts under it; returns delivered
/// events per second (all watchers together) and whether every watcher got all.
async fn watch_bench(
    endpoints: &[String],
    watchers: usize,
    events: usize,
    limit: Duration,
) -> Result<(f64, Duration, bool)> {
    let conns = connections(endpoints, 10).await?;
    let received = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::new();
    for i in 0..watchers {
        let mut c = conns[i % conns.len()].clone();
        let stream = c
            .watch("bench/watch/", Some(WatchOptions::new().with_prefix()))
            .await?;
        streams.push(stream);
    }
    let started = Instant::now();
    let mut readers = Vec::new();
    for mut stream in streams {
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < events {
                match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.next())
                    .await
                {
                    Ok(Some(Ok(resp))) => {
                        mine += resp.events().len();
                        received.fetch_add(resp.events().len(), Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            mine >= events
        }));
    }
    let writers = put_keys(&conns, "bench/watch/", events, 64).await;
    let mut all = writers.is_ok();
    for r in readers {
        all &= r.await.unwrap_or(false);
    }
    let elapsed = started.elapsed();
    let total = received.load(Ordering::Relaxed);
    Ok((total as f64 / elapsed.as_secs_f64(), elapsed, all))
}

async fn put_keys(conns: &[Client], prefix: &str, n: usize, writers: usize) -> Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..writers {
        let mut c = conns[i % conns.len()].clone();
        let next = next.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok::<_, etcd_client::Error>(());
                }
                c.put(format!("{prefix}{k:08}"), vec![b'w'; 256], None)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[derive(Default)]
struct Row {
    name: String,
    etcd: String,
    capstan: String,
    ratio: String,
}

fn ratio(capstan: f64, etcd: f64, higher_is_better: bool) -> String {
    if capstan <= 0.0 || etcd <= 0.0 {
        return "n/a".into();
    }
    if higher_is_better {
        format!("{:.2}x", capstan / etcd)
    } else {
        format!("{:.2}x", etcd / capstan)
    }
}

async fn run_system(
    system: System,
    bin: &Path,
    n: usize,
    args: &Args,
    dir: &Path,
) -> Result<Vec<(String, f64, String)>> {
    let cluster = Cluster::start(system, bin, n, dir)?;
    cluster.wait_ready().await?;
    let eps = cluster.endpoints.clone();
    let scale = |x: usize| ((x as f64 * args.scale) as usize).max(10);
    let mut out = Vec::new();
    for &clients in &args.clients {
        let total = scale(match clients {
            0..=1 => 2_000,
            2..=16 => 20_000,
            _ => 60_000,
        });
        let s = put_bench(&eps, clients, total, Duration::from_secs(40)).await?;
        eprintln!("{} n={n} put c={clients}: {s:?}", system.name());
        let tag = |what: &str| format!("put, {clients} client(s): {what}");
        out.push((tag("ops/s"), s.ops_per_sec, format!("{:.0}", s.ops_per_sec)));
        out.push((tag("p50 ms"), s.p50_ms, format!("{:.2}", s.p50_ms)));
        out.push((tag("p99 ms"), s.p99_ms, format!("{:.2}", s.p99_ms)));
        if s.errors > 0 {
            eprintln!("  ({} errors)", s.errors);
        }
    }
    let r = range_bench(&eps, 10_000, scale(200), Duration::from_secs(40)).await?;
    eprintln!("{} n={n} range 10k: {r:?}", system.name());
    out.push((
        "range 10k keys: ranges/s".into(),
        r.ops_per_sec,
        format!("{:.1}", r.ops_per_sec),
    ));
    out.push((
        "range 10k keys: p50 ms".into(),
        r.p50_ms,
        format!("{:.1}", r.p50_ms),
    ));
    let (rate, took, complete) =
        watch_bench(&eps, 100, scale(100_000), Duration::from_secs(120)).await?;
    eprintln!(
        "{} n={n} watch: {rate:.0} events/s in {took:?}, complete={complete}",
        system.name()
    );
    out.push((
        "watch 100 watchers: delivered events/s".into(),
        rate,
        format!("{rate:.0}{}", if complete { "" } else { " (incomplete)" }),
    ));
    let rss = cluster.peak_rss_mib();
    out.push((
        "peak RSS, all members, MiB".into(),
        rss,
        format!("{rss:.0}"),
    ));
    Ok(out)
}

fn higher_is_better(name: &str) -> bool {
    !(name.contains(" ms") || name.contains("RSS"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    for (what, p) in [("capstan", &args.capstan), ("etcd", &args.etcd)] {
        if !p.exists() {
            bail!(
                "{what} binary {} not found (scripts/bench.sh builds and installs both)",
                p.display()
            );
        }
    }
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    let version = Command::new(&args.etcd).arg("--version").output()?;
    let etcd_version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    println!("<!-- {etcd_version}; scale {} -->", args.scale);
    for &n in &args.members {
        let e = rt.block_on(run_system(System::Etcd, &args.etcd, n, &args, &dir))?;
        let c = rt.block_on(run_system(System::Capstan, &args.capstan, n, &args, &dir))?;
        let rows: Vec<Row> = e
            .iter()
            .zip(&c)
            .map(|((name, ev, es), (_, cv, cs))| Row {
                name: name.clone(),
                etcd: es.clone(),
                capstan: cs.clone(),
                ratio: ratio(*cv, *ev, higher_is_better(name)),
            })
            .collect();
        println!("\n### {n} member(s)\n");
        println!("| test | etcd | capstan | capstan vs etcd (>1 = better) |");
        println!("|---|---:|---:|---:|");
        for r in rows {
            println!("| {} | {} | {} | {} |", r.name, r.etcd, r.capstan, r.ratio);
        }
    }
    Ok(())
}
