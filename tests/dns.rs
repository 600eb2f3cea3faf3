//! `capstan dns` as users meet it: a real process fed by a real `capstan server`
//! (objects written with `capstan ctl`), asked with `dig` over UDP and TCP, with an
//! upstream resolver that this test runs on loopback. Every record kind of the
//! Kubernetes DNS specification, NXDOMAIN vs NODATA, SRV additionals, PTR, TC then
//! TCP, forwarding and its cache, updates after changes, bad packets on the real
//! socket, and the CoreDNS metrics.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{free_port, output_text, run_bounded, server_command_for, Cluster, WAIT};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

// ---------------------------------------------------------------------------------------
// An upstream resolver on loopback
// ---------------------------------------------------------------------------------------

/// Answers `*.example.test` (A 192.0.2.1, TTL 60), `nx.example.test` (NXDOMAIN with
/// a SOA) and `big.example.test` TXT (too big for UDP: TC, then the whole answer on
/// TCP). Counts the questions it gets.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<Mutex<HashMap<String, usize>>>,
    tcp_queries: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let udp = UdpSocket::bind(addr).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let tcp_queries = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (asked, stop) = (asked.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(resp) = upstream_answer(&buf[..n], &asked, true) {
                        let _ = udp.send_to(&resp, from);
                    }
                }
            }));
        }
        {
            let (asked, stop, count) = (asked.clone(), stop.clone(), tcp_queries.clone());
            threads.push(thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).is_err() {
                        continue;
                    }
                    *count.lock().unwrap() += 1;
                    if let Some(resp) = upstream_answer(&q, &asked, false) {
                        let mut framed = (resp.len() as u16).to_be_bytes().to_vec();
                        framed.extend(resp);
                        let _ = s.write_all(&framed);
                    }
                }
            }));
        }
        Upstream {
            addr,
            asked,
            tcp_queries,
            stop,
            threads,
        }
    }

    fn asked(&self, name: &str) -> usize {
        self.asked.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn upstream_answer(
    query: &[u8],
    asked: &Mutex<HashMap<String, usize>>,
    udp: bool,
) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let name = question.name().to_lowercase().to_ascii();
    *asked.lock().unwrap().entry(name.clone()).or_default() += 1;
    let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    let owner = question.name().clone();
    let soa = || {
        Record::from_rdata(
            Name::from_ascii("example.test.").unwrap(),
            60,
            RData::SOA(SOA::new(
                Name::from_ascii("ns.example.test.").unwrap(),
                Name::from_ascii("admin.example.test.").unwrap(),
                1,
                60,
                60,
                60,
                60,
            )),
        )
    };
    match (name.as_str(), question.query_type()) {
        ("nx.example.test.", _) => {
            r.metadata.response_code = ResponseCode::NXDomain;
            r.add_authority(soa());
        }
        ("big.example.test.", RecordType::TXT) => {
            if udp {
                r.metadata.truncation = true;
            } else {
                for i in 0..30 {
                    r.add_answer(Record::from_rdata(
                        owner.clone(),
                        60,
                        RData::TXT(TXT::new(vec![format!("{i:03}-{}", "x".repeat(96))])),
                    ));
                }
            }
        }
        (n, RecordType::A) if n.ends_with(".example.test.") => {
            r.add_answer(Record::from_rdata(
                owner,
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        _ => {
            r.add_authority(soa());
        }
    }
    r.to_vec().ok()
}

// ---------------------------------------------------------------------------------------
// capstan dns, ctl and dig
// ---------------------------------------------------------------------------------------

/// The `capstan dns` process; killed (by PID) when dropped.
struct Dns {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Dns {
    fn start(store: &str, upstream: SocketAddr) -> Dns {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = server_command_for("dns")
            .args(["--endpoints", &format!("http://{store}")])
            .args(["--listen", &addr.to_string()])
            .args(["--upstream", &upstream.to_string()])
            .args(["--listen-metrics", &metrics.to_string()])
            .args(["--pods", "insecure"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Dns {
            child,
            addr,
            metrics,
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(store: &str, args: &[&str], input: Option<&str>) -> String {
    let mut cmd = server_command_for("ctl");
    cmd.args(["--endpoints", &format!("http://{store}")])
        .args(args);
    let out = run_bounded(cmd, input, WAIT);
    assert!(out.status.success(), "ctl {args:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What dig printed, by section.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
    raw: String,
}

impl Dig {
    /// Answer rdata of one type, sorted.
    fn values(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&rtype)).then(|| f[3..].join(" "))
            })
            .collect();
        v.sort();
        v
    }

    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

fn dig(dns: &Dns, args: &[&str]) -> Dig {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", dns.addr.ip()))
        .args(["-p", &dns.addr.port().to_string()])
        .args(["+tries=1", "+time=3", "+nocookie"])
        .args(args);
    let out = run_bounded(cmd, None, Duration::from_secs(20));
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut d = Dig {
        raw: raw.clone(),
        ..Default::default()
    };
    let mut section: Option<&str> = None;
    for line in raw.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            d.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = Some("answer");
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = Some("authority");
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = Some("additional");
        } else if line.trim().is_empty() || line.starts_with(';') {
            section = None;
        } else if let Some(s) = section {
            let f: Vec<&str> = line.split_whitespace().collect();
            let rec = format!("{} {} {} {}", f[0], f[1], f[3], f[4..].join(" "));
            match s {
                "answer" => d.answer.push(rec),
                "authority" => d.authority.push(rec),
                _ => d.additional.push(rec),
            }
        }
    }
    d
}

/// Asks until `ok` holds (bounded by `WAIT`); returns the last answer and how long
/// it took.
fn dig_until(dns: &Dns, args: &[&str], ok: impl Fn(&Dig) -> bool) -> (Dig, Duration) {
    let start = Instant::now();
    loop {
        let d = dig(dns, args);
        if ok(&d) {
            return (d, start.elapsed());
        }
        assert!(
            start.elapsed() < WAIT,
            "dig {args:?} never matched; last:\n{}",
            d.raw
        );
        thread::sleep(Duration::from_millis(50));
    }
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP}
  - {name: https, port: 8443}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-v4
  namespace: shop
  labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: dns-test}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: [10.0.0.1], hostname: db-0, conditions: {ready: true}}
- {addresses: [10.0.0.2], conditions: {ready: true}}
- {addresses: [10.0.0.3], hostname: db-2, conditions: {ready: false}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-v6
  namespace: shop
  labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: dns-test}
addressType: IPv6
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- {addresses: ["fd00::1"], conditions: {ready: true}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {type: ExternalName, externalName: www.example.test}
---
apiVersion: v1
kind: Service
metadata: {name: big, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
"#;

fn big_slice() -> String {
    let mut s = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: shop\n  labels: {kubernetes.io/service-name: big}\naddressType: IPv4\nports: [{name: http, port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for i in 0..60 {
        s.push_str(&format!("- addresses: [10.0.1.{}]\n", i + 1));
    }
    s
}

fn metrics(dns: &Dns) -> String {
    let mut s = TcpStream::connect(dns.metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn dig_against_capstan_dns() {
    let cluster = Cluster::start(1);
    let store = cluster.endpoint(0).to_string();
    let manifest = cluster.dir().join("dns.yaml");
    std::fs::write(&manifest, format!("{MANIFEST}---\n{}", big_slice())).unwrap();
    ctl(&store, &["apply", "-f", manifest.to_str().unwrap()], None);
    let svc: serde_json::Value = serde_json::from_str(&ctl(
        &store,
        &["get", "service", "web", "-n", "shop", "-o", "json"],
        None,
    ))
    .unwrap();
    let web_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();

    let upstream = Upstream::start();
    let dns = Dns::start(&store, upstream.addr);
    let (_, _) = dig_until(&dns, &["web.shop.svc.cluster.local"], |d| {
        d.status == "NOERROR"
    });

    // ClusterIP: A, SRV for named ports with the address as additional, PTR.
    let d = dig(&dns, &["web.shop.svc.cluster.local", "A"]);
    assert_eq!(d.values("A"), std::slice::from_ref(&web_ip));
    assert!(d.has_flag("aa"), "{}", d.raw);
    assert!(d.answer[0].contains(" 5 "), "TTL 5: {}", d.raw);
    let d = dig(&dns, &["_http._tcp.web.shop.svc.cluster.local", "SRV"]);
    assert_eq!(d.values("SRV"), ["0 100 80 web.shop.svc.cluster.local."]);
    assert_eq!(
        d.additional,
        [format!("web.shop.svc.cluster.local. 5 A {web_ip}")]
    );
    let d = dig(&dns, &["_dns._udp.web.shop.svc.cluster.local", "SRV"]);
    assert_eq!(d.values("SRV"), ["0 100 53 web.shop.svc.cluster.local."]);
    let d = dig(&dns, &["-x", &web_ip]);
    assert_eq!(d.values("PTR"), ["web.shop.svc.cluster.local."]);
    // Case does not matter; the question comes back as asked.
    let d = dig(&dns, &["WeB.sHoP.SVC.Cluster.Local", "A"]);
    assert_eq!(d.values("A"), std::slice::from_ref(&web_ip));
    assert!(d.raw.contains(";WeB.sHoP.SVC.Cluster.Local."), "{}", d.raw);

    // Headless: ready endpoints, per-endpoint names, SRV per endpoint, PTR.
    let d = dig(&dns, &["db.shop.svc.cluster.local", "A"]);
    assert_eq!(d.values("A"), ["10.0.0.1", "10.0.0.2"]);
    let d = dig(&dns, &["db.shop.svc.cluster.local", "AAAA"]);
    assert_eq!(d.values("AAAA"), ["fd00::1"]);
    let d = dig(&dns, &["db-0.db.shop.svc.cluster.local", "A"]);
    assert_eq!(d.values("A"), ["10.0.0.1"]);
    let d = dig(&dns, &["10-0-0-2.db.shop.svc.cluster.local", "A"]);
    assert_eq!(d.values("A"), ["10.0.0.2"]);
    let d = dig(&dns, &["_pg._tcp.db.shop.svc.cluster.local", "SRV"]);
    assert_eq!(
        d.values("SRV"),
        [
            "0 33 5432 10-0-0-2.db.shop.svc.cluster.local.",
            "0 33 5432 db-0.db.shop.svc.cluster.local.",
            "0 33 5432 fd00--1.db.shop.svc.cluster.local.",
        ]
    );
    let mut additional = d.additional.clone();
    additional.sort();
    assert_eq!(
        additional,
        [
            "10-0-0-2.db.shop.svc.cluster.local. 5 A 10.0.0.2",
            "db-0.db.shop.svc.cluster.local. 5 A 10.0.0.1",
            "fd00--1.db.shop.svc.cluster.local. 5 AAAA fd00::1",
        ]
    );
    let d = dig(&dns, &["-x", "10.0.0.1"]);
    assert_eq!(d.values("PTR"), ["db-0.db.shop.svc.cluster.local."]);
    let d = dig(&dns, &["-x", "fd00::1"]);
    assert_eq!(d.values("PTR"), ["fd00--1.db.shop.svc.cluster.local."]);

    // NXDOMAIN vs NODATA, both with the SOA.
    let d = dig(&dns, &["nope.shop.svc.cluster.local", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert!(
        d.authority[0]
            .starts_with("cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local."),
        "{}",
        d.raw
    );
    for name in [
        "db-2.db.shop.svc.cluster.local",
        "web.nope.svc.cluster.local",
        "_x._tcp.web.shop.svc.cluster.local",
    ] {
        assert_eq!(dig(&dns, &[name, "A"]).status, "NXDOMAIN", "{name}");
    }
    for (name, t) in [
        ("web.shop.svc.cluster.local", "TXT"),
        ("web.shop.svc.cluster.local", "AAAA"),
        ("shop.svc.cluster.local", "A"),
        ("_http._tcp.web.shop.svc.cluster.local", "A"),
    ] {
        let d = dig(&dns, &[name, t]);
        assert_eq!(
            (d.status.as_str(), d.answer.len()),
            ("NOERROR", 0),
            "{name} {t}"
        );
        assert_eq!(d.authority.len(), 1, "{name} {t}: SOA");
    }

    // Schema version, apex SOA and NS, pod records (insecure).
    assert_eq!(
        dig(&dns, &["dns-version.cluster.local", "TXT"]).values("TXT"),
        ["\"1.1.0\""]
    );
    let d = dig(&dns, &["cluster.local", "SOA"]);
    assert_eq!(d.answer.len(), 1);
    assert!(d.answer[0].contains("SOA ns.dns.cluster.local. hostmaster.cluster.local."));
    let d = dig(&dns, &["cluster.local", "NS"]);
    assert_eq!(d.values("NS"), ["ns.dns.cluster.local."]);
    assert_eq!(d.additional, ["ns.dns.cluster.local. 5 A 127.0.0.1"]);
    assert_eq!(
        dig(&dns, &["10-1-2-3.shop.pod.cluster.local", "A"]).values("A"),
        ["10.1.2.3"]
    );

    // ExternalName: the CNAME, and the target's address from upstream.
    let d = dig(&dns, &["ext.shop.svc.cluster.local", "A"]);
    assert_eq!(d.values("CNAME"), ["www.example.test."]);
    assert_eq!(d.values("A"), ["192.0.2.1"]);

    // Too big for 512 bytes: TC over UDP, the whole answer over TCP.
    let d = dig(
        &dns,
        &["big.shop.svc.cluster.local", "A", "+noedns", "+ignore"],
    );
    assert!(d.has_flag("tc"), "{}", d.raw);
    assert!(d.answer.len() < 60);
    let d = dig(&dns, &["big.shop.svc.cluster.local", "A", "+tcp"]);
    assert!(!d.has_flag("tc"));
    assert_eq!(d.values("A").len(), 60);
    // TCP pipelining: several queries on one connection, all answered.
    let d = dig(
        &dns,
        &[
            "+tcp",
            "+keepopen",
            "db.shop.svc.cluster.local",
            "web.shop.svc.cluster.local",
            "dns-version.cluster.local",
            "TXT",
        ],
    );
    assert_eq!(d.raw.matches("status: NOERROR").count(), 3, "{}", d.raw);

    // Forwarding, with a cache for positive and negative answers.
    let d = dig(&dns, &["www.example.test", "A"]);
    assert_eq!(d.values("A"), ["192.0.2.1"]);
    assert!(!d.has_flag("aa") && d.has_flag("ra"), "{}", d.raw);
    let asked = upstream.asked("www.example.test.");
    let d = dig(&dns, &["www.example.test", "A"]);
    assert_eq!(d.values("A"), ["192.0.2.1"]);
    assert_eq!(
        upstream.asked("www.example.test."),
        asked,
        "served from the cache"
    );
    for _ in 0..2 {
        assert_eq!(dig(&dns, &["nx.example.test", "A"]).status, "NXDOMAIN");
    }
    assert_eq!(
        upstream.asked("nx.example.test."),
        1,
        "negative answers are cached"
    );
    // The upstream truncates this one: the forwarder retries over TCP.
    let d = dig(&dns, &["big.example.test", "TXT", "+tcp"]);
    assert_eq!(d.values("TXT").len(), 30, "{}", d.raw);
    assert!(*upstream.tcp_queries.lock().unwrap() >= 1);

    // Changes in the store show up.
    let late = cluster.dir().join("late.yaml");
    std::fs::write(
        &late,
        "apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: shop}\nspec:\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    ctl(&store, &["apply", "-f", late.to_str().unwrap()], None);
    let (_, took) = dig_until(&dns, &["late.shop.svc.cluster.local"], |d| {
        d.status == "NOERROR"
    });
    eprintln!("new service answered after {took:?}");
    ctl(&store, &["delete", "service", "web", "-n", "shop"], None);
    let (_, took) = dig_until(&dns, &["web.shop.svc.cluster.local"], |d| {
        d.status == "NXDOMAIN"
    });
    eprintln!("deleted service gone after {took:?}");
    let (_, _) = dig_until(&dns, &["-x", &web_ip], |d| {
        d.status != "NOERROR" || d.answer.is_empty()
    });
    let slice = MANIFEST
        .split("---")
        .find(|d| d.contains("name: db-v4"))
        .unwrap()
        .replace(
            "{addresses: [10.0.0.2], conditions: {ready: true}}",
            "{addresses: [10.0.0.2], conditions: {ready: false}}",
        );
    let f = cluster.dir().join("slice.yaml");
    std::fs::write(&f, slice).unwrap();
    ctl(&store, &["apply", "-f", f.to_str().unwrap()], None);
    let (_, took) = dig_until(&dns, &["db.shop.svc.cluster.local"], |d| {
        d.values("A") == ["10.0.0.1"]
    });
    eprintln!("endpoint readiness change answered after {took:?}");

    // Bad packets on the real socket: answered or dropped, never a stall.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.connect(dns.addr).unwrap();
    for junk in [
        &b""[..],
        b"\x01",
        b"\x12\x34\x00\x00\x00\x01",
        &[0xffu8; 300][..],
    ] {
        sock.send(junk).unwrap();
    }
    let mut q = Message::query();
    q.metadata.id = 0x4242;
    q.add_query(hickory_proto::op::Query::query(
        Name::from_ascii("db.shop.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    q.add_query(hickory_proto::op::Query::query(
        Name::from_ascii("web.shop.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    let rcode = |sock: &UdpSocket, pkt: &[u8]| -> u8 {
        sock.send(pkt).unwrap();
        let mut buf = [0u8; 1500];
        loop {
            let n = sock.recv(&mut buf).expect("an answer");
            if n >= 12 && buf[0..2] == pkt[0..2] {
                return buf[3] & 0x0f;
            }
        }
    };
    assert_eq!(
        rcode(&sock, &q.to_vec().unwrap()),
        1,
        "two questions: FORMERR"
    );
    let mut notify = q.clone();
    notify.queries.truncate(1);
    notify.metadata.id = 0x4343;
    notify.metadata.op_code = hickory_proto::op::OpCode::Notify;
    assert_eq!(rcode(&sock, &notify.to_vec().unwrap()), 4, "NOTIFY: NOTIMP");
    let mut long_label = vec![0x44, 0x44, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64];
    long_label.extend([b'a'; 64]);
    long_label.extend([0, 0, 1, 0, 1]);
    assert_eq!(rcode(&sock, &long_label), 1, "a 64-byte label: FORMERR");
    let d = dig(&dns, &["cluster.local", "AXFR"]);
    assert!(
        d.raw.contains("Transfer failed") || d.raw.contains("REFUSED"),
        "{}",
        d.raw
    );
    assert_eq!(
        dig(&dns, &["db.shop.svc.cluster.local"]).values("A"),
        ["10.0.0.1"]
    );

    // CoreDNS's metrics.
    let m = metrics(&dns);
    for needle in [
        "coredns_dns_requests_total{",
        "proto=\"udp\",family=\"1\",type=\"A\"}",
        "proto=\"tcp\",family=\"1\",type=\"A\"}",
        "coredns_dns_responses_total{",
        "rcode=\"NXDOMAIN\"",
        "rcode=\"FORMERR\"",
        "coredns_dns_request_duration_seconds_bucket{",
        "coredns_cache_hits_total{",
    ] {
        assert!(m.contains(needle), "{needle} missing from:\n{m}");
    }
    let hits: u64 = m
        .lines()
        .filter(|l| l.starts_with("coredns_cache_hits_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(hits >= 2, "forward cache hits counted:\n{m}");
}
