//! The etcd v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance), the
//! peer service, and the `/metrics` + `/health` HTTP endpoint.
//!
//! Handlers validate what can be checked without state (etcd's `check*Request`
//! rules), then hand writes to [`Store::write`] and reads to the MVCC state
//! after [`Store::read_barrier`]. Nothing here panics on client input.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::AbortHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::authority::AuthorityFix;
use crate::config::listen_addr;
use crate::error::{Error, EtcdError, Result};
use crate::mvcc::KeyRange;
use crate::network::{ClusterView, Forward, MemberChange, CLUSTER_ID_HEADER, MAX_PEER_MESSAGE};
use crate::node::{Store, MAX_LEASE_TTL};
use crate::pb::capstanpb::{peer_server, PeerMessage};
use crate::pb::etcdserverpb::{self as rpc, request_op::Request as Op};
use crate::types::{decode, encode, NodeId, Pb, Reply, Request as Req};
use crate::watch::{run_watcher, Progress, WatchSpec};

/// Bytes per Maintenance.Snapshot message (etcd sends 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// The version reported by Status: the etcd API level capstan speaks.
pub const ETCD_VERSION: &str = "3.5.0";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

// ---------- validation (pure) ----------

fn check_put(p: &rpc::PutRequest) -> Result<(), EtcdError> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Writes of one txn branch, for the duplicate-key rule.
#[derive(Default)]
struct Writes {
    puts: BTreeSet<Bytes>,
    dels: Vec<KeyRange>,
}

/// etcd's `checkTxnRequest` + `checkIntervals`: op counts, empty keys, and no
/// key written twice (or put and deleted) in one branch.
pub fn check_txn(t: &rpc::TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    if t.compare.len() > max_ops || t.success.len() > max_ops || t.failure.len() > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    branch_writes(&t.success, max_ops)?;
    branch_writes(&t.failure, max_ops)?;
    Ok(())
}

fn branch_writes(ops: &[rpc::RequestOp], max_ops: usize) -> Result<Writes, EtcdError> {
    let mut w = Writes::default();
    for op in ops {
        match &op.request {
            Some(Op::RequestRange(r)) if r.key.is_empty() => return Err(EtcdError::EmptyKey),
            Some(Op::RequestRange(_)) | None => {}
            Some(Op::RequestPut(p)) => {
                check_put(p)?;
                if !w.puts.insert(p.key.clone()) {
                    return Err(EtcdError::DuplicateKey);
                }
            }
            Some(Op::RequestDeleteRange(d)) => {
                if d.key.is_empty() {
                    return Err(EtcdError::EmptyKey);
                }
                w.dels
                    .push(KeyRange::new(d.key.clone(), d.range_end.clone()));
            }
            Some(Op::RequestTxn(inner)) => {
                check_txn(inner, max_ops)?;
                let s = branch_writes(&inner.success, max_ops)?;
                let f = branch_writes(&inner.failure, max_ops)?;
                for k in s.puts.union(&f.puts) {
                    if w.puts.contains(k) {
                        return Err(EtcdError::DuplicateKey);
                    }
                }
                w.puts.extend(s.puts.into_iter().chain(f.puts));
                w.dels.extend(s.dels.into_iter().chain(f.dels));
            }
        }
    }
    for k in &w.puts {
        if w.dels.iter().any(|d| d.contains(k)) {
            return Err(EtcdError::DuplicateKey);
        }
    }
    Ok(w)
}

fn check_size(msg: &impl Message, max: usize) -> Result<(), EtcdError> {
    if msg.encoded_len() > max {
        Err(EtcdError::RequestTooLarge)
    } else {
        Ok(())
    }
}

fn txn_has_puts(t: &rpc::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(inner)) => txn_has_puts(inner),
            _ => false,
        })
}

fn unexpected(reply: Reply) -> Status {
    Status::internal(format!("unexpected apply result {reply:?}"))
}

// ---------- KV ----------

/// The KV service.
#[derive(Clone)]
pub struct KvService(pub Arc<Store>);

impl KvService {
    fn check_quota(&self) -> Result<(), EtcdError> {
        self.0.check_quota()
    }
}

#[tonic::async_trait]
impl rpc::kv_server::Kv for KvService {
    async fn range(
        &self,
        req: Request<rpc::RangeRequest>,
    ) -> Result<Response<rpc::RangeResponse>, Status> {
        let r = req.into_inner();
        if r.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        if !r.serializable {
            self.0.read_barrier().await?;
        }
        // A single key is one index lookup and one point read: cheaper inline
        // than a hop to the blocking pool. Ranges can be large and go there.
        let mut resp = if r.range_end.is_empty() {
            self.0.mvcc.range(&r)?
        } else {
            let mvcc = self.0.mvcc.clone();
            tokio::task::spawn_blocking(move || mvcc.range(&r))
                .await
                .map_err(|e| Status::internal(e.to_string()))??
        };
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
        resp.header = Some(self.0.header(rev));
        Ok(Response::new(resp))
    }

    async fn put(
        &self,
        req: Request<rpc::PutRequest>,
    ) -> Result<Response<rpc::PutResponse>, Status> {
        let p = req.into_inner();
        check_put(&p)?;
        check_size(&p, self.0.config.max_request_bytes)?;
        self.check_quota()?;
        let a = self.0.write(Req::Put(Pb(p))).await?;
        match a.reply {
            Reply::Put(Pb(mut r)) => {
                r.header = Some(self.0.header(a.revision));
                Ok(Response::new(r))
            }
            Reply::Err(e) => Err(e.into()),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<rpc::DeleteRangeRequest>,
    ) -> Result<Response<rpc::DeleteRangeResponse>, Status> {
        let d = req.into_inner();
        if d.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        check_size(&d, self.0.config.max_request_bytes)?;
        let a = self.0.write(Req::DeleteRange(Pb(d))).await?;
        match a.reply {
            Reply::DeleteRange(Pb(mut r)) => {
                r.header = Some(self.0.header(a.revision));
                Ok(Response::new(r))
            }
            Reply::Err(e) => Err(e.into()),
            other => Err(unexpected(other)),
        }
    }

    async fn txn(
        &self,
        req: Request<rpc::TxnRequest>,
    ) -> Result<Response<rpc::TxnResponse>, Status> {
        let t = req.into_inner();
        check_txn(&t, self.0.config.max_txn_ops)?;
        check_size(&t, self.0.config.max_request_bytes)?;
        if txn_has_puts(&t) {
            self.check_quota()?;
        }
        let a = self.0.write(Req::Txn(Pb(t))).await?;
        match a.reply {
            Reply::Txn(Pb(mut r)) => {
                r.header = Some(self.0.header(a.revision));
                Ok(Response::new(r))
            }
            Reply::Err(e) => Err(e.into()),
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        req: Request<rpc::CompactionRequest>,
    ) -> Result<Response<rpc::CompactionResponse>, Status> {
        let c = req.into_inner();
        let a = self.0.write(Req::Compact(Pb(c))).await?;
        match a.reply {
            Reply::Compact => Ok(Response::new(rpc::CompactionResponse {
                header: Some(self.0.header(a.revision)),
            })),
            Reply::Err(e) => Err(e.into()),
            other => Err(unexpected(other)),
        }
    }
}

// ---------- Watch ----------

/// The Watch service.
#[derive(Clone)]
pub struct WatchService(pub Arc<Store>);

/// Aborts a stream's watchers when the stream ends, however it ends.
struct StreamWatchers {
    map: HashMap<i64, (AbortHandle, Progress)>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl StreamWatchers {
    fn remove(&mut self, id: i64) -> bool {
        match self.map.remove(&id) {
            Some((h, _)) => {
                h.abort();
                self.metrics.watchers.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

impl Drop for StreamWatchers {
    fn drop(&mut self) {
        let ids: Vec<i64> = self.map.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
    }
}

async fn watch_stream(
    store: Arc<Store>,
    mut inbound: Streaming<rpc::WatchRequest>,
    tx: mpsc::Sender<Result<rpc::WatchResponse, Status>>,
) {
    use rpc::watch_request::RequestUnion;
    let mut watchers = StreamWatchers {
        map: HashMap::new(),
        metrics: store.metrics.clone(),
    };
    let mut next_id: i64 = 0;
    let header = store.header_fn();
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m,
            _ = tx.closed() => return,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "watch stream ended");
                return;
            }
        };
        match msg.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    while watchers.map.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id
                };
                if watchers.map.contains_key(&id) || id < 0 {
                    let resp = rpc::WatchResponse {
                        header: Some(header(store.mvcc.revision())),
                        watch_id: id,
                        created: true,
                        canceled: true,
                        cancel_reason: "etcdserver: watch ID already in use".into(),
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let rx = store.hub.subscribe();
                let current = store.mvcc.revision();
                let start = if c.start_revision > 0 {
                    c.start_revision
                } else {
                    current + 1
                };
                let spec = WatchSpec {
                    id,
                    range: KeyRange::new(c.key.clone(), c.range_end.clone()),
                    prev_kv: c.prev_kv,
                    no_put: c
                        .filters
                        .contains(&(rpc::watch_create_request::FilterType::Noput as i32)),
                    no_delete: c
                        .filters
                        .contains(&(rpc::watch_create_request::FilterType::Nodelete as i32)),
                    fragment: c.fragment,
                    progress_notify: c.progress_notify,
                };
                let created = rpc::WatchResponse {
                    header: Some(header(current)),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                };
                if tx.send(Ok(created)).await.is_err() {
                    return;
                }
                let progress = Progress::default();
                let task = tokio::spawn(run_watcher(
                    spec,
                    rx,
                    start,
                    store.mvcc.clone(),
                    tx.clone(),
                    header.clone(),
                    progress.clone(),
                    store.config.watch_progress_notify_interval,
                    store.metrics.clone(),
                ));
                store.metrics.watchers.fetch_add(1, Ordering::Relaxed);
                watchers.map.insert(id, (task.abort_handle(), progress));
                if c.watch_id == 0 {
                    next_id += 1;
                }
            }
            Some(RequestUnion::CancelRequest(c)) if watchers.remove(c.watch_id) => {
                let resp = rpc::WatchResponse {
                    header: Some(header(store.mvcc.revision())),
                    watch_id: c.watch_id,
                    canceled: true,
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            Some(RequestUnion::CancelRequest(_)) => {}
            Some(RequestUnion::ProgressRequest(_)) => {
                let current = store.mvcc.revision();
                let rev = watchers
                    .map
                    .values()
                    .map(|(_, p)| p.delivered())
                    .min()
                    .unwrap_or(current)
                    .min(current);
                let resp = rpc::WatchResponse {
                    header: Some(header(rev)),
                    watch_id: -1,
                    ..Default::default()
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
            None => {}
        }
    }
}

#[tonic::async_trait]
impl rpc::watch_server::Watch for WatchService {
    type WatchStream = BoxStream<rpc::WatchResponse>;

    async fn watch(
        &self,
        req: Request<Streaming<rpc::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(128);
        tokio::spawn(watch_stream(self.0.clone(), req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

// ---------- Lease ----------

/// The Lease service.
#[derive(Clone)]
pub struct LeaseService(pub Arc<Store>);

#[tonic::async_trait]
impl rpc::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<rpc::LeaseGrantRequest>,
    ) -> Result<Response<rpc::LeaseGrantResponse>, Status> {
        let r = req.into_inner();
        if r.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        self.0.check_quota()?;
        let ttl = r.ttl.max(self.0.min_lease_ttl());
        let id = if r.id != 0 {
            r.id
        } else {
            loop {
                let id = rand::random::<i64>() & i64::MAX;
                if id != 0 && self.0.mvcc.lease(id).is_none() {
                    break id;
                }
            }
        };
        let a = self.0.write(Req::LeaseGrant { id, ttl }).await?;
        match a.reply {
            Reply::LeaseGrant { id, ttl } => {
                self.0.lease_granted(id, ttl);
                Ok(Response::new(rpc::LeaseGrantResponse {
                    header: Some(self.0.header(a.revision)),
                    id,
                    ttl,
                    error: String::new(),
                }))
            }
            Reply::Err(e) => Err(e.into()),
            other => Err(unexpected(other)),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<rpc::LeaseRevokeRequest>,
    ) -> Result<Response<rpc::LeaseRevokeResponse>, Status> {
        let id = req.into_inner().id;
        let a = self.0.write(Req::LeaseRevoke { id }).await?;
        match a.reply {
            Reply::LeaseRevoke => Ok(Response::new(rpc::LeaseRevokeResponse {
                header: Some(self.0.header(a.revision)),
            })),
            Reply::Err(e) => Err(e.into()),
            other => Err(unexpected(other)),
        }
    }

    type LeaseKeepAliveStream = BoxStream<rpc::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<rpc::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(r)) = inbound.message().await {
                let resp = match store.keep_alive(r.id).await {
                    Ok(ttl) => Ok(rpc::LeaseKeepAliveResponse {
                        header: Some(store.header(store.mvcc.revision())),
                        id: r.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = resp.is_err();
                if tx.send(resp).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<rpc::LeaseTimeToLiveRequest>,
    ) -> Result<Response<rpc::LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        let ttl = self.0.time_to_live(r.id).await?;
        let (granted, keys) = match self.0.mvcc.lease(r.id) {
            Some((g, keys)) if ttl >= 0 => (g, if r.keys { keys } else { Vec::new() }),
            _ => (0, Vec::new()),
        };
        Ok(Response::new(rpc::LeaseTimeToLiveResponse {
            header: Some(self.0.header(self.0.mvcc.revision())),
            id: r.id,
            ttl: if granted == 0 { -1 } else { ttl },
            granted_ttl: granted,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _req: Request<rpc::LeaseLeasesRequest>,
    ) -> Result<Response<rpc::LeaseLeasesResponse>, Status> {
        let leases = self
            .0
            .mvcc
            .leases()
            .into_iter()
            .map(|(id, _)| rpc::LeaseStatus { id })
            .collect();
        Ok(Response::new(rpc::LeaseLeasesResponse {
            header: Some(self.0.header(self.0.mvcc.revision())),
            leases,
        }))
    }
}

// ---------- Cluster ----------

/// The Cluster service.
#[derive(Clone)]
pub struct ClusterService(pub Arc<Store>);

impl ClusterService {
    fn member_list(&self) -> Vec<rpc::Member> {
        to_members(self.0.view())
    }

    async fn change(
        &self,
        change: MemberChange,
    ) -> Result<(Option<rpc::ResponseHeader>, NodeId, Vec<rpc::Member>), Status> {
        let (id, view) = self.0.change_members(change).await?;
        Ok((
            Some(self.0.header(self.0.mvcc.revision())),
            id,
            to_members(view),
        ))
    }
}

fn to_members(view: ClusterView) -> Vec<rpc::Member> {
    view.members
        .into_iter()
        .map(|m| rpc::Member {
            id: m.id,
            name: m.info.name,
            peer_ur_ls: m.info.peer_urls,
            client_ur_ls: m.info.client_urls,
            is_learner: m.learner,
        })
        .collect()
}

#[tonic::async_trait]
impl rpc::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        r: Request<rpc::MemberAddRequest>,
    ) -> Result<Response<rpc::MemberAddResponse>, Status> {
        let r = r.into_inner();
        let (header, id, members) = self
            .change(MemberChange::Add {
                peer_urls: r.peer_ur_ls,
                learner: r.is_learner,
            })
            .await?;
        let member = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(rpc::MemberAddResponse {
            header,
            member,
            members,
        }))
    }
    async fn member_remove(
        &self,
        r: Request<rpc::MemberRemoveRequest>,
    ) -> Result<Response<rpc::MemberRemoveResponse>, Status> {
        let id = r.into_inner().id;
        let (header, _, members) = self.change(MemberChange::Remove { id }).await?;
        Ok(Response::new(rpc::MemberRemoveResponse { header, members }))
    }
    async fn member_update(
        &self,
        r: Request<rpc::MemberUpdateRequest>,
    ) -> Result<Response<rpc::MemberUpdateResponse>, Status> {
        let r = r.into_inner();
        let (header, _, members) = self
            .change(MemberChange::Update {
                id: r.id,
                peer_urls: r.peer_ur_ls,
            })
            .await?;
        Ok(Response::new(rpc::MemberUpdateResponse { header, members }))
    }
    async fn member_promote(
        &self,
        r: Request<rpc::MemberPromoteRequest>,
    ) -> Result<Response<rpc::MemberPromoteResponse>, Status> {
        let id = r.into_inner().id;
        let (header, _, members) = self.change(MemberChange::Promote { id }).await?;
        Ok(Response::new(rpc::MemberPromoteResponse {
            header,
            members,
        }))
    }
    async fn member_list(
        &self,
        req: Request<rpc::MemberListRequest>,
    ) -> Result<Response<rpc::MemberListResponse>, Status> {
        if req.get_ref().linearizable {
            self.0.read_barrier().await?;
        }
        Ok(Response::new(rpc::MemberListResponse {
            header: Some(self.0.header(self.0.mvcc.revision())),
            members: self.member_list(),
        }))
    }
}

// ---------- Maintenance ----------

/// The Maintenance service.
#[derive(Clone)]
pub struct MaintenanceService(pub Arc<Store>);

#[tonic::async_trait]
impl rpc::maintenance_server::Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        r: Request<rpc::AlarmRequest>,
    ) -> Result<Response<rpc::AlarmResponse>, Status> {
        use rpc::alarm_request::AlarmAction;
        let r = r.into_inner();
        let alarms = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => self
                .0
                .alarms()
                .into_iter()
                .filter(|&(m, a)| {
                    (r.member_id == 0 || m == r.member_id) && (r.alarm == 0 || a == r.alarm)
                })
                .collect(),
            Ok(action) => {
                let req = Req::Alarm {
                    activate: action == AlarmAction::Activate,
                    member: r.member_id,
                    alarm: r.alarm,
                };
                match self.0.write(req).await?.reply {
                    Reply::Alarm(changed) => changed,
                    Reply::Err(e) => return Err(e.into()),
                    other => return Err(unexpected(other)),
                }
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown alarm action {}",
                    r.action
                )))
            }
        };
        Ok(Response::new(rpc::AlarmResponse {
            header: Some(self.0.header(self.0.mvcc.revision())),
            alarms: alarms
                .into_iter()
                .map(|(member_id, alarm)| rpc::AlarmMember { member_id, alarm })
                .collect(),
        }))
    }

    async fn status(
        &self,
        _r: Request<rpc::StatusRequest>,
    ) -> Result<Response<rpc::StatusResponse>, Status> {
        let g = self.0.gauges();
        let leader = self.0.leader().map(|(id, _)| id).unwrap_or(0);
        let is_learner = self
            .0
            .members()
            .iter()
            .any(|(id, _, learner)| *id == self.0.id && *learner);
        let mut errors = Vec::new();
        if leader == 0 {
            errors.push("etcdserver: no leader".to_string());
        }
        for (m, a) in self.0.alarms() {
            let name = rpc::AlarmType::try_from(a)
                .map(|t| t.as_str_name())
                .unwrap_or("UNKNOWN");
            errors.push(format!("memberID:{m} alarm:{name} "));
        }
        Ok(Response::new(rpc::StatusResponse {
            header: Some(self.0.header(g.revision)),
            version: ETCD_VERSION.into(),
            db_size: g.db_size as i64,
            leader,
            raft_index: self.0.last_log_index(),
            raft_term: g.term,
            raft_applied_index: g.applied_index,
            errors,
            db_size_in_use: g.db_size as i64,
            is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _r: Request<rpc::DefragmentRequest>,
    ) -> Result<Response<rpc::DefragmentResponse>, Status> {
        let db = self.0.db.clone();
        tokio::task::spawn_blocking(move || {
            for name in crate::db::cf::ALL {
                if let Ok(h) = db.cf(name) {
                    db.raw().compact_range_cf(h, None::<&[u8]>, None::<&[u8]>);
                }
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(rpc::DefragmentResponse {
            header: Some(self.0.header(self.0.mvcc.revision())),
        }))
    }

    async fn hash(
        &self,
        _r: Request<rpc::HashRequest>,
    ) -> Result<Response<rpc::HashResponse>, Status> {
        let mvcc = self.0.mvcc.clone();
        let (hash, rev, _) = tokio::task::spawn_blocking(move || mvcc.hash_kv(0))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(rpc::HashResponse {
            header: Some(self.0.header(rev)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        r: Request<rpc::HashKvRequest>,
    ) -> Result<Response<rpc::HashKvResponse>, Status> {
        let at = r.into_inner().revision;
        let mvcc = self.0.mvcc.clone();
        let (hash, rev, compact) = tokio::task::spawn_blocking(move || mvcc.hash_kv(at))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(rpc::HashKvResponse {
            header: Some(self.0.header(self.0.mvcc.revision())),
            hash,
            compact_revision: compact,
            hash_revision: rev,
        }))
    }

    type SnapshotStream = BoxStream<rpc::SnapshotResponse>;

    async fn snapshot(
        &self,
        _r: Request<rpc::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let store = self.0.clone();
        let tmp = store.snaps.temp_path("save");
        let (mvcc, path) = (store.mvcc.clone(), tmp.clone());
        let written = tokio::task::spawn_blocking(move || {
            let header = crate::snapshot::write(&mvcc, &path)?;
            let file = std::fs::File::open(&path)?;
            Ok::<_, Error>((header, file))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()));
        // Unlinked at once: the open handle keeps the data until the stream ends.
        let _ = std::fs::remove_file(&tmp);
        let (header, mut file) = written??;
        let size = file.metadata().map_err(Error::from)?.len();
        let resp_header = store.header(header.revision);
        info!(
            bytes = size,
            revision = header.revision,
            "streaming a snapshot"
        );
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut sent = 0u64;
            loop {
                let mut blob = vec![0u8; SNAPSHOT_CHUNK];
                let n = match file.read(&mut blob) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "reading the snapshot: {e}"
                        ))));
                        return;
                    }
                };
                blob.truncate(n);
                sent += n as u64;
                let msg = rpc::SnapshotResponse {
                    header: Some(resp_header),
                    remaining_bytes: size.saturating_sub(sent),
                    blob: blob.into(),
                    ..Default::default()
                };
                if tx.blocking_send(Ok(msg)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        _r: Request<rpc::MoveLeaderRequest>,
    ) -> Result<Response<rpc::MoveLeaderResponse>, Status> {
        Err(Status::unimplemented(
            "capstan: move-leader is not implemented yet",
        ))
    }

    async fn downgrade(
        &self,
        _r: Request<rpc::DowngradeRequest>,
    ) -> Result<Response<rpc::DowngradeResponse>, Status> {
        Err(EtcdError::NotCapable.into())
    }
}

// ---------- Peer ----------

/// The member-to-member service.
#[derive(Clone)]
pub struct PeerService(pub Arc<Store>);

impl PeerService {
    /// Decodes a peer message after checking it comes from this cluster.
    fn decode<T: for<'de> serde::Deserialize<'de>>(
        &self,
        m: Request<PeerMessage>,
    ) -> Result<T, Status> {
        if let Some(v) = m.metadata().get(CLUSTER_ID_HEADER) {
            let theirs = v
                .to_str()
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok());
            if theirs != Some(self.0.cluster_id) {
                warn!(
                    remote = ?m.remote_addr(),
                    theirs = ?v,
                    ours = %format_args!("{:x}", self.0.cluster_id),
                    "refused a peer request from another cluster"
                );
                return Err(Status::failed_precondition(format!(
                    "cluster ID mismatch: this member belongs to cluster {:x}",
                    self.0.cluster_id
                )));
            }
        }
        decode("peer message", &m.into_inner().data)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

fn peer_reply<T: serde::Serialize>(v: &T) -> Result<Response<PeerMessage>, Status> {
    Ok(Response::new(PeerMessage {
        data: encode(v).into(),
    }))
}

#[tonic::async_trait]
impl peer_server::Peer for PeerService {
    async fn append_entries(
        &self,
        m: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let r = self.0.raft.append_entries(self.decode(m)?).await;
        peer_reply(&r)
    }
    async fn vote(&self, m: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let r = self.0.raft.vote(self.decode(m)?).await;
        peer_reply(&r)
    }
    async fn install_snapshot(
        &self,
        m: Request<PeerMessage>,
    ) -> Result<Response<PeerMessage>, Status> {
        let r = self.0.raft.install_snapshot(self.decode(m)?).await;
        peer_reply(&r)
    }
    async fn forward(&self, m: Request<PeerMessage>) -> Result<Response<PeerMessage>, Status> {
        let req: Forward = self.decode(m)?;
        peer_reply(&self.0.serve_forward(req).await)
    }
}

// ---------- serving ----------

/// Serves every listener of the member until `shutdown` turns true.
pub async fn serve(store: Arc<Store>, shutdown: tokio_watch::Receiver<bool>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let max_in = store.config.max_request_bytes + 512 * 1024;
    for url in store.config.listen_client_urls.clone() {
        let addr = listen_addr(&url)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {url}: {e}")))?;
        info!(%url, "serving client requests");
        let s = store.clone();
        let sd = shutdown.clone();
        let router = tonic::transport::Server::builder()
            .add_service(
                rpc::kv_server::KvServer::new(KvService(s.clone()))
                    .max_decoding_message_size(max_in)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                rpc::watch_server::WatchServer::new(WatchService(s.clone()))
                    .max_decoding_message_size(max_in)
                    .max_encoding_message_size(usize::MAX),
            )
            .add_service(
                rpc::lease_server::LeaseServer::new(LeaseService(s.clone()))
                    .max_decoding_message_size(max_in),
            )
            .add_service(
                rpc::cluster_server::ClusterServer::new(ClusterService(s.clone()))
                    .max_decoding_message_size(max_in),
            )
            .add_service(
                rpc::maintenance_server::MaintenanceServer::new(MaintenanceService(s.clone()))
                    .max_decoding_message_size(max_in),
            );
        if url.starts_with("https://") {
            let tls = store
                .config
                .client_tls
                .server_config("--cert-file and --key-file")?;
            let incoming = tls_incoming(listener, tls);
            tasks.spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, until(sd))
                    .await
                    .map_err(|e| Error::Config(format!("client server: {e}")))
            });
        } else {
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |conn| {
                    conn.map(|s| {
                        let _ = s.set_nodelay(true);
                        AuthorityFix::new(s)
                    })
                },
            );
            tasks.spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, until(sd))
                    .await
                    .map_err(|e| Error::Config(format!("client server: {e}")))
            });
        }
    }
    for url in store.config.listen_peer_urls.clone() {
        let addr = listen_addr(&url)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {url}: {e}")))?;
        info!(%url, "serving peers");
        let svc = peer_server::PeerServer::new(PeerService(store.clone()))
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        let sd = shutdown.clone();
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = tonic::transport::Server::builder();
        if url.starts_with("https://") {
            builder = builder
                .tls_config(peer_server_tls(&store.config.peer_tls)?)
                .map_err(|e| Error::Config(format!("peer TLS: {e}")))?;
        }
        tasks.spawn(async move {
            builder
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, until(sd))
                .await
                .map_err(|e| Error::Config(format!("peer server: {e}")))
        });
    }
    for url in store.config.listen_metrics_urls.clone() {
        let addr = listen_addr(&url)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {url}: {e}")))?;
        info!(%url, "serving /metrics and /health");
        tasks.spawn(crate::server::http::serve(
            store.clone(),
            listener,
            shutdown.clone(),
        ));
    }
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => warn!(error = %e, "listener task failed"),
        }
    }
    Ok(())
}

/// TLS connections of a client listener: handshakes run in their own tasks (a
/// slow or hostile client cannot stall the accept loop); failed ones are logged
/// and dropped. Each decrypted stream gets the `:authority` fix.
fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<
    std::io::Result<AuthorityFix<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>,
> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accepting a client connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp))
                        .await;
                match handshake {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(AuthorityFix::new(tls))).await;
                    }
                    Ok(Err(e)) => warn!(%peer, error = %e, "client TLS handshake failed"),
                    Err(_) => warn!(%peer, "client TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

fn peer_server_tls(files: &crate::tls::TlsFiles) -> Result<tonic::transport::ServerTlsConfig> {
    let read = |p: &Option<std::path::PathBuf>, what: &str| -> Result<Vec<u8>> {
        let p = p
            .as_ref()
            .ok_or_else(|| Error::Config(format!("https peer URLs need --peer-{what}")))?;
        std::fs::read(p).map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
    };
    let mut tls =
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            read(&files.cert, "cert-file")?,
            read(&files.key, "key-file")?,
        ));
    if files.client_cert_auth {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(
            &files.trusted_ca,
            "trusted-ca-file",
        )?));
    }
    Ok(tls)
}

async fn until(mut rx: tokio_watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A minimal HTTP/1 endpoint for `/metrics` and `/health`.
pub mod http {
    use std::convert::Infallible;
    use std::sync::Arc;

    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::watch;

    use crate::error::Result;
    use crate::node::Store;

    /// Serves until shutdown.
    pub async fn serve(
        store: Arc<Store>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        loop {
            let (sock, _) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                _ = shutdown.changed() => return Ok(()),
            };
            let store = store.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let (status, ctype, body) = match req.uri().path() {
                            "/metrics" => {
                                let g = store.gauges();
                                (200, "text/plain; version=0.0.4", store.metrics.render(&g))
                            }
                            "/health" => {
                                let ok = store.leader().is_some();
                                let body = format!(
                                    "{{\"health\":\"{ok}\",\"reason\":\"{}\"}}",
                                    if ok { "" } else { "no leader" }
                                );
                                (if ok { 200 } else { 503 }, "application/json", body)
                            }
                            _ => (404, "text/plain", "not found\n".to_string()),
                        };
                        let resp = hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &'static str) -> rpc::RequestOp {
        rpc::RequestOp {
            request: Some(Op::RequestPut(rpc::PutRequest {
                key: Bytes::from_static(k.as_bytes()),
                ..Default::default()
            })),
        }
    }

    fn del(k: &'static str, end: &'static str) -> rpc::RequestOp {
        rpc::RequestOp {
            request: Some(Op::RequestDeleteRange(rpc::DeleteRangeRequest {
                key: Bytes::from_static(k.as_bytes()),
                range_end: Bytes::from_static(end.as_bytes()),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn txn_checks() {
        let txn = |success: Vec<rpc::RequestOp>| rpc::TxnRequest {
            success,
            ..Default::default()
        };
        let cases = vec![
            (txn(vec![put("a"), put("b")]), Ok(())),
            (txn(vec![put("a"), put("a")]), Err(EtcdError::DuplicateKey)),
            (
                txn(vec![put("b"), del("a", "c")]),
                Err(EtcdError::DuplicateKey),
            ),
            (txn(vec![put("d"), del("a", "c")]), Ok(())),
            (txn(vec![put("")]), Err(EtcdError::EmptyKey)),
            (
                txn((0..3).map(|_| put("x")).collect()),
                Err(EtcdError::TooManyOps),
            ),
        ];
        for (i, (t, want)) in cases.into_iter().enumerate() {
            assert_eq!(check_txn(&t, 2), want, "case {i}");
        }
        let nested = txn(vec![
            put("a"),
            rpc::RequestOp {
                request: Some(Op::RequestTxn(txn(vec![put("a")]))),
            },
        ]);
        assert_eq!(check_txn(&nested, 8), Err(EtcdError::DuplicateKey));
    }
}
