//! `capstan-churn`: endless-churn disk check. Writers overwrite a fixed key set
//! as fast as they can for a bounded time while automatic compaction runs; the
//! data dirs are sampled on disk. With compaction, log purging behind snapshots
//! and RocksDB's own compaction, disk use must level off instead of growing with
//! the number of writes.
//!
//! ```text
//! capstan-churn --capstan target/release/capstan --members 3 --duration 240 \
//!     --retention 30s --keys 1000 --value-size 1024 --sample 20
//! ```
//!
//! Prints a Markdown table of samples (time, writes so far, revision, compacted
//! revision, bytes on disk per member) and stops by itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_check::cluster::Cluster;
use etcd_client::{Client, GetOptions};
use rand::{Rng, SeedableRng};

struct Args {
    capstan: PathBuf,
    members: usize,
    duration: u64,
    retention: String,
    keys: usize,
    value_size: usize,
    writers: usize,
    sample: u64,
    dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        capstan: PathBuf::from("target/release/capstan"),
        members: 3,
        duration: 240,
        retention: "30s".into(),
        keys: 1000,
        value_size: 1024,
        writers: 32,
        sample: 20,
        dir: std::env::temp_dir().join("capstan-churn"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--capstan" => a.capstan = PathBuf::from(val()?),
            "--members" => a.members = num(val()?)? as usize,
            "--duration" => a.duration = num(val()?)?,
            "--retention" => a.retention = val()?,
            "--keys" => a.keys = num(val()?)?.max(1) as usize,
            "--value-size" => a.value_size = num(val()?)? as usize,
            "--writers" => a.writers = num(val()?)?.max(1) as usize,
            "--sample" => a.sample = num(val()?)?.max(1),
            "--dir" => a.dir = PathBuf::from(val()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn revision(ep: &str) -> Option<i64> {
    let mut c = Client::connect([ep], None).await.ok()?;
    let r = c
        .get("/", Some(GetOptions::new().with_serializable()))
        .await
        .ok()?;
    Some(r.header()?.revision())
}

/// The compacted revision is in no response; `/metrics` has it.
async fn compacted(metrics_url: &str) -> i64 {
    let addr = metrics_url.trim_start_matches("http://");
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return -1;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return -1;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body).await;
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_compact_revision "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
        .unwrap_or(-1)
}

#[tokio::main]
async fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let extra = [
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        a.retention.as_str(),
    ];
    let cluster = match Cluster::start_with(&a.capstan, a.members, &a.dir, "churn", &extra).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starting the cluster: {e}");
            std::process::exit(1);
        }
    };
    let eps = cluster.endpoints();
    // Wait until the cluster serves.
    let ready = Instant::now();
    loop {
        if revision(&eps[0]).await.is_some() {
            break;
        }
        if ready.elapsed() > Duration::from_secs(30) {
            eprintln!("the cluster did not serve within 30 s");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let mut tasks = Vec::new();
    for w in 0..a.writers {
        let (eps, writes, keys, size) = (eps.clone(), writes.clone(), a.keys, a.value_size);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let mut client = None;
            while Instant::now() < deadline {
                if client.is_none() {
                    client = Client::connect([&eps[w % eps.len()]], None).await.ok();
                }
                let Some(c) = client.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let key = format!("/churn/{:05}", rng.gen_range(0..keys));
                let value: String = (0..size).map(|_| rng.gen_range('a'..='z')).collect();
                match c.put(key, value, None).await {
                    Ok(_) => {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => client = None,
                }
            }
        }));
    }
    println!(
        "<!-- capstan-churn: {} members, {} keys of {} bytes, {} writers, retention {}, {} s -->",
        a.members, a.keys, a.value_size, a.writers, a.retention, a.duration
    );
    let mut header = "| t (s) | writes | revision | compacted | ".to_string();
    header += &(0..a.members)
        .map(|i| format!("m{i} on disk (MiB)"))
        .collect::<Vec<_>>()
        .join(" | ");
    println!("{header} |");
    println!("|{}", "---|".repeat(4 + a.members));
    let started = Instant::now();
    loop {
        let t = started.elapsed().as_secs();
        let rev = revision(&eps[0]).await.unwrap_or(-1);
        let comp = compacted(&cluster.nodes[0].metrics_url).await;
        let sizes: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("{:.1}", dir_bytes(&n.data_dir) as f64 / (1 << 20) as f64))
            .collect();
        println!(
            "| {t} | {} | {rev} | {comp} | {} |",
            writes.load(Ordering::Relaxed),
            sizes.join(" | ")
        );
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(a.sample)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
}
