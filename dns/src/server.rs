//! The listeners. TCP goes through hickory-server (length framing, pipelining,
//! idle timeouts) into the [`Handler`]. UDP has its own threads, one per core on
//! `SO_REUSEPORT` sockets: each keeps the encoded bytes of the cluster-zone answers
//! it has sent, keyed by the request without its ID, so a repeated question costs a
//! hash lookup and two small copies (the ID and the question, whose letter case the
//! client chose). A change to the view makes every kept answer stale at once. All
//! other requests are parsed and answered by the same handler as TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use tokio::net::{TcpListener, UdpSocket};

use crate::handler::{Handler, Response};
use crate::metrics::Transport;

/// Kept answers per UDP loop; the map is emptied when full (the hot set refills it
/// at once, and a flood of unique names cannot grow it).
const ANSWER_CACHE_ENTRIES: usize = 100_000;
/// A TCP connection with no request for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Opens the UDP sockets (one per worker, sharing the port) and the TCP listener on
/// `addr`. Port 0 picks one free port for both.
pub async fn bind(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<(Vec<UdpSocket>, TcpListener)> {
    let tcp = TcpListener::bind(addr).await?;
    let addr = tcp.local_addr()?;
    let mut udp = Vec::new();
    for _ in 0..workers.max(1) {
        let domain = socket2::Domain::for_address(addr);
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        s.set_reuse_port(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        // Room for a burst of queries while a loop is busy.
        let _ = s.set_recv_buffer_size(4 << 20);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        udp.push(UdpSocket::from_std(s.into())?);
    }
    Ok((udp, tcp))
}

/// Serves until a listener fails. Each UDP socket gets its own OS thread doing
/// blocking receives and sends: under load that is a plain syscall per packet, with
/// no readiness polling; only upstream work goes to the async runtime.
pub async fn serve(handler: Handler, udp: Vec<UdpSocket>, tcp: TcpListener) -> std::io::Result<()> {
    let rt = tokio::runtime::Handle::current();
    for sock in udp {
        let sock = sock.into_std()?;
        sock.set_nonblocking(false)?;
        let (handler, rt) = (handler.clone(), rt.clone());
        std::thread::Builder::new()
            .name("dns-udp".into())
            .spawn(move || udp_thread(Arc::new(sock), handler, rt))?;
    }
    let mut server = hickory_server::Server::new(handler);
    server.register_listener(tcp, TCP_IDLE, 64);
    server
        .block_until_done()
        .await
        .map_err(|e| std::io::Error::other(format!("TCP listener: {e}")))
}

/// An encoded answer and what it was made from.
pub struct Kept {
    bytes: Box<[u8]>,
    generation: u64,
    qtype: RecordType,
    rcode: ResponseCode,
}

/// The cache key of a request: everything after the ID, with the question name in
/// lower case. Only plain queries are keyed: one question, no records but an
/// option-less OPT. Returns the question's length.
fn request_key(pkt: &[u8], key: &mut Vec<u8>) -> Option<usize> {
    if pkt.len() < 12 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([pkt[i], pkt[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*pkt.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 || i - 12 + len > 254 {
            return None;
        }
        i += 1 + len;
    }
    let qend = i + 4;
    if pkt.len() < qend {
        return None;
    }
    let rest = pkt.len() - qend;
    match (count(10), rest) {
        (0, 0) => {}
        // Root owner, type OPT, then class, TTL, and an empty RDATA.
        (1, 11)
            if pkt[qend] == 0
                && pkt[qend + 1..qend + 3] == [0, 41]
                && pkt[qend + 9..] == [0, 0] => {}
        _ => return None,
    }
    key.clear();
    key.extend_from_slice(&pkt[2..]);
    // Length octets are at most 63, below b'A': lowering the whole name is safe.
    key[10..qend - 2 - 4].make_ascii_lowercase();
    Some(qend - 12)
}

/// Encodes a response for UDP, truncating (TC) at the payload size the client
/// advertised (512 without EDNS).
pub fn encode_udp(request: &Request, resp: &Response) -> Vec<u8> {
    let max = resp.edns.as_ref().map_or(512, |e| e.max_payload());
    let message = resp.message(request);
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max);
    if let Err(e) = message.destructive_emit(&mut encoder) {
        tracing::warn!(error = %e, "encoding a response failed");
        let mut m = resp.metadata;
        m.response_code = ResponseCode::ServFail;
        return header_only(request.metadata.id, &m);
    }
    bytes
}

fn header_only(id: u16, m: &hickory_proto::op::Metadata) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&id.to_be_bytes());
    out[2] = 0x80 | (u8::from(m.op_code) << 3) | u8::from(m.recursion_desired);
    out[3] = (u8::from(m.recursion_available) << 7) | (u16::from(m.response_code) & 0x0f) as u8;
    out
}

/// FORMERR for a request that did not parse: its ID and opcode, no sections.
fn form_error(pkt: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&pkt[0..2]);
    // QR, the request's opcode and RD; RCODE 1.
    out[2] = 0x80 | (pkt[2] & 0x79);
    out[3] = 1;
    out
}

/// What a UDP loop does with one datagram.
pub enum Step {
    /// Nothing: not a request (too short, a response, port 0).
    Drop,
    /// Send these bytes back (already counted in the metrics).
    Reply(Vec<u8>),
    /// Needs upstream work: finish it off the loop.
    Pending(Box<Request>, Box<crate::handler::Pending>),
}

/// One UDP loop's state: its kept answers and scratch buffers.
pub struct UdpWorker {
    handler: Handler,
    kept: HashMap<Box<[u8]>, Kept>,
    key: Vec<u8>,
}

impl UdpWorker {
    /// A worker with an empty answer cache.
    pub fn new(handler: Handler) -> Self {
        UdpWorker {
            handler,
            kept: HashMap::new(),
            key: Vec::with_capacity(512),
        }
    }

    /// Answers one datagram from `src` (never panics, whatever the bytes).
    pub fn handle(&mut self, pkt: &[u8], src: SocketAddr) -> Step {
        let start = Instant::now();
        let shared = &self.handler.0;
        // Too short for a header, or a response (answering those would reflect).
        if pkt.len() < 12 || pkt[2] & 0x80 != 0 || src.port() == 0 {
            shared.metrics.malformed.fetch_add(1, Ordering::Relaxed);
            return Step::Drop;
        }
        let generation = shared.generation.load(Ordering::Acquire);
        let qlen = request_key(pkt, &mut self.key);
        if let Some(qlen) = qlen {
            if let Some(k) = self
                .kept
                .get(self.key.as_slice())
                .filter(|k| k.generation == generation)
            {
                let mut out = k.bytes.to_vec();
                out[0..2].copy_from_slice(&pkt[0..2]);
                out[12..12 + qlen].copy_from_slice(&pkt[12..12 + qlen]);
                shared
                    .metrics
                    .answer_cache_hits
                    .fetch_add(1, Ordering::Relaxed);
                shared.metrics.observe(
                    Transport::Udp,
                    src.is_ipv6(),
                    k.qtype,
                    k.rcode,
                    start.elapsed(),
                );
                return Step::Reply(out);
            }
        }
        let request = match Request::from_bytes(pkt.to_vec(), src, Protocol::Udp) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%src, error = %e, "malformed request");
                shared.metrics.malformed.fetch_add(1, Ordering::Relaxed);
                shared.metrics.observe(
                    Transport::Udp,
                    src.is_ipv6(),
                    RecordType::Unknown(0),
                    ResponseCode::FormErr,
                    start.elapsed(),
                );
                return Step::Reply(form_error(pkt));
            }
        };
        let resp = match self.handler.respond_now(&request) {
            Ok(resp) => resp,
            Err(pending) => return Step::Pending(Box::new(request), pending),
        };
        let bytes = encode_udp(&request, &resp);
        shared.metrics.observe(
            Transport::Udp,
            src.is_ipv6(),
            resp.qtype,
            resp.metadata.response_code,
            start.elapsed(),
        );
        if let (Some(qlen), true) = (qlen, resp.cacheable) {
            // The response must start with the question as asked, to be patched
            // with the next asker's spelling.
            if bytes.len() >= 12 + qlen
                && bytes[12..12 + qlen].eq_ignore_ascii_case(&pkt[12..12 + qlen])
            {
                if self.kept.len() >= ANSWER_CACHE_ENTRIES {
                    self.kept.clear();
                }
                self.kept.insert(
                    self.key.as_slice().into(),
                    Kept {
                        bytes: bytes.clone().into(),
                        generation,
                        qtype: resp.qtype,
                        rcode: resp.metadata.response_code,
                    },
                );
            }
        }
        Step::Reply(bytes)
    }
}

fn udp_thread(sock: Arc<std::net::UdpSocket>, handler: Handler, rt: tokio::runtime::Handle) {
    let mut buf = vec![0u8; 65535];
    let mut worker = UdpWorker::new(handler.clone());
    loop {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive");
                // Never spin on a socket that keeps failing.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let start = Instant::now();
        match worker.handle(&buf[..n], src) {
            Step::Drop => {}
            Step::Reply(bytes) => {
                let _ = sock.send_to(&bytes, src);
            }
            Step::Pending(request, pending) => {
                // Upstream work: never hold this loop up for it.
                let handler = handler.clone();
                let sock = sock.clone();
                rt.spawn(async move {
                    let resp = handler.finish(pending).await;
                    let bytes = encode_udp(&request, &resp);
                    let _ = sock.send_to(&bytes, src);
                    handler.0.metrics.observe(
                        Transport::Udp,
                        src.is_ipv6(),
                        resp.qtype,
                        resp.metadata.response_code,
                        start.elapsed(),
                    );
                });
            }
        }
    }
}

/// Serves `/metrics` and `/health` over HTTP until the listener fails.
pub async fn serve_metrics(handler: Handler, listener: TcpListener) -> std::io::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    loop {
        let (sock, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let shared = handler.0.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => {
                            let services = shared.view.read().services();
                            let cache = shared.forwarder.as_ref().map(|f| &f.stats);
                            (200, shared.metrics.render(cache, services))
                        }
                        "/health" => (200, "OK\n".to_string()),
                        _ => (404, "not found\n".to_string()),
                    };
                    let resp = hyper::Response::builder()
                        .status(status)
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests;
