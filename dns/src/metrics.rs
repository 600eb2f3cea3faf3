//! Request metrics under CoreDNS's names, so dashboards built for CoreDNS work
//! unchanged. Plain atomics indexed by small enums: recording costs a few relaxed
//! adds on the hot path, rendering happens only on scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::forward::CacheStats;

const TYPES: [&str; 10] = [
    "A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "SOA", "NS", "ANY", "other",
];
const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];
/// CoreDNS's buckets: 0.25 ms doubling, 16 of them.
const BUCKETS: usize = 16;

fn type_index(t: RecordType) -> usize {
    match t {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::SRV => 2,
        RecordType::PTR => 3,
        RecordType::TXT => 4,
        RecordType::CNAME => 5,
        RecordType::SOA => 6,
        RecordType::NS => 7,
        RecordType::ANY => 8,
        _ => 9,
    }
}

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        _ => 6,
    }
}

/// The transport a request came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp = 0,
    /// TCP.
    Tcp = 1,
}

struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Bucket i's upper bound is 250 µs × 2^i; only the first bucket that holds
        // the value is counted, cumulative sums are made when rendering.
        let mut bound = 250_000u64;
        for b in &self.buckets {
            if nanos <= bound {
                b.fetch_add(1, Ordering::Relaxed);
                break;
            }
            bound *= 2;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The DNS server's counters.
pub struct Metrics {
    server: String,
    /// [transport][family v4=0 v6=1][type]
    requests: [[[AtomicU64; TYPES.len()]; 2]; 2],
    responses: [AtomicU64; RCODES.len()],
    durations: Vec<Histogram>,
    /// Requests answered with FORMERR before they could be parsed.
    pub malformed: AtomicU64,
    /// Answers served from the encoded-answer cache of the UDP path.
    pub answer_cache_hits: AtomicU64,
}

impl Metrics {
    /// Counters for the server listening at `listen` (the `server` label,
    /// `dns://127.0.0.1:53`).
    pub fn new(listen: &str) -> Self {
        Metrics {
            server: format!("dns://{listen}"),
            requests: std::array::from_fn(|_| {
                std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))
            }),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
            durations: (0..TYPES.len()).map(|_| Histogram::new()).collect(),
            malformed: AtomicU64::new(0),
            answer_cache_hits: AtomicU64::new(0),
        }
    }

    /// Records one request and its response.
    pub fn observe(
        &self,
        transport: Transport,
        ipv6: bool,
        qtype: RecordType,
        rcode: ResponseCode,
        took: Duration,
    ) {
        let t = type_index(qtype);
        self.requests[transport as usize][usize::from(ipv6)][t].fetch_add(1, Ordering::Relaxed);
        self.responses[rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
        self.durations[t].observe(took);
    }

    /// Total requests so far.
    pub fn requests_total(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Prometheus text format.
    pub fn render(&self, cache: Option<&CacheStats>, services: usize) -> String {
        let s = &self.server;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.\n# TYPE coredns_dns_requests_total counter"
        );
        for (ti, tr) in ["udp", "tcp"].iter().enumerate() {
            for (fi, fam) in ["1", "2"].iter().enumerate() {
                for (yi, ty) in TYPES.iter().enumerate() {
                    let v = self.requests[ti][fi][yi].load(Ordering::Relaxed);
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "coredns_dns_requests_total{{server=\"{s}\",zone=\".\",view=\"\",proto=\"{tr}\",family=\"{fam}\",type=\"{ty}\"}} {v}"
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP coredns_dns_responses_total Counter of response status codes.\n# TYPE coredns_dns_responses_total counter"
        );
        for (i, rc) in RCODES.iter().enumerate() {
            let v = self.responses[i].load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(
                    out,
                    "coredns_dns_responses_total{{server=\"{s}\",zone=\".\",view=\"\",rcode=\"{rc}\",plugin=\"kubernetes\"}} {v}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took per zone.\n# TYPE coredns_dns_request_duration_seconds histogram"
        );
        for (yi, ty) in TYPES.iter().enumerate() {
            let h = &self.durations[yi];
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("server=\"{s}\",zone=\".\",view=\"\",type=\"{ty}\"");
            let mut cumulative = 0;
            let mut bound = 0.00025f64;
            for b in &h.buckets {
                cumulative += b.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
                bound *= 2.0;
            }
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "coredns_dns_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP coredns_cache_hits_total The count of cache hits.\n# TYPE coredns_cache_hits_total counter"
        );
        let (success, denial, misses) = cache.map_or((0, 0, 0), |c| {
            (
                c.success.load(Ordering::Relaxed),
                c.denial.load(Ordering::Relaxed),
                c.misses.load(Ordering::Relaxed),
            )
        });
        let answer_hits = self.answer_cache_hits.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "coredns_cache_hits_total{{server=\"{s}\",type=\"success\",view=\"\",zones=\".\"}} {success}\ncoredns_cache_hits_total{{server=\"{s}\",type=\"denial\",view=\"\",zones=\".\"}} {denial}"
        );
        let _ = writeln!(
            out,
            "# HELP coredns_cache_misses_total The count of cache misses.\n# TYPE coredns_cache_misses_total counter\ncoredns_cache_misses_total{{server=\"{s}\",view=\"\",zones=\".\"}} {misses}"
        );
        let _ = writeln!(
            out,
            "# HELP capstan_dns_answer_cache_hits_total Cluster-zone answers served already encoded (UDP).\n# TYPE capstan_dns_answer_cache_hits_total counter\ncapstan_dns_answer_cache_hits_total {answer_hits}"
        );
        let _ = writeln!(
            out,
            "# HELP capstan_dns_malformed_requests_total Requests that did not parse.\n# TYPE capstan_dns_malformed_requests_total counter\ncapstan_dns_malformed_requests_total {}",
            self.malformed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP capstan_dns_services Services with records in the cluster zone.\n# TYPE capstan_dns_services gauge\ncapstan_dns_services {services}"
        );
        out
    }
}
