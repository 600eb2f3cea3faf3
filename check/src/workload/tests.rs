#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use super::*;

fn ops(seed: u64, client: u32, n: usize) -> Vec<Op> {
    let mut c = OpChooser::new(seed, ClientId(client), 5, "/w/");
    (0..n).map(|_| c.next_op()).collect()
}

#[test]
fn op_choice_is_deterministic_per_seed_and_client() {
    assert_eq!(ops(42, 3, 200), ops(42, 3, 200));
    assert_ne!(ops(42, 3, 200), ops(43, 3, 200));
    assert_ne!(ops(42, 3, 200), ops(42, 4, 200));
}

#[test]
fn ops_use_the_key_set_and_unique_values_and_every_kind() {
    let all: Vec<Op> = (0..4).flat_map(|c| ops(7, c, 2000)).collect();
    let keys: HashSet<&str> = all.iter().map(Op::key).collect();
    let want: HashSet<String> = (0..5).map(|i| key_name("/w/", i)).collect();
    assert_eq!(
        keys,
        want.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    let mut values = HashSet::new();
    let mut kinds = [0usize; 4];
    for op in &all {
        match op {
            Op::Get { .. } => kinds[0] += 1,
            Op::Put { value, .. } => {
                kinds[1] += 1;
                assert!(values.insert(value.clone()), "duplicate value {value}");
            }
            Op::Cas { value, .. } => {
                kinds[2] += 1;
                assert!(values.insert(value.clone()), "duplicate value {value}");
            }
            Op::Delete { .. } => kinds[3] += 1,
        }
    }
    // 8000 draws: each kind is near its share; these bounds are loose.
    for (kind, share) in kinds.iter().zip(MIX) {
        let expected = 8000 * share as usize / 100;
        assert!(*kind > expected / 2 && *kind < expected * 2, "{kinds:?}");
    }
}

#[test]
fn cas_expects_what_the_client_saw() {
    let mut c = OpChooser::new(1, ClientId(0), 1, "/w/");
    let key = key_name("/w/", 0);
    c.observe(
        &Op::Get { key: key.clone() },
        &Output::Get {
            value: Some("seen".into()),
            revision: None,
        },
    );
    let expects: Vec<Option<String>> = (0..200)
        .filter_map(|_| match c.next_op() {
            Op::Cas { expect, .. } => Some(expect),
            _ => None,
        })
        .collect();
    assert!(expects.contains(&Some("seen".to_owned())));
    assert!(expects.contains(&None));
    c.observe(
        &Op::Delete { key },
        &Output::Delete {
            deleted: 1,
            revision: None,
        },
    );
    let after: Vec<Option<String>> = (0..200)
        .filter_map(|_| match c.next_op() {
            Op::Cas { expect, .. } => Some(expect),
            _ => None,
        })
        .collect();
    assert!(after.iter().all(Option::is_none));
}

#[test]
fn error_classification_is_conservative() {
    use etcd_client::Error as E;
    use tonic::{Code, Status};
    let refused = || {
        let mut s = Status::unavailable("tcp connect error");
        s.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        s
    };
    let cases: Vec<(E, bool)> = vec![
        (E::InvalidArgs("empty".into()), true),
        (E::GRpcStatus(Status::invalid_argument("bad")), true),
        (E::GRpcStatus(Status::permission_denied("no")), true),
        (E::GRpcStatus(Status::unauthenticated("no")), true),
        (E::GRpcStatus(Status::unimplemented("no")), true),
        (E::GRpcStatus(refused()), true),
        (
            E::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            true,
        ),
        (
            E::GRpcStatus(Status::unavailable("etcdserver: no leader")),
            false,
        ),
        (
            E::GRpcStatus(Status::unavailable("etcdserver: request timed out")),
            false,
        ),
        (
            E::GRpcStatus(Status::new(Code::DeadlineExceeded, "late")),
            false,
        ),
        (E::GRpcStatus(Status::cancelled("gone")), false),
        (E::GRpcStatus(Status::unknown("h2 protocol error")), false),
        (E::GRpcStatus(Status::failed_precondition("?")), false),
        (E::GRpcStatus(Status::resource_exhausted("big")), false),
        (
            E::IoError(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            false,
        ),
        (E::WatchError("x".into()), false),
    ];
    for (error, fail) in cases {
        let outcome = classify_error(&error);
        assert_eq!(
            matches!(outcome, Outcome::Fail { .. }),
            fail,
            "{error}: {outcome:?}"
        );
        if !fail {
            assert!(matches!(outcome, Outcome::Unknown { .. }));
        }
    }
}

fn config(endpoints: &[&str]) -> WorkloadConfig {
    WorkloadConfig {
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        keys: 5,
        clients: 4,
        duration: Duration::from_millis(300),
        seed: 1,
        op_timeout: Duration::from_millis(500),
        prefix: "/w/".into(),
    }
}

#[test]
fn config_validation() {
    let ok = [
        "http://127.0.0.1:2379",
        "127.0.0.1:2379",
        "https://127.0.0.5:1/",
        "http://localhost:2379",
        "http://[::1]:2379",
    ];
    for e in ok {
        assert!(config(&[e]).validate().is_ok(), "{e}");
    }
    let bad = [
        "http://10.0.0.1:2379",
        "http://0.0.0.0:2379",
        "http://example.com:2379",
        "http://127.0.0.1",
    ];
    for e in bad {
        assert!(
            matches!(
                config(&[e]).validate(),
                Err(WorkloadError::NotLoopback { .. })
            ),
            "{e}"
        );
    }
    assert!(matches!(
        config(&[]).validate(),
        Err(WorkloadError::NoEndpoints)
    ));
    let mut c = config(&["127.0.0.1:1"]);
    c.clients = 0;
    assert!(matches!(
        c.validate(),
        Err(WorkloadError::Zero { field: "clients" })
    ));
}

/// A loopback endpoint nothing listens on.
async fn dead_endpoint() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

#[tokio::test]
async fn unreachable_cluster_records_only_failures() {
    let recorder = Recorder::new();
    let ep = dead_endpoint().await;
    run_workload(config(&[&ep]), recorder.clone()).await;
    let h = recorder.history();
    let counts = h.counts();
    assert!(counts.total > 0);
    assert_eq!(counts.fail, counts.total, "{:?}", h.records.first());
}

#[tokio::test]
async fn watchers_stop_when_told() {
    let ep = dead_endpoint().await;
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(run_watchers(vec![ep], "/w/".into(), 3, 10, rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    let logs = handle.await.unwrap();
    assert_eq!(logs.len(), 3);
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log.id, i);
        assert_eq!(log.start_revision, Revision(10));
        assert!(log.events.is_empty());
        assert!(log.resumes.is_empty());
        assert!(!log.errors.is_empty(), "{log:?}");
    }
}

/// Needs an etcd-compatible server on loopback:
/// `CAPSTAN_CHECK_ENDPOINT=http://127.0.0.1:2379 cargo test -p capstan-check -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an etcd-compatible server on 127.0.0.1"]
async fn smoke_against_a_real_server() {
    let endpoint = std::env::var("CAPSTAN_CHECK_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:2379".to_owned());
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("/capstan-check-smoke/{unique}/");
    let mut client = Client::connect([endpoint.as_str()], None).await.unwrap();
    let start = client
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
        + 1;

    let (stop_tx, stop_rx) = watch::channel(false);
    let watchers = tokio::spawn(run_watchers(
        vec![endpoint.clone()],
        prefix.clone(),
        3,
        start,
        stop_rx,
    ));
    let recorder = Recorder::new();
    run_workload(
        WorkloadConfig {
            endpoints: vec![endpoint.clone()],
            keys: 5,
            clients: 8,
            duration: Duration::from_secs(3),
            seed: 7,
            op_timeout: Duration::from_secs(2),
            prefix: prefix.clone(),
        },
        recorder.clone(),
    )
    .await;
    // Give the watchers a moment to receive the last writes, then stop them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send(true).unwrap();
    let logs = watchers.await.unwrap();
    let report = crate::check_all(&recorder.history(), &logs);
    println!("{report}");
    assert!(report.ok(), "{report}");
    assert!(report.outcomes.ok > 100, "{report}");
    assert!(logs.iter().all(|l| !l.events.is_empty()));
}
