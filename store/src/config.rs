//! A member's configuration, with etcd's flag names and defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::NodeId;

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterState {
    /// Form a new cluster from `--initial-cluster`.
    #[default]
    New,
    /// Join a running cluster (the member was added with MemberAdd).
    Existing,
}

/// Everything a store member needs to start.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `--name`.
    pub name: String,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-urls`.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<String>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as (name, peer URL) pairs.
    pub initial_cluster: Vec<(String, String)>,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--listen-metrics-urls`.
    pub listen_metrics_urls: Vec<String>,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (0 = etcd's default of 2 GiB).
    pub quota_backend_bytes: u64,
    /// `--snapshot-count`: applied entries between snapshots.
    pub snapshot_count: u64,
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// Interval of progress notifications on watches that ask for them.
    pub watch_progress_notify_interval: Duration,
    /// Client TLS (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`).
    pub client_tls: crate::tls::TlsFiles,
    /// Peer TLS (the `--peer-*` twins).
    pub peer_tls: crate::tls::TlsFiles,
    /// `--auto-compaction-mode` + `--auto-compaction-retention`; `None` = off.
    pub auto_compaction: Option<AutoCompaction>,
    /// Source address of outgoing peer connections (multi-homed hosts; the
    /// fault tests use it to tell links apart).
    pub peer_source_ip: Option<std::net::IpAddr>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            name: "default".into(),
            data_dir: PathBuf::from("capstan-data"),
            listen_client_urls: vec!["http://127.0.0.1:2379".into()],
            advertise_client_urls: vec![],
            listen_peer_urls: vec!["http://127.0.0.1:2380".into()],
            initial_advertise_peer_urls: vec![],
            initial_cluster: vec![],
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "capstan-cluster".into(),
            listen_metrics_urls: vec!["http://127.0.0.1:2381".into()],
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            quota_backend_bytes: 0,
            snapshot_count: 10_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            watch_progress_notify_interval: Duration::from_secs(600),
            peer_source_ip: None,
            auto_compaction: None,
            client_tls: Default::default(),
            peer_tls: Default::default(),
        }
    }
}

/// etcd's automatic compaction policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history by time: first compaction after the retention,
    /// then every tenth of it, to the revision that was current a retention ago.
    Periodic(Duration),
    /// Keep this many revisions; checked every five minutes.
    Revision(i64),
}

impl AutoCompaction {
    /// Parses etcd's `--auto-compaction-mode` and `--auto-compaction-retention`
    /// (periodic: a duration like `30m`, or a bare number of hours; revision: a
    /// count). A zero retention turns compaction off.
    pub fn parse(mode: &str, retention: &str) -> Result<Option<Self>> {
        let bad = || {
            Error::Config(format!(
                "--auto-compaction-retention {retention:?} is not valid for mode {mode:?}"
            ))
        };
        match mode {
            "periodic" => {
                let d = match retention.parse::<f64>() {
                    Ok(h) if h >= 0.0 && h.is_finite() => Duration::from_secs_f64(h * 3600.0),
                    Ok(_) => return Err(bad()),
                    Err(_) => parse_duration(retention).ok_or_else(bad)?,
                };
                Ok((!d.is_zero()).then_some(AutoCompaction::Periodic(d)))
            }
            "revision" => {
                let n: i64 = retention.parse().map_err(|_| bad())?;
                if n < 0 {
                    return Err(bad());
                }
                Ok((n > 0).then_some(AutoCompaction::Revision(n)))
            }
            other => Err(Error::Config(format!(
                "--auto-compaction-mode must be periodic or revision, not {other:?}"
            ))),
        }
    }

    /// How often the compactor looks at the store.
    pub fn interval(self) -> Duration {
        match self {
            AutoCompaction::Periodic(r) => (r / 10).max(Duration::from_millis(100)),
            AutoCompaction::Revision(_) => Duration::from_secs(300),
        }
    }
}

/// Go-style durations as etcd prints them: `90s`, `30m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// FNV-1a, 64 bit: stable across builds and platforms, unlike `DefaultHasher`.
pub(crate) fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A member's id from its peer URL and the cluster token, as etcd derives it
/// from the same inputs (never 0).
pub fn member_id(peer_url: &str, token: &str) -> NodeId {
    fnv64(&[peer_url, token]).max(1)
}

impl StoreConfig {
    /// Fills defaults that depend on other fields and checks consistency.
    pub fn validate(mut self) -> Result<Self> {
        if self.advertise_client_urls.is_empty() {
            self.advertise_client_urls = self.listen_client_urls.clone();
        }
        if self.initial_advertise_peer_urls.is_empty() {
            self.initial_advertise_peer_urls = self.listen_peer_urls.clone();
        }
        if self.initial_cluster.is_empty() {
            let url = self
                .initial_advertise_peer_urls
                .first()
                .cloned()
                .unwrap_or_default();
            self.initial_cluster = vec![(self.name.clone(), url)];
        }
        for u in self
            .listen_client_urls
            .iter()
            .chain(&self.listen_peer_urls)
            .chain(&self.listen_metrics_urls)
        {
            listen_addr(u)?;
        }
        for u in &self.listen_client_urls {
            if u.starts_with("https://") && self.client_tls.cert_and_key_missing() {
                return Err(Error::Config(format!(
                    "--listen-client-urls {u} is https: --cert-file and --key-file are required"
                )));
            }
        }
        for u in &self.listen_peer_urls {
            if u.starts_with("https://") && self.peer_tls.cert_and_key_missing() {
                return Err(Error::Config(format!(
                    "--listen-peer-urls {u} is https: --peer-cert-file and --peer-key-file are required"
                )));
            }
        }
        if self.client_tls.client_cert_auth && self.client_tls.trusted_ca.is_none() {
            return Err(Error::Config(
                "--client-cert-auth needs --trusted-ca-file".into(),
            ));
        }
        if self.peer_tls.client_cert_auth && self.peer_tls.trusted_ca.is_none() {
            return Err(Error::Config(
                "--peer-client-cert-auth needs --peer-trusted-ca-file".into(),
            ));
        }
        if !self.initial_cluster.iter().any(|(n, _)| n == &self.name) {
            return Err(Error::Config(format!(
                "--initial-cluster has no member named {:?} (--name); add `{}=<peer url>`",
                self.name, self.name
            )));
        }
        if self.max_request_bytes == 0 || self.max_txn_ops == 0 {
            return Err(Error::Config(
                "--max-request-bytes and --max-txn-ops must be positive".into(),
            ));
        }
        if self.election_timeout < self.heartbeat_interval * 2 {
            return Err(Error::Config(
                "--election-timeout must be at least twice --heartbeat-interval".into(),
            ));
        }
        Ok(self)
    }

    /// This member's peer URL: its advertised one when `--initial-cluster` lists it
    /// under this member's name, else the first URL listed under the name.
    pub fn own_peer_url(&self) -> String {
        let mine = |u: &String| {
            self.initial_cluster
                .iter()
                .any(|(n, url)| n == &self.name && url == u)
        };
        self.initial_advertise_peer_urls
            .iter()
            .find(|u| mine(u))
            .or_else(|| {
                self.initial_cluster
                    .iter()
                    .find(|(n, _)| n == &self.name)
                    .map(|(_, u)| u)
            })
            .cloned()
            .unwrap_or_default()
    }

    /// This member's id.
    pub fn member_id(&self) -> NodeId {
        member_id(&self.own_peer_url(), &self.initial_cluster_token)
    }

    /// The cluster id: a hash of the initial member ids and the token.
    pub fn cluster_id(&self) -> u64 {
        let mut ids: Vec<String> = self
            .initial_cluster
            .iter()
            .map(|(_, u)| format!("{:x}", member_id(u, &self.initial_cluster_token)))
            .collect();
        ids.sort();
        let mut parts: Vec<&str> = ids.iter().map(String::as_str).collect();
        parts.push(&self.initial_cluster_token);
        fnv64(&parts).max(1)
    }
}

/// The socket address of an `http://host:port` URL.
pub fn listen_addr(url: &str) -> Result<std::net::SocketAddr> {
    let u = url::Url::parse(url).map_err(|e| Error::Config(format!("bad URL {url:?}: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(Error::Config(format!(
            "URL {url:?}: the scheme must be http or https"
        )));
    }
    let host = u.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    let port = u
        .port()
        .ok_or_else(|| Error::Config(format!("URL {url:?} has no port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    format!("{host}:{port}")
        .parse::<std::net::SocketAddr>()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| Error::Config(format!("URL {url:?}: cannot resolve host")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compaction_flags_parse_like_etcd() {
        let p = AutoCompaction::parse;
        assert_eq!(p("periodic", "0").ok(), Some(None));
        assert_eq!(
            p("periodic", "1").ok(),
            Some(Some(AutoCompaction::Periodic(Duration::from_secs(3600))))
        );
        assert_eq!(
            p("periodic", "30m").ok(),
            Some(Some(AutoCompaction::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(
            p("periodic", "1h30m").ok(),
            Some(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            p("revision", "1000").ok(),
            Some(Some(AutoCompaction::Revision(1000)))
        );
        assert_eq!(p("revision", "0").ok(), Some(None));
        assert!(p("revision", "10m").is_err());
        assert!(p("periodic", "ten").is_err());
        assert!(p("periodic", "-1").is_err());
        assert!(p("daily", "1").is_err());
        assert_eq!(
            AutoCompaction::Periodic(Duration::from_secs(3600)).interval(),
            Duration::from_secs(360)
        );
    }
}
