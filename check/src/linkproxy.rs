//! A fault-injecting TCP proxy for the peer links of a test cluster, on loopback.
//!
//! One proxy sits in front of each member's peer port. The member a connection
//! comes from is known by its source address (each member binds its outgoing peer
//! connections to its own loopback address), so faults apply per link direction:
//! cut it (existing connections are closed, new ones are closed at once, so Raft
//! sees an unreachable peer quickly), delay every chunk, or break connections at
//! random (a lost message, as gRPC sees it). Dropping the proxy stops its tasks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What happens to the traffic of one link.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward untouched.
    Pass,
    /// Close every connection, existing and new.
    Cut,
    /// Forward each chunk after this delay (order kept).
    Delay(Duration),
    /// Each chunk closes the connection with this probability.
    Flaky {
        /// Probability per chunk.
        close_probability: f64,
    },
}

#[derive(Debug, Default)]
struct Faults {
    by_source: HashMap<IpAddr, Fault>,
    all: Option<Fault>,
}

impl Faults {
    fn get(&self, src: IpAddr) -> Fault {
        self.by_source
            .get(&src)
            .or(self.all.as_ref())
            .cloned()
            .unwrap_or(Fault::Pass)
    }
}

/// A proxy from `listen` to `target`.
#[derive(Debug)]
pub struct FaultProxy {
    faults: Arc<Mutex<Faults>>,
    /// Bumped on every change: connections re-read their fault and a cut closes them.
    changed: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    /// The address it listens on.
    pub listen: SocketAddr,
}

impl FaultProxy {
    /// Binds `listen` and starts forwarding to `target`.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (changed, _) = watch::channel(0u64);
        let (stop, stop_rx) = watch::channel(false);
        let p = FaultProxy {
            faults: faults.clone(),
            changed: changed.clone(),
            stop,
            listen,
        };
        tokio::spawn(accept_loop(listener, target, faults, changed, stop_rx));
        Ok(p)
    }

    /// Sets the fault of the link from `source`.
    pub fn set_fault(&self, source: IpAddr, fault: Fault) {
        self.faults.lock().by_source.insert(source, fault);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Sets the fault of every link without a fault of its own.
    pub fn set_all(&self, fault: Fault) {
        self.faults.lock().all = Some(fault);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Back to forwarding everything.
    pub fn heal(&self) {
        *self.faults.lock() = Faults::default();
        self.changed.send_modify(|v| *v += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    changed: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (conn, from) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let src = from.ip();
        if faults.lock().get(src) == Fault::Cut {
            drop(conn);
            continue;
        }
        let (faults, changed_rx, stop) = (faults.clone(), changed.subscribe(), stop.clone());
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = conn.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = conn.into_split();
            let (ur, uw) = upstream.into_split();
            // Either direction ending (or a fault closing it) ends both.
            tokio::select! {
                _ = pump(cr, uw, src, faults.clone(), changed_rx.clone()) => {}
                _ = pump(ur, cw, src, faults, changed_rx) => {}
                _ = wait_stop(stop) => {}
            }
        });
    }
}

async fn wait_stop(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Copies one direction of a connection, applying the link's fault to each chunk.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    src: IpAddr,
    faults: Arc<Mutex<Faults>>,
    mut changed: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            r = changed.changed() => {
                if r.is_err() || faults.lock().get(src) == Fault::Cut {
                    return;
                }
                continue;
            }
        };
        let fault = faults.lock().get(src);
        match fault {
            Fault::Pass => {}
            Fault::Cut => return,
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Flaky { close_probability } => {
                if rand::thread_rng().gen_bool(close_probability.clamp(0.0, 1.0)) {
                    return;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::time::Instant;
    use tokio::net::TcpSocket;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = c.read(&mut b).await {
                        if n == 0 || c.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn proxy_to(target: SocketAddr) -> FaultProxy {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        FaultProxy::start(([127, 0, 0, 1], port).into(), target)
            .await
            .unwrap()
    }

    async fn connect_from(src: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
        let s = TcpSocket::new_v4()?;
        s.bind((IpAddr::from(src), 0).into())?;
        s.connect(to).await
    }

    /// Sends `msg` and reads the echo; `None` if the connection fails.
    async fn roundtrip(c: &mut TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
        c.write_all(msg).await.ok()?;
        let mut out = vec![0u8; msg.len()];
        match tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut out)).await {
            Ok(Ok(_)) => Some(out),
            _ => None,
        }
    }

    #[tokio::test]
    async fn cut_is_per_source_and_heals() {
        let p = proxy_to(echo_server().await).await;
        let mut a = connect_from([127, 0, 0, 11], p.listen).await.unwrap();
        let mut b = connect_from([127, 0, 0, 12], p.listen).await.unwrap();
        assert_eq!(roundtrip(&mut a, b"hi").await.as_deref(), Some(&b"hi"[..]));
        p.set_fault(IpAddr::from([127, 0, 0, 11]), Fault::Cut);
        assert_eq!(roundtrip(&mut a, b"lost").await, None);
        assert_eq!(roundtrip(&mut b, b"ok").await.as_deref(), Some(&b"ok"[..]));
        let mut again = connect_from([127, 0, 0, 11], p.listen).await.unwrap();
        assert_eq!(roundtrip(&mut again, b"no").await, None);
        p.heal();
        let mut healed = connect_from([127, 0, 0, 11], p.listen).await.unwrap();
        assert_eq!(
            roundtrip(&mut healed, b"back").await.as_deref(),
            Some(&b"back"[..])
        );
    }

    #[tokio::test]
    async fn delay_holds_each_chunk_and_keeps_order() {
        let p = proxy_to(echo_server().await).await;
        p.set_all(Fault::Delay(Duration::from_millis(100)));
        let mut c = connect_from([127, 0, 0, 13], p.listen).await.unwrap();
        let t = Instant::now();
        assert_eq!(
            roundtrip(&mut c, b"slow").await.as_deref(),
            Some(&b"slow"[..])
        );
        // Both directions are delayed.
        assert!(t.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn flaky_with_certainty_breaks_connections() {
        let p = proxy_to(echo_server().await).await;
        p.set_all(Fault::Flaky {
            close_probability: 1.0,
        });
        let mut c = connect_from([127, 0, 0, 14], p.listen).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"gone").await, None);
    }
}
