//! The resource layer against a real `capstan server`: the typed client's
//! compare-and-swap semantics, informers across a member restart and a compaction,
//! unparsable objects, allocators racing from several writers, repair, and leader
//! election on a Lease.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_api::events::{self, Recorder};
use capstan_api::informer::{self, Store};
use capstan_api::k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Service, ServicePort, ServiceSpec,
};
use capstan_api::{leader, Client, Error, Kind, ObjectRef};
use capstan_controllers::alloc::{repair, Allocator, Ranges};
use common::{Cluster, WAIT};

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not complete within {WAIT:?}"),
    }
}

/// Polls `cond` until it holds, panicking after `WAIT`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > WAIT {
            panic!("{what}: not true within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(endpoint: &str) -> Client {
    within("connect", Client::connect(&[endpoint.to_string()]))
        .await
        .unwrap_or_else(|e| panic!("connect {endpoint}: {e}"))
}

fn namespace(name: &str) -> Namespace {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.into());
    ns
}

fn config_map(ns: &str, name: &str, value: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.namespace = Some(ns.into());
    cm.metadata.name = Some(name.into());
    cm.data = Some([("v".to_string(), value.to_string())].into());
    cm
}

fn service(ns: &str, name: &str, ty: &str) -> Service {
    let mut s = Service::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.spec = Some(ServiceSpec {
        type_: Some(ty.into()),
        selector: Some([("app".to_string(), name.to_string())].into()),
        ports: Some(vec![ServicePort {
            port: 80,
            ..Default::default()
        }]),
        ..Default::default()
    });
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_create_update_delete_are_compare_and_swap() {
    let cluster = Cluster::start(1);
    let client = connect(cluster.endpoint(0)).await;

    // Namespaced objects need their namespace.
    let err = client
        .create(config_map("shop", "a", "1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NamespaceNotFound { .. }), "{err}");
    client.create(namespace("shop")).await.unwrap();
    let ns: Namespace = client
        .get(&ObjectRef::cluster(Kind::Namespace, "shop"))
        .await
        .unwrap();
    assert_eq!(
        ns.metadata
            .labels
            .unwrap()
            .get("kubernetes.io/metadata.name")
            .map(String::as_str),
        Some("shop"),
        "defaulting ran"
    );

    // Invalid objects are refused with the field named, and nothing is written.
    let err = client
        .create(config_map("shop", "Bad_Name", "1"))
        .await
        .unwrap_err();
    match &err {
        Error::Invalid { errors, .. } => {
            assert_eq!(errors[0].field, "metadata.name", "{err}");
        }
        other => panic!("expected Invalid, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("ConfigMap \"Bad_Name\" is invalid: metadata.name"),
        "{err}"
    );
    let mut bad_svc = service("shop", "web", "ClusterIP");
    bad_svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("HTTP".into());
    let err = client.create(bad_svc).await.unwrap_err();
    assert!(err.to_string().contains("spec.ports[0].protocol"), "{err}");
    let raw = client
        .etcd()
        .kv_client()
        .get(
            "/registry/",
            Some(
                capstan_api::etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    let keys: Vec<String> = raw
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    assert_eq!(
        keys,
        vec!["/registry/namespaces/shop"],
        "nothing else written"
    );

    let created = client.create(config_map("shop", "a", "1")).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_ref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv: i64 = meta.resource_version.as_ref().unwrap().parse().unwrap();

    // The stored JSON is Kubernetes' shape, without resourceVersion, under its key.
    let raw = client
        .etcd()
        .kv_client()
        .get("/registry/configmaps/shop/a", None)
        .await
        .unwrap();
    let kv = &raw.kvs()[0];
    assert_eq!(kv.mod_revision(), rv);
    let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["apiVersion"], "v1");
    assert!(v["metadata"]["resourceVersion"].is_null());

    assert!(matches!(
        client
            .create(config_map("shop", "a", "2"))
            .await
            .unwrap_err(),
        Error::AlreadyExists { .. }
    ));

    // Update with the current version works; with the old one it conflicts.
    let mut next = created.clone();
    next.data = Some([("v".to_string(), "2".to_string())].into());
    let updated = client.update(next.clone()).await.unwrap();
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    assert_eq!(updated.metadata.generation, Some(2));
    assert!(matches!(
        client.update(next).await.unwrap_err(),
        Error::Conflict { .. }
    ));

    // generateName.
    let mut gen = config_map("shop", "", "g");
    gen.metadata.name = None;
    gen.metadata.generate_name = Some("web-".into());
    let g = client.create(gen).await.unwrap();
    let gname = g.metadata.name.unwrap();
    assert!(gname.starts_with("web-") && gname.len() == 9, "{gname}");

    // Delete with a stale precondition conflicts; with the right one it deletes.
    let r = ObjectRef::namespaced(Kind::ConfigMap, "shop", "a");
    assert!(matches!(
        client.delete::<ConfigMap>(&r, Some(rv)).await.unwrap_err(),
        Error::Conflict { .. }
    ));
    let urv: i64 = updated.metadata.resource_version.unwrap().parse().unwrap();
    client.delete::<ConfigMap>(&r, Some(urv)).await.unwrap();
    assert!(matches!(
        client.get::<ConfigMap>(&r).await.unwrap_err(),
        Error::NotFound { .. }
    ));

    // Paged list: more objects than one page.
    let paged = client.clone().with_page_size(7);
    for i in 0..30 {
        paged
            .create(config_map("shop", &format!("p{i:02}"), "x"))
            .await
            .unwrap();
    }
    let list = paged.list::<ConfigMap>(Some("shop")).await.unwrap();
    assert_eq!(list.items.len(), 31);
    let names: Vec<_> = list
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // Deleting the namespace removes what is in it.
    client
        .delete::<Namespace>(&ObjectRef::cluster(Kind::Namespace, "shop"), None)
        .await
        .unwrap();
    assert!(client
        .list::<ConfigMap>(Some("shop"))
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_survives_restart_compaction_and_garbage() {
    let mut cluster = Cluster::start(3);
    let writer = connect(cluster.endpoint(1)).await;
    let watcher_client = connect(cluster.endpoint(0)).await;
    writer.create(namespace("inf")).await.unwrap();
    for i in 0..40 {
        writer
            .create(config_map("inf", &format!("c{i}"), "0"))
            .await
            .unwrap();
    }
    // A value that is not a ConfigMap: skipped, never fatal.
    writer
        .etcd()
        .kv_client()
        .put("/registry/configmaps/inf/garbage", "{not json", None)
        .await
        .unwrap();

    let store: Store<ConfigMap> = Store::default();
    let _informer = informer::TaskGuard(vec![informer::spawn(
        watcher_client,
        None,
        store.clone(),
        |_| {},
    )]);
    within("first list", store.wait_ready()).await;
    assert_eq!(store.len(), 40);
    assert_eq!(store.stats().skipped.load(Ordering::Relaxed), 1);

    // Changes arrive by watch, including a garbage overwrite of a good object.
    writer.create(config_map("inf", "late", "1")).await.unwrap();
    writer
        .etcd()
        .kv_client()
        .put("/registry/configmaps/inf/c0", "garbage", None)
        .await
        .unwrap();
    writer
        .create(config_map("inf", "later", "1"))
        .await
        .unwrap();
    eventually("watch delivers", || {
        store
            .get(&ObjectRef::namespaced(Kind::ConfigMap, "inf", "later"))
            .is_some()
    })
    .await;

    // The member the informer reads from goes away; writes and a compaction happen
    // meanwhile, so resuming from the last revision seen must fall back to a relist.
    cluster.kill(0);
    for i in 0..20 {
        writer
            .create(config_map("inf", &format!("d{i}"), "0"))
            .await
            .unwrap();
    }
    for i in 1..11 {
        let r = ObjectRef::namespaced(Kind::ConfigMap, "inf", format!("c{i}"));
        writer.delete::<ConfigMap>(&r, None).await.unwrap();
    }
    let rev = writer.list::<ConfigMap>(None).await.unwrap().revision;
    writer.etcd().kv_client().compact(rev, None).await.unwrap();
    cluster.restart(0);

    let want: HashSet<String> = writer
        .list::<ConfigMap>(Some("inf"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let start = Instant::now();
    loop {
        let have: HashSet<String> = store
            .list()
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        if have == want {
            break;
        }
        if start.elapsed() > WAIT {
            let stats = store.stats();
            panic!(
                "cache does not match the store after restart + compaction: missing {:?}, extra {:?}, lists {}, resumes {}, compactions {}",
                want.difference(&have).collect::<Vec<_>>(),
                have.difference(&want).collect::<Vec<_>>(),
                stats.lists.load(Ordering::Relaxed),
                stats.resumes.load(Ordering::Relaxed),
                stats.compactions.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        store.stats().resumes.load(Ordering::Relaxed) >= 1,
        "the watch was resumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_relists_when_its_revision_is_compacted() {
    use futures::StreamExt;
    let cluster = Cluster::start(1);
    let client = connect(cluster.endpoint(0)).await;
    client.create(namespace("cmp")).await.unwrap();
    for i in 0..5 {
        client
            .create(config_map("cmp", &format!("a{i}"), "0"))
            .await
            .unwrap();
    }
    let stats = Arc::new(informer::WatcherStats::default());
    let mut events = std::pin::pin!(informer::watcher::<ConfigMap>(
        client.clone(),
        Some("cmp".into()),
        stats.clone()
    ));
    // The stream is lazy: after the first list, no watch exists until it is polled
    // again, so the changes below land behind the list's revision + 1.
    match within("first list", events.next()).await {
        Some(informer::Event::Restart { objects, .. }) => assert_eq!(objects.len(), 5),
        other => panic!("expected the first list, got {other:?}"),
    }
    for i in 0..5 {
        client
            .delete::<ConfigMap>(
                &ObjectRef::namespaced(Kind::ConfigMap, "cmp", format!("a{i}")),
                None,
            )
            .await
            .unwrap();
    }
    let b = client.create(config_map("cmp", "b", "1")).await.unwrap();
    let rev: i64 = b.metadata.resource_version.unwrap().parse().unwrap();
    client.etcd().kv_client().compact(rev, None).await.unwrap();
    match within("relist", events.next()).await {
        Some(informer::Event::Restart { objects, revision }) => {
            assert_eq!(objects.len(), 1);
            assert_eq!(objects[0].metadata.name.as_deref(), Some("b"));
            assert!(revision >= rev);
        }
        other => panic!("expected a relist, got {other:?}"),
    }
    assert_eq!(stats.compactions.load(Ordering::Relaxed), 1);
    assert_eq!(stats.lists.load(Ordering::Relaxed), 2);
    // And it keeps watching after the relist.
    client.create(config_map("cmp", "c", "1")).await.unwrap();
    match within("watch after relist", events.next()).await {
        Some(informer::Event::Apply(o)) => assert_eq!(o.metadata.name.as_deref(), Some("c")),
        other => panic!("expected c, got {other:?}"),
    }
}

async fn allocating_client(endpoint: &str) -> Client {
    let c = connect(endpoint).await;
    let a = Allocator::load(&c).await.unwrap();
    c.with_service_allocator(Arc::new(a))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_allocators_never_collide_and_repair_fixes_leaks() {
    let cluster = Cluster::start(1);
    let admin = connect(cluster.endpoint(0)).await;
    admin.create(namespace("race")).await.unwrap();
    Ranges::parse("10.20.0.0/26", "30000-30019")
        .unwrap()
        .publish(&admin)
        .await
        .unwrap();

    // Four writers, each with its own allocator loaded before anyone wrote, so
    // they all believe the whole range is free and must collide on claims.
    let mut writers = Vec::new();
    for _ in 0..4 {
        writers.push(allocating_client(cluster.endpoint(0)).await);
    }
    let mut tasks = Vec::new();
    for (w, client) in writers.iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..12 {
                let ty = if i < 5 { "NodePort" } else { "ClusterIP" };
                let svc = client
                    .create(service("race", &format!("w{w}-s{i}"), ty))
                    .await
                    .unwrap();
                out.push(svc);
            }
            out
        }));
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    let mut ip_of = HashMap::new();
    for t in tasks {
        for svc in within("writers", t).await.unwrap() {
            let spec = svc.spec.unwrap();
            ip_of.insert(svc.metadata.name.unwrap(), spec.cluster_ip.clone().unwrap());
            assert!(
                ips.insert(spec.cluster_ip.clone().unwrap()),
                "{:?} allocated twice",
                spec.cluster_ip
            );
            for p in spec.ports.unwrap() {
                if let Some(np) = p.node_port {
                    assert!(ports.insert(np), "node port {np} allocated twice");
                }
            }
        }
    }
    assert_eq!(ips.len(), 48);
    assert_eq!(ports.len(), 20);
    // Every allocation has its record, and only those.
    let kv = admin.etcd();
    let ip_keys = kv
        .kv_client()
        .get(
            "/registry/ipaddresses/",
            Some(
                capstan_api::etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(ip_keys.kvs().len(), 48);
    // The node port range is exhausted now; the IP range nearly.
    let err = writers[0]
        .create(service("race", "one-too-many", "NodePort"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is full"), "{err}");

    // Requested addresses: honoured when free, refused when taken.
    let mut want = service("race", "fixed", "ClusterIP");
    // Not w0-s0's address: that Service is deleted below, and its claim with it.
    let taken_ip = ip_of["w1-s0"].clone();
    want.spec.as_mut().unwrap().cluster_ip = Some(taken_ip.clone());
    let err = writers[1].create(want).await.unwrap_err();
    assert!(err.to_string().contains("already allocated"), "{err}");

    // Deleting releases; repair drops leaked claims and restores missing ones.
    let victim = ObjectRef::namespaced(Kind::Service, "race", "w0-s0");
    let gone = writers[0].delete::<Service>(&victim, None).await.unwrap();
    let gone_ip = gone.spec.unwrap().cluster_ip.unwrap();
    let r = kv
        .kv_client()
        .get(format!("/registry/ipaddresses/{gone_ip}"), None)
        .await
        .unwrap();
    assert!(r.kvs().is_empty(), "claim released with the service");
    let leaked = (1..63)
        .map(|i| format!("10.20.0.{i}"))
        .find(|ip| !ips.contains(ip))
        .unwrap();
    let leaked_key = format!("/registry/ipaddresses/{leaked}");
    let value = format!(
        r#"{{"apiVersion":"networking.k8s.io/v1","kind":"IPAddress","metadata":{{"name":"{leaked}"}},"spec":{{"parentRef":{{"resource":"services","namespace":"race","name":"nobody"}}}}}}"#
    );
    kv.kv_client()
        .put(leaked_key.clone(), value, None)
        .await
        .unwrap();
    kv.kv_client()
        .delete(format!("/registry/ipaddresses/{taken_ip}"), None)
        .await
        .unwrap();
    let report = repair::repair(&admin).await.unwrap();
    assert_eq!(report.released, vec![leaked_key]);
    assert_eq!(
        report.restored,
        vec![format!("/registry/ipaddresses/{taken_ip}")]
    );
    assert_eq!(
        repair::repair(&admin).await.unwrap(),
        repair::Report::default(),
        "a second pass finds nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fold_repeats_and_carry_a_lease() {
    let cluster = Cluster::start(1);
    let client = connect(cluster.endpoint(0)).await;
    client.create(namespace("shop")).await.unwrap();
    let svc = client.create(config_map("shop", "web", "1")).await.unwrap();
    let recorder = Recorder::new(client.clone(), "test-controller");
    let object = events::reference(&svc);
    for _ in 0..3 {
        recorder
            .record(&object, "Warning", "Broken", "it broke")
            .await
            .unwrap();
    }
    recorder
        .record(&object, "Normal", "Fixed", "it works again")
        .await
        .unwrap();
    let mut list = client
        .list::<capstan_api::k8s_openapi::api::core::v1::Event>(Some("shop"))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| e.reason.clone());
    assert_eq!(list.len(), 2, "repeats fold into one event");
    assert_eq!(list[0].reason.as_deref(), Some("Broken"));
    assert_eq!(list[0].count, Some(3));
    assert_eq!(list[0].involved_object.uid, svc.metadata.uid);
    assert!(list[0]
        .metadata
        .name
        .as_deref()
        .unwrap()
        .starts_with("web."));
    assert_eq!(list[1].count, Some(1));
    let raw = client
        .etcd()
        .kv_client()
        .get(
            "/registry/events/shop/",
            Some(capstan_api::etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let leases: HashSet<i64> = raw.kvs().iter().map(|kv| kv.lease()).collect();
    assert_eq!(leases.len(), 1, "one shared lease per minute of events");
    let lease = *leases.iter().next().unwrap();
    assert_ne!(lease, 0);
    let ttl = client
        .etcd()
        .lease_client()
        .time_to_live(lease, None)
        .await
        .unwrap();
    assert!(ttl.ttl() > 3600 && ttl.ttl() <= 3660, "{}", ttl.ttl());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_takeover_after_the_lease() {
    let cluster = Cluster::start(1);
    let client = connect(cluster.endpoint(0)).await;
    client.create(namespace("kube-system")).await.unwrap();
    let config = |id: &str| leader::Config {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        ..leader::Config::new("test-lease", id)
    };
    let (a_rx, a_task) = leader::spawn(client.clone(), config("a"));
    let (b_rx, b_task) = leader::spawn(client.clone(), config("b"));
    let start = Instant::now();
    while !(*a_rx.borrow() || *b_rx.borrow()) {
        assert!(start.elapsed() < WAIT, "nobody became leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // For a while, exactly one leads.
    for _ in 0..20 {
        assert!(*a_rx.borrow() ^ *b_rx.borrow(), "exactly one leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (leader_task, follower_rx, follower) = if *a_rx.borrow() {
        (a_task, b_rx, "b")
    } else {
        (b_task, a_rx, "a")
    };
    leader_task.abort();
    let lost_at = Instant::now();
    let mut rx = follower_rx.clone();
    within("takeover", rx.wait_for(|l| *l)).await.unwrap();
    assert!(
        lost_at.elapsed() >= Duration::from_secs(2),
        "took over before the lease could expire"
    );
    let lease: capstan_api::k8s_openapi::api::coordination::v1::Lease = client
        .get(&ObjectRef::namespaced(
            Kind::Lease,
            "kube-system",
            "test-lease",
        ))
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(follower));
    assert_eq!(spec.lease_transitions, Some(1));
}
