#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use rand::{Rng, SeedableRng};

use super::*;
use crate::answer::Zone;
use crate::handler::Shared;
use crate::metrics::Metrics;
use crate::view::{Endpoint, Records, ServiceEntry};

fn handler() -> Handler {
    let zone = Zone::new("cluster.local").unwrap();
    let shared = Arc::new(Shared::new(zone, None, Metrics::new("test")));
    shared.update(|v| {
        v.set_service(
            "shop",
            "web",
            Some(ServiceEntry {
                records: Records::ClusterIp {
                    ips: vec!["10.96.0.10".parse().unwrap()],
                    ports: vec![],
                },
            }),
        );
        let eps = (0..100u8)
            .map(|i| {
                let ip = IpAddr::from([10, 0, 1, i]);
                Endpoint {
                    ip,
                    label: crate::view::dashed(ip),
                    ports: Arc::new(vec![]),
                }
            })
            .collect();
        v.set_service(
            "shop",
            "big",
            Some(ServiceEntry {
                records: Records::Headless(eps),
            }),
        );
        v.set_namespaces(HashSet::from(["shop".to_string()]));
    });
    Handler(shared)
}

fn query(id: u16, name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn src() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn reply(w: &mut UdpWorker, pkt: &[u8]) -> Message {
    match w.handle(pkt, src()) {
        Step::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
        Step::Drop => panic!("dropped"),
        Step::Pending(..) => panic!("pending"),
    }
}

#[test]
fn request_keys() {
    let mut k1 = Vec::new();
    let mut k2 = Vec::new();
    let a = query(1, "web.shop.svc.cluster.local.", RecordType::A, None);
    let b = query(2, "WEB.Shop.svc.cluster.local.", RecordType::A, None);
    let qa = request_key(&a, &mut k1).unwrap();
    let qb = request_key(&b, &mut k2).unwrap();
    assert_eq!(
        (qa, k1.clone()),
        (qb, k2.clone()),
        "ID and case do not matter"
    );
    request_key(
        &query(1, "web.shop.svc.cluster.local.", RecordType::AAAA, None),
        &mut k2,
    )
    .unwrap();
    assert_ne!(k1, k2, "the type does");
    assert!(request_key(
        &query(1, "web.shop.svc.cluster.local.", RecordType::A, Some(1232)),
        &mut k2
    )
    .is_some());
    // EDNS options (a cookie) make every request unique: not kept.
    let mut m = Message::from_vec(&query(
        1,
        "web.shop.svc.cluster.local.",
        RecordType::A,
        Some(1232),
    ))
    .unwrap();
    let mut e = m.edns.clone().unwrap();
    e.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
            10,
            vec![1; 8],
        ));
    m.set_edns(e);
    assert!(request_key(&m.to_vec().unwrap(), &mut k2).is_none());
    let mut two = Message::from_vec(&a).unwrap();
    two.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
    assert!(request_key(&two.to_vec().unwrap(), &mut k2).is_none());
    assert!(request_key(&a[..a.len() - 1], &mut k2).is_none());
}

#[test]
fn kept_answers_are_patched_and_invalidated() {
    let h = handler();
    let mut w = UdpWorker::new(h.clone());
    let first = reply(
        &mut w,
        &query(7, "web.shop.svc.cluster.local.", RecordType::A, None),
    );
    assert_eq!(first.answers.len(), 1);
    let pkt = query(9, "wEb.ShOp.svc.cluster.local.", RecordType::A, None);
    let second = reply(&mut w, &pkt);
    assert_eq!(second.metadata.id, 9);
    assert_eq!(
        second.queries[0].name().to_ascii(),
        "wEb.ShOp.svc.cluster.local."
    );
    assert_eq!(second.answers, first.answers);
    assert_eq!(h.0.metrics.answer_cache_hits.load(Ordering::Relaxed), 1);
    // A change to the view is seen at once.
    h.0.update(|v| v.set_service("shop", "web", None));
    let third = reply(&mut w, &pkt);
    assert_eq!(third.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(h.0.metrics.answer_cache_hits.load(Ordering::Relaxed), 1);
}

#[test]
fn udp_answers_are_truncated_to_the_advertised_size() {
    let h = handler();
    let mut w = UdpWorker::new(h);
    let name = "big.shop.svc.cluster.local.";
    let small = reply(&mut w, &query(1, name, RecordType::A, None));
    assert!(small.metadata.truncation);
    assert!(small.answers.len() < 100);
    let bytes = match w.handle(&query(1, name, RecordType::A, None), src()) {
        Step::Reply(b) => b,
        _ => panic!(),
    };
    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    let large = reply(&mut w, &query(2, name, RecordType::A, Some(4096)));
    assert!(!large.metadata.truncation);
    assert_eq!(large.answers.len(), 100);
    assert_eq!(large.edns.unwrap().max_payload(), 4096);
}

#[test]
fn bad_requests_table() {
    let h = handler();
    let mut w = UdpWorker::new(h);
    let good = query(0x1234, "web.shop.svc.cluster.local.", RecordType::A, None);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, Vec<u8>, Option<ResponseCode>)> = vec![
        ("empty", vec![], None),
        ("short header", good[..11].to_vec(), None),
        ("a response", with(&|p| p[2] |= 0x80), None),
        (
            "no question",
            with(&|p| {
                p.truncate(12);
                p[5] = 0
            }),
            Some(ResponseCode::FormErr),
        ),
        (
            "question count beyond the packet",
            with(&|p| p[5] = 2),
            Some(ResponseCode::FormErr),
        ),
        (
            "65535 questions",
            with(&|p| {
                p[4] = 0xff;
                p[5] = 0xff
            }),
            Some(ResponseCode::FormErr),
        ),
        (
            "truncated question",
            good[..good.len() - 3].to_vec(),
            Some(ResponseCode::FormErr),
        ),
        (
            "label of 64 bytes",
            {
                let mut p = good[..12].to_vec();
                p.push(64);
                p.extend([b'a'; 64]);
                p.extend([0, 0, 1, 0, 1]);
                p
            },
            Some(ResponseCode::FormErr),
        ),
        (
            "name over 255 bytes",
            {
                let mut p = good[..12].to_vec();
                for _ in 0..5 {
                    p.push(63);
                    p.extend([b'a'; 63]);
                }
                p.extend([0, 0, 1, 0, 1]);
                p
            },
            Some(ResponseCode::FormErr),
        ),
        (
            "compression loop",
            {
                let mut p = good[..12].to_vec();
                p.extend([0xc0, 12, 0, 1, 0, 1]);
                p
            },
            Some(ResponseCode::FormErr),
        ),
        (
            "opcode STATUS",
            with(&|p| p[2] = (p[2] & 0x87) | (2 << 3)),
            Some(ResponseCode::NotImp),
        ),
        (
            "opcode NOTIFY",
            with(&|p| p[2] = (p[2] & 0x87) | (4 << 3)),
            Some(ResponseCode::NotImp),
        ),
        (
            "AXFR",
            query(1, "cluster.local.", RecordType::AXFR, None),
            Some(ResponseCode::Refused),
        ),
        (
            "IXFR",
            query(1, "cluster.local.", RecordType::IXFR, None),
            Some(ResponseCode::Refused),
        ),
        (
            "class CH without upstream",
            {
                let mut m = Message::from_vec(&good).unwrap();
                m.queries[0].set_query_class(DNSClass::CH);
                m.to_vec().unwrap()
            },
            Some(ResponseCode::Refused),
        ),
        (
            "EDNS version 1",
            {
                let mut m = Message::from_vec(&query(
                    1,
                    "web.shop.svc.cluster.local.",
                    RecordType::A,
                    Some(1232),
                ))
                .unwrap();
                let mut e = m.edns.clone().unwrap();
                e.set_version(1);
                m.set_edns(e);
                m.to_vec().unwrap()
            },
            Some(ResponseCode::BADVERS),
        ),
        (
            "other name without upstream",
            query(1, "example.com.", RecordType::A, None),
            Some(ResponseCode::Refused),
        ),
    ];
    for (what, pkt, want) in cases {
        match (w.handle(&pkt, src()), want) {
            (Step::Drop, None) => {}
            (Step::Reply(bytes), Some(code)) => {
                assert_eq!(&bytes[0..2], &pkt[0..2], "{what}: the ID is kept");
                assert!(bytes[2] & 0x80 != 0, "{what}: QR");
                let rcode_low = bytes[3] & 0x0f;
                assert_eq!(rcode_low, (u16::from(code) & 0x0f) as u8, "{what}");
                if let Ok(m) = Message::from_vec(&bytes) {
                    // 16 is both BADVERS and BADSIG: compare numbers.
                    assert_eq!(
                        u16::from(m.metadata.response_code),
                        u16::from(code),
                        "{what}"
                    );
                }
            }
            (other, _) => panic!(
                "{what}: unexpected {}",
                match other {
                    Step::Drop => "drop",
                    Step::Reply(_) => "reply",
                    Step::Pending(..) => "pending",
                }
            ),
        }
    }
    // The worker still answers after all of that.
    let m = reply(&mut w, &good);
    assert_eq!(m.answers.len(), 1);
}

/// Bounded randomized pass over the UDP path: arbitrary bytes and mutations of
/// valid queries. Nothing may panic and every reply must be a response to its
/// request's ID.
#[test]
fn fuzz_udp_path() {
    let seed: u64 = std::env::var("CAPSTAN_DNS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let rounds: usize = std::env::var("CAPSTAN_DNS_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000);
    eprintln!("fuzz seed {seed} ({rounds} rounds; CAPSTAN_DNS_FUZZ_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let h = handler();
    let mut w = UdpWorker::new(h);
    let seeds = [
        query(1, "web.shop.svc.cluster.local.", RecordType::A, None),
        query(
            2,
            "_http._tcp.big.shop.svc.cluster.local.",
            RecordType::SRV,
            Some(1232),
        ),
        query(3, "10.0.96.10.in-addr.arpa.", RecordType::PTR, None),
        query(4, "big.shop.svc.cluster.local.", RecordType::ANY, Some(512)),
    ];
    for _ in 0..rounds {
        let pkt: Vec<u8> = if rng.gen_bool(0.3) {
            let len = rng.gen_range(0..600);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut p = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..6) {
                match rng.gen_range(0..4) {
                    0 if !p.is_empty() => {
                        let i = rng.gen_range(0..p.len());
                        p[i] = rng.gen();
                    }
                    1 if !p.is_empty() => {
                        let n = rng.gen_range(0..p.len());
                        p.truncate(n);
                    }
                    2 => {
                        let i = rng.gen_range(0..=p.len());
                        p.insert(i, rng.gen());
                    }
                    _ => p.extend((0..rng.gen_range(0..40)).map(|_| rng.gen::<u8>())),
                }
            }
            p
        };
        match w.handle(&pkt, src()) {
            Step::Reply(bytes) => {
                assert!(bytes.len() >= 12, "seed {seed}: short reply");
                assert_eq!(&bytes[0..2], &pkt[0..2], "seed {seed}: ID");
                assert!(bytes[2] & 0x80 != 0, "seed {seed}: QR");
            }
            Step::Drop | Step::Pending(..) => {}
        }
    }
}
