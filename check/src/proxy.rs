//! A fault-injecting TCP proxy for the peer links of a test cluster, on loopback.
//!
//! One [`FaultProxy`] sits in front of each member's peer port and forwards byte
//! streams both ways to the member. Every member binds its outgoing peer
//! connections to its own loopback source address (127.0.0.11, 127.0.0.12, ...), so
//! the peer IP of an accepted connection names the member it comes from and a fault
//! applies to one link direction: "traffic from source S into this member".
//!
//! The fault table is latest-value state in a `tokio::sync::watch` channel: the
//! accept loop reads it for each new connection, each forwarded chunk reads it
//! again, and every connection listens for changes so that a [`Fault::Cut`]
//! closes it at once. A cut connection is reset (RST), not closed gracefully, so a
//! Raft member sees an unreachable peer immediately instead of waiting on a
//! timeout. Per direction, a reader stamps each chunk with the time it may leave
//! and a writer sends chunks in order when due, through a bounded channel (when
//! full, the reader stops reading and TCP backpressure does the rest).
//!
//! Connection tasks live in a `JoinSet` owned by the accept task. Dropping the
//! proxy aborts the accept task, which drops the listener and aborts every
//! connection; [`FaultProxy::shutdown`] does the same and waits for it.
//!
//! Only loopback addresses are accepted, for both the listen and the target
//! address.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What happens to the traffic of one link.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Forward everything untouched.
    Pass,
    /// Reset existing connections and every new one as soon as it is accepted.
    Cut,
    /// Forward each chunk, in both directions, this long after it arrived; order
    /// is kept.
    Delay(Duration),
    /// Each chunk (in either direction) resets the connection with this
    /// probability instead of being forwarded: message loss as gRPC sees it.
    Flaky {
        /// Probability per chunk, clamped to `0.0..=1.0`.
        close_probability: f64,
    },
}

/// The faults of one proxy.
#[derive(Clone, Debug)]
struct FaultTable {
    all: Fault,
    by_source: HashMap<IpAddr, Fault>,
}

impl FaultTable {
    fn healthy() -> Self {
        FaultTable {
            all: Fault::Pass,
            by_source: HashMap::new(),
        }
    }

    fn fault_for(&self, source: IpAddr) -> Fault {
        self.by_source.get(&source).unwrap_or(&self.all).clone()
    }
}

/// Chunks buffered per direction before the reader waits.
const CHUNKS: usize = 256;
/// Size of one read.
const CHUNK_SIZE: usize = 16 * 1024;
/// Bound on connecting to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A running proxy from a loopback listen address to a loopback target.
#[derive(Debug)]
pub struct FaultProxy {
    local_addr: SocketAddr,
    target: SocketAddr,
    faults: watch::Sender<FaultTable>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

fn require_loopback(what: &str, addr: SocketAddr) -> io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fault proxy {what} address {addr} is not a loopback address; use 127.0.0.0/8 or ::1"),
        ))
    }
}

impl FaultProxy {
    /// Binds `listen` (port 0 picks a free port, see [`FaultProxy::local_addr`])
    /// and forwards every accepted connection to `target`. Both must be loopback
    /// addresses. Must be called within a tokio runtime.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> io::Result<FaultProxy> {
        require_loopback("listen", listen)?;
        require_loopback("target", target)?;
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (faults, faults_rx) = watch::channel(FaultTable::healthy());
        let (stop, stop_rx) = watch::channel(false);
        let seed = u64::from(local_addr.port()) << 32 | u64::from(target.port());
        let task = tokio::spawn(accept_loop(listener, target, faults_rx, stop_rx, seed));
        tracing::debug!(%local_addr, %target, "fault proxy started");
        Ok(FaultProxy {
            local_addr,
            target,
            faults,
            stop,
            task: Some(task),
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sets the fault of the link from `source` (the peer IP of connections).
    pub fn set_fault(&self, source: IpAddr, fault: Fault) {
        tracing::debug!(proxy = %self.local_addr, %source, ?fault, "set fault");
        self.faults.send_modify(|t| {
            t.by_source.insert(source, fault);
        });
    }

    /// Sets the fault of every link, replacing faults set per source.
    pub fn set_all(&self, fault: Fault) {
        tracing::debug!(proxy = %self.local_addr, ?fault, "set fault on every link");
        self.faults.send_modify(|t| {
            t.by_source.clear();
            t.all = fault;
        });
    }

    /// Forwards everything again.
    pub fn heal(&self) {
        self.set_all(Fault::Pass);
    }

    /// The fault currently applied to connections from `source`.
    pub fn fault_for(&self, source: IpAddr) -> Fault {
        self.faults.borrow().fault_for(source)
    }

    /// Stops accepting, closes every connection and waits until the listener and
    /// all connection tasks are gone.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Dropping the accept task drops the listener and its JoinSet, which
            // aborts every connection task.
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    faults: watch::Receiver<FaultTable>,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) {
    let mut conns = JoinSet::new();
    let mut accepted: u64 = 0;
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            res = listener.accept() => {
                let (stream, peer) = match res {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "fault proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let source = peer.ip();
                if faults.borrow().fault_for(source) == Fault::Cut {
                    reset(&stream);
                    continue;
                }
                accepted += 1;
                let conn_seed = crate::splitmix64(seed ^ accepted);
                conns.spawn(serve(stream, source, target, faults.clone(), conn_seed));
            }
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Makes dropping `stream` send a reset instead of a graceful close.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Why a connection was torn down before both directions finished.
#[derive(Debug)]
enum Teardown {
    Cut,
    Flaky,
    Io,
}

async fn serve(
    mut client: TcpStream,
    source: IpAddr,
    target: SocketAddr,
    faults: watch::Receiver<FaultTable>,
    seed: u64,
) {
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await
    {
        Ok(Ok(s)) => s,
        _ => {
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let outcome = {
        let (cr, cw) = client.split();
        let (ur, uw) = upstream.split();
        let both = async {
            tokio::try_join!(
                pipe(cr, uw, source, faults.clone(), crate::splitmix64(seed)),
                pipe(ur, cw, source, faults.clone(), crate::splitmix64(seed ^ 1)),
            )
        };
        let cut = until_cut(faults.clone(), source);
        tokio::select! {
            r = both => r.map(|_| ()),
            () = cut => Err(Teardown::Cut),
        }
    };
    if let Err(why) = outcome {
        tracing::trace!(%source, ?why, "fault proxy tears a connection down");
        reset(&client);
        reset(&upstream);
    }
}

/// Resolves when the link from `source` is cut, or the proxy is gone.
async fn until_cut(mut faults: watch::Receiver<FaultTable>, source: IpAddr) {
    loop {
        if faults.borrow_and_update().fault_for(source) == Fault::Cut {
            return;
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
}

/// Forwards one direction, applying the link's fault to each chunk; on EOF,
/// flushes and closes the write side.
async fn pipe<R, W>(
    mut from: R,
    mut to: W,
    source: IpAddr,
    faults: watch::Receiver<FaultTable>,
    seed: u64,
) -> Result<(), Teardown>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS);
    let read_side = async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let n = from.read(&mut buf).await.map_err(|_| Teardown::Io)?;
            if n == 0 {
                return Ok(());
            }
            let now = Instant::now();
            let due = match faults.borrow().fault_for(source) {
                Fault::Pass => now,
                Fault::Cut => return Err(Teardown::Cut),
                Fault::Delay(d) => now + d,
                Fault::Flaky { close_probability } => {
                    let p = if close_probability.is_nan() {
                        0.0
                    } else {
                        close_probability.clamp(0.0, 1.0)
                    };
                    if rng.gen_bool(p) {
                        return Err(Teardown::Flaky);
                    }
                    now
                }
            };
            tx.send((due, buf[..n].to_vec()))
                .await
                .map_err(|_| Teardown::Io)?;
        }
    };
    let write_side = async {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&chunk).await.map_err(|_| Teardown::Io)?;
        }
        to.shutdown().await.map_err(|_| Teardown::Io)
    };
    tokio::try_join!(read_side, write_side).map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::Future;
    use std::net::Ipv4Addr;

    use tokio::net::TcpSocket;

    use super::*;

    /// Fails a test that would otherwise hang. Not a performance bound.
    async fn guard<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("hung for a minute")
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = c.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn proxy() -> FaultProxy {
        let target = echo_server().await;
        FaultProxy::start("127.0.0.1:0".parse().unwrap(), target)
            .await
            .unwrap()
    }

    async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(source, 0)).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Sends `msg` and reads its echo; `None` if the connection broke.
    async fn roundtrip(c: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
        guard(async {
            c.write_all(msg).await.ok()?;
            let mut out = vec![0u8; msg.len()];
            c.read_exact(&mut out).await.ok()?;
            Some(out)
        })
        .await
    }

    /// Whether the connection is closed or reset (reads EOF or an error).
    async fn is_closed(c: &mut TcpStream) -> bool {
        let mut b = [0u8; 16];
        // Writing may still succeed on a reset connection; reading tells.
        let _ = c.write_all(b"ping").await;
        guard(async {
            loop {
                match c.read(&mut b).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn pass_forwards_both_ways_and_propagates_close() {
        let p = proxy().await;
        let mut c = connect_from(ip(11), p.local_addr()).await;
        assert_eq!(roundtrip(&mut c, b"hello").await.unwrap(), b"hello");
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = c.into_split();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        guard(r.read_to_end(&mut got)).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, big);
    }

    #[tokio::test]
    async fn cut_resets_existing_and_new_connections_until_healed() {
        let p = proxy().await;
        let mut c = connect_from(ip(11), p.local_addr()).await;
        assert!(roundtrip(&mut c, b"a").await.is_some());
        p.set_fault(ip(11), Fault::Cut);
        assert!(is_closed(&mut c).await);
        let mut again = connect_from(ip(11), p.local_addr()).await;
        assert!(is_closed(&mut again).await);
        p.heal();
        let mut healed = connect_from(ip(11), p.local_addr()).await;
        assert_eq!(roundtrip(&mut healed, b"back").await.unwrap(), b"back");
    }

    #[tokio::test]
    async fn faults_are_per_source() {
        let p = proxy().await;
        let mut a = connect_from(ip(11), p.local_addr()).await;
        let mut b = connect_from(ip(12), p.local_addr()).await;
        assert!(roundtrip(&mut a, b"1").await.is_some());
        assert!(roundtrip(&mut b, b"2").await.is_some());
        p.set_fault(ip(11), Fault::Cut);
        assert!(is_closed(&mut a).await);
        assert_eq!(roundtrip(&mut b, b"still").await.unwrap(), b"still");
        let mut b2 = connect_from(ip(12), p.local_addr()).await;
        assert_eq!(roundtrip(&mut b2, b"new").await.unwrap(), b"new");
        assert_eq!(p.fault_for(ip(11)), Fault::Cut);
        assert_eq!(p.fault_for(ip(12)), Fault::Pass);
    }

    #[tokio::test]
    async fn set_all_replaces_per_source_faults() {
        let p = proxy().await;
        p.set_fault(ip(11), Fault::Cut);
        p.set_all(Fault::Delay(Duration::from_millis(1)));
        assert_eq!(p.fault_for(ip(11)), Fault::Delay(Duration::from_millis(1)));
        let mut a = connect_from(ip(11), p.local_addr()).await;
        assert!(roundtrip(&mut a, b"x").await.is_some());
        p.set_all(Fault::Cut);
        assert!(is_closed(&mut a).await);
        p.heal();
        assert_eq!(p.fault_for(ip(11)), Fault::Pass);
    }

    #[tokio::test]
    async fn delay_holds_chunks_and_keeps_order() {
        let p = proxy().await;
        let delay = Duration::from_millis(150);
        p.set_fault(ip(13), Fault::Delay(delay));
        let c = connect_from(ip(13), p.local_addr()).await;
        let (mut r, mut w) = c.into_split();
        let started = std::time::Instant::now();
        let writer = tokio::spawn(async move {
            for i in 0..20u8 {
                w.write_all(&[i; 100]).await.unwrap();
                tokio::task::yield_now().await;
            }
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        guard(r.read_to_end(&mut got)).await.unwrap();
        writer.await.unwrap();
        let want: Vec<u8> = (0..20u8).flat_map(|i| [i; 100]).collect();
        assert_eq!(got, want);
        // Delayed on the way there and on the way back.
        assert!(started.elapsed() >= 2 * delay, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn flaky_breaks_connections_by_probability() {
        let p = proxy().await;
        p.set_fault(
            ip(14),
            Fault::Flaky {
                close_probability: 1.0,
            },
        );
        let mut c = connect_from(ip(14), p.local_addr()).await;
        assert_eq!(roundtrip(&mut c, b"gone").await, None);
        p.set_fault(
            ip(14),
            Fault::Flaky {
                close_probability: 0.0,
            },
        );
        let mut c = connect_from(ip(14), p.local_addr()).await;
        for _ in 0..20 {
            assert_eq!(roundtrip(&mut c, b"kept").await.unwrap(), b"kept");
        }
    }

    #[tokio::test]
    async fn shutdown_closes_listener_and_connections() {
        let p = proxy().await;
        let addr = p.local_addr();
        let mut c = connect_from(ip(11), addr).await;
        assert!(roundtrip(&mut c, b"hi").await.is_some());
        guard(p.shutdown()).await;
        assert!(is_closed(&mut c).await);
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn only_loopback_addresses() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let outside: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        for (listen, target) in [(any, lo), (lo, outside)] {
            let err = FaultProxy::start(listen, target).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
