//! Names outside the cluster zone: forwarded to upstream resolvers (UDP, retried
//! over TCP when the answer is truncated), with a bounded cache of positive and
//! negative answers whose lifetimes are capped (CoreDNS's `forward` + `cache`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why an upstream query failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No upstream answered in time.
    #[error("no upstream answered {0} within {1:?}")]
    Timeout(String, Duration),
    /// Network or encoding trouble with every upstream (the last error).
    #[error("upstream: {0}")]
    Io(String),
}

/// An upstream answer, without the header bits that belong to our response.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The upstream's response code.
    pub rcode: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section (without OPT).
    pub additionals: Vec<Record>,
}

/// Cache hit counters, by CoreDNS's `type` label.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Hits on positive answers.
    pub success: AtomicU64,
    /// Hits on negative answers (NXDOMAIN, NODATA).
    pub denial: AtomicU64,
    /// Misses.
    pub misses: AtomicU64,
}

/// Forwarding settings.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// Upstream resolvers, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for one upstream.
    pub timeout: Duration,
    /// Most cached answers.
    pub cache_size: usize,
    /// Longest a positive answer is cached, whatever its TTL.
    pub max_ttl: u32,
    /// Longest a negative answer is cached.
    pub max_negative_ttl: u32,
}

impl ForwardConfig {
    /// Forwarding to `upstreams` with CoreDNS-like defaults (2 s per upstream, 10k
    /// entries, positive TTL capped at 30 s and negative at 5 s).
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        ForwardConfig {
            upstreams,
            timeout: Duration::from_secs(2),
            cache_size: 10_000,
            max_ttl: 30,
            max_negative_ttl: 5,
        }
    }
}

type Key = (Name, RecordType, DNSClass);

struct Entry {
    reply: Reply,
    stored: Instant,
    ttl: u32,
    negative: bool,
}

/// The forwarder with its cache.
pub struct Forwarder {
    config: ForwardConfig,
    cache: Mutex<HashMap<Key, Entry>>,
    /// Cache counters.
    pub stats: CacheStats,
}

impl Forwarder {
    /// A forwarder; `None` when there is no upstream.
    pub fn new(config: ForwardConfig) -> Option<Forwarder> {
        if config.upstreams.is_empty() {
            return None;
        }
        Some(Forwarder {
            config,
            cache: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        })
    }

    /// The upstreams.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.config.upstreams
    }

    /// Resolves one question (name lowercase) through the cache and the upstreams.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Reply, ForwardError> {
        let key = (name.clone(), qtype, qclass);
        if let Some(reply) = self.cached(&key) {
            return Ok(reply);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let reply = self.ask(name, qtype, qclass).await?;
        self.store(key, &reply);
        Ok(reply)
    }

    fn cached(&self, key: &Key) -> Option<Reply> {
        let mut cache = self.cache.lock();
        let entry = cache.get(key)?;
        let age = u32::try_from(entry.stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        if age >= entry.ttl {
            cache.remove(key);
            return None;
        }
        let counter = if entry.negative {
            &self.stats.denial
        } else {
            &self.stats.success
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut reply = entry.reply.clone();
        for r in reply
            .answers
            .iter_mut()
            .chain(reply.authority.iter_mut())
            .chain(reply.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(reply)
    }

    fn store(&self, key: Key, reply: &Reply) {
        let Some((ttl, negative)) = cache_ttl(reply, &self.config) else {
            return;
        };
        let mut cache = self.cache.lock();
        if cache.len() >= self.config.cache_size && !cache.contains_key(&key) {
            cache.retain(|_, e| e.stored.elapsed().as_secs() < u64::from(e.ttl));
            if cache.len() >= self.config.cache_size {
                // Still full of live entries: drop an arbitrary one (the map's order is
                // random per process, which is all a bounded cache needs).
                if let Some(k) = cache.keys().next().cloned() {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            key,
            Entry {
                reply: reply.clone(),
                stored: Instant::now(),
                ttl,
                negative,
            },
        );
    }

    async fn ask(
        &self,
        name: &Name,
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Reply, ForwardError> {
        let mut last = None;
        for upstream in &self.config.upstreams {
            let mut q = Query::query(name.clone(), qtype);
            q.set_query_class(qclass);
            let mut msg = Message::new(rand::random(), MessageType::Query, OpCode::Query);
            msg.metadata.recursion_desired = true;
            msg.add_query(q);
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            msg.set_edns(edns);
            let result = tokio::time::timeout(self.config.timeout, exchange(*upstream, &msg)).await;
            match result {
                Ok(Ok(resp)) => {
                    return Ok(Reply {
                        rcode: resp.metadata.response_code,
                        answers: resp.answers,
                        authority: resp.authorities,
                        additionals: resp.additionals,
                    })
                }
                Ok(Err(e)) => {
                    tracing::debug!(%upstream, error = %e, "upstream failed");
                    last = Some(ForwardError::Io(format!("{upstream}: {e}")));
                }
                Err(_) => {
                    tracing::debug!(%upstream, "upstream timed out");
                    last = Some(ForwardError::Timeout(name.to_ascii(), self.config.timeout));
                }
            }
        }
        Err(last.unwrap_or_else(|| ForwardError::Io("no upstream".into())))
    }
}

/// How long a reply may be cached and whether it is negative; `None` when it must
/// not be (server failures, refusals).
fn cache_ttl(reply: &Reply, config: &ForwardConfig) -> Option<(u32, bool)> {
    match reply.rcode {
        ResponseCode::NoError if !reply.answers.is_empty() => {
            let ttl = reply.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
            Some((ttl.min(config.max_ttl), false)).filter(|(t, _)| *t > 0)
        }
        ResponseCode::NoError | ResponseCode::NXDomain => {
            // RFC 2308: a negative answer lives as long as the SOA's TTL and minimum
            // allow; without a SOA it is not cached.
            let soa = reply.authority.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?;
            Some((soa.min(config.max_negative_ttl), true)).filter(|(t, _)| *t > 0)
        }
        _ => None,
    }
}

async fn exchange(upstream: SocketAddr, msg: &Message) -> std::io::Result<Message> {
    let bytes = msg
        .to_vec()
        .map_err(|e| std::io::Error::other(format!("encoding the query: {e}")))?;
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    sock.send(&bytes).await?;
    let mut buf = vec![0u8; 65535];
    let resp = loop {
        let n = sock.recv(&mut buf).await?;
        // Ignore anything that is not the answer to this query (stray or spoofed).
        match Message::from_vec(&buf[..n]) {
            Ok(m)
                if m.metadata.id == msg.metadata.id
                    && m.metadata.message_type == MessageType::Response
                    && m.queries == msg.queries =>
            {
                break m
            }
            _ => continue,
        }
    };
    if !resp.metadata.truncation {
        return Ok(resp);
    }
    let mut tcp = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    tcp.write_all(&framed).await?;
    let len = tcp.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    tcp.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf)
        .map_err(|e| std::io::Error::other(format!("bad upstream answer: {e}")))?;
    if m.metadata.id != msg.metadata.id {
        return Err(std::io::Error::other("upstream answered another query"));
    }
    Ok(m)
}
