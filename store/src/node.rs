//! A running store member: RocksDB, Raft, the MVCC state, the watch hub and
//! the lessor, with the request paths every gRPC service uses.
//!
//! Writes go through Raft on the leader; a follower forwards them. Linearizable
//! reads wait for the leader's read index to be applied locally.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{ClusterState, StoreConfig};
use crate::db::Db;
use crate::error::{Error, EtcdError, Result};
use crate::lessor::Lessor;
use crate::log_store::LogStore;
use crate::metrics::{Gauges, Metrics};
use crate::mvcc::Mvcc;
use crate::network::{
    ClusterView, Forward, ForwardReply, MemberChange, MemberEntry, Network, Peers,
};
use crate::pb::etcdserverpb::ResponseHeader;
use crate::proposer::{ProposeError, Proposer};
use crate::sm::StateMachine;
use crate::types::{decode, encode, Applied, MemberInfo, NodeId, Raft, Request};
use crate::watch::{HeaderFn, WatchHub};

/// etcd's maximum lease TTL (seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's `AlarmType` NOSPACE.
pub const ALARM_NOSPACE: i32 = 1;
/// `--quota-backend-bytes` 0 means etcd's default, 2 GiB.
const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// Which cluster a data dir belongs to and which member it is, fixed when the
/// member first starts: later flags cannot move a data dir to another cluster.
const META_IDENTITY: &[u8] = b"identity";
/// Set when this member learns it was removed: it must not rejoin on its old data.
const META_REMOVED: &[u8] = b"removed";

/// A learner counts as caught up (for MemberPromote and for the automatic
/// promotion of members added as voters) when it has 90% of the leader's log,
/// etcd's rule.
const LEARNER_READY_RATIO: f64 = 0.9;

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    cluster_id: u64,
    member_id: NodeId,
}

/// Records which cluster and member a data dir belongs to (durably).
fn write_identity(db: &Db, cluster_id: u64, member_id: NodeId) -> Result<()> {
    let mut b = rocksdb::WriteBatch::default();
    b.put_cf(
        db.cf(crate::db::cf::META)?,
        META_IDENTITY,
        encode(&Identity {
            cluster_id,
            member_id,
        }),
    );
    db.write_sync(b)
}

/// One store member.
pub struct Store {
    /// This member's id.
    pub id: NodeId,
    /// The cluster id.
    pub cluster_id: u64,
    /// Configuration it runs with.
    pub config: StoreConfig,
    /// Raft.
    pub raft: Raft,
    /// MVCC state.
    pub mvcc: Arc<Mvcc>,
    /// Watch fan-out.
    pub hub: WatchHub,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    pub(crate) peers: Peers,
    pub(crate) lessor: Lessor,
    pub(crate) db: Db,
    pub(crate) snaps: crate::snapshot::SnapshotDir,
    proposer: Proposer,
    leader_changes: AtomicU64,
    /// Database size, refreshed every tick: the quota check runs on every put.
    db_size: AtomicU64,
    /// Turns true when this member has been removed from the cluster.
    removed: watch::Sender<bool>,
    /// A NOSPACE alarm proposal is in flight.
    raising_nospace: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &format_args!("{:x}", self.id))
            .finish()
    }
}

impl Store {
    /// Opens the data dir, starts Raft and joins or forms the cluster.
    pub async fn start(config: StoreConfig) -> Result<Arc<Self>> {
        let config = config.validate()?;
        let db = tokio::task::block_in_place(|| Db::open(&config.data_dir))?;
        if db.get(crate::db::cf::META, META_REMOVED)?.is_some() {
            return Err(Error::Config(format!(
                "this member was removed from its cluster; its data dir {} cannot rejoin. \
                 Remove the data dir and add the member again (`etcdctl member add`)",
                config.data_dir.display()
            )));
        }
        let peer_tls = if config.peer_tls.trusted_ca.is_some() || config.peer_tls.cert.is_some() {
            Some(config.peer_tls.client_config()?)
        } else {
            None
        };
        let peers = Peers::new(config.peer_source_ip, peer_tls);
        let (id, cluster_id) = match db.get(crate::db::cf::META, META_IDENTITY)? {
            Some(v) => {
                let i: Identity = decode("member identity", &v)?;
                (i.member_id, i.cluster_id)
            }
            None => {
                let (id, cluster_id) = match config.initial_cluster_state {
                    ClusterState::New => (config.member_id(), config.cluster_id()),
                    ClusterState::Existing => discover(&config, &peers).await?,
                };
                write_identity(&db, cluster_id, id)?;
                (id, cluster_id)
            }
        };
        peers.set_cluster_id(cluster_id);
        let metrics = Arc::new(Metrics::default());
        tokio::task::block_in_place(|| crate::snapshot::resume_load(&db))?;
        let snaps = crate::snapshot::SnapshotDir::open(&config.data_dir)?;
        let snap_dir = snaps.clone();
        let mvcc = tokio::task::block_in_place(|| Mvcc::open(db.clone()))?;
        check_data_dir_is_ours(&config, id, &mvcc)?;
        let hub = WatchHub::default();
        let log = LogStore::new(db.clone(), metrics.clone())?;
        let sm = StateMachine::new(mvcc.clone(), hub.clone(), metrics.clone(), snaps);
        let hb = config.heartbeat_interval.as_millis() as u64;
        let et = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: config.initial_cluster_token.clone(),
            heartbeat_interval: hb,
            // openraft's followers refuse votes for `election_timeout_max` after
            // the last heartbeat (its leader lease). Taking etcd's election timeout
            // as that bound, and randomizing timers below it, makes a dead leader
            // replaced in about one election timeout, as with etcd.
            election_timeout_min: (et / 2).max(hb + 1),
            election_timeout_max: et,
            install_snapshot_timeout: 10_000,
            max_payload_entries: 1000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count.max(1)),
            // etcd keeps 5000 entries behind a snapshot for slow followers.
            max_in_snapshot_log_to_keep: config.snapshot_count.clamp(1, 5000),
            purge_batch_size: config.snapshot_count.clamp(1, 1024),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))?;
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            Network::new(peers.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| Error::Raft(e.to_string()))?;
        let store = Arc::new(Store {
            id,
            cluster_id,
            config,
            raft: raft.clone(),
            mvcc,
            hub,
            metrics,
            peers,
            lessor: Lessor::default(),
            db,
            snaps: snap_dir,
            proposer: Proposer::start(raft.clone()),
            leader_changes: AtomicU64::new(0),
            db_size: AtomicU64::new(0),
            removed: watch::Sender::new(false),
            raising_nospace: std::sync::atomic::AtomicBool::new(false),
        });
        store.bootstrap().await?;
        tokio::spawn(store.clone().lease_loop());
        tokio::spawn(store.clone().leader_watch());
        tokio::spawn(store.clone().publish_attributes());
        tokio::spawn(store.clone().promoter());
        tokio::spawn(store.clone().auto_compactor());
        info!(member_id = %format_args!("{id:x}"), cluster_id = %format_args!("{cluster_id:x}"), name = %store.config.name, "store member started");
        Ok(store)
    }

    async fn bootstrap(&self) -> Result<()> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Error::Raft(e.to_string()))?;
        if initialized || self.config.initial_cluster_state == ClusterState::Existing {
            return Ok(());
        }
        let token = &self.config.initial_cluster_token;
        let members: BTreeMap<NodeId, MemberInfo> = self
            .config
            .initial_cluster
            .iter()
            .map(|(name, url)| {
                (
                    crate::config::member_id(url, token),
                    MemberInfo {
                        name: name.clone(),
                        peer_urls: vec![url.clone()],
                        client_urls: Vec::new(),
                        promote: false,
                    },
                )
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another member initialized first: the cluster exists, fine.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// The response header etcd attaches to every reply.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.raft.metrics().borrow().current_term,
        }
    }

    /// A header function for the watch hub.
    pub fn header_fn(self: &Arc<Self>) -> HeaderFn {
        let me = self.clone();
        Arc::new(move |rev| me.header(rev))
    }

    fn request_timeout(&self) -> Duration {
        // etcd: 5 s plus two election timeouts.
        Duration::from_secs(5) + self.config.election_timeout * 2
    }

    /// The current leader and its member info, if known.
    pub fn leader(&self) -> Option<(NodeId, MemberInfo)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The leader's id, and its member info when it is another member (cloning
    /// the membership is skipped on the hot path where this member leads).
    async fn wait_for_leader(&self, deadline: Instant) -> Result<(NodeId, MemberInfo)> {
        let mut rx = self.raft.metrics();
        loop {
            if rx.borrow().current_leader == Some(self.id) {
                return Ok((self.id, MemberInfo::default()));
            }
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EtcdError::NoLeader.into());
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), rx.changed()).await;
        }
    }

    /// Proposes a write and waits for it to be applied (here or on the leader).
    pub async fn write(&self, req: Request) -> Result<Applied> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            if leader == self.id {
                let left = deadline.saturating_duration_since(Instant::now());
                // A proposal whose leader stepped down may be committed by the next
                // leader or never: past the deadline its outcome is unknown, which
                // etcd reports as a timeout too.
                let proposed = tokio::time::timeout(left, self.proposer.propose(req.clone()))
                    .await
                    .map_err(|_| EtcdError::Timeout)?;
                match proposed {
                    Ok(applied) => return Ok(applied),
                    // Not proposed, or truncated before commit: safe to retry.
                    Err(ProposeError::NotLeader) => {}
                    Err(ProposeError::Fatal(e)) => {
                        warn!(error = %e, "raft stopped");
                        return Err(EtcdError::Stopped.into());
                    }
                }
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                match self
                    .peers
                    .forward(leader, &node, &Forward::Write(req.clone()), left)
                    .await
                {
                    Ok(ForwardReply::Written(a)) => return Ok(a),
                    Ok(ForwardReply::Failed(e)) => return Err(e.into()),
                    Ok(ForwardReply::NotLeader) => {}
                    Ok(other) => {
                        return Err(Error::Raft(format!("unexpected forward reply {other:?}")))
                    }
                    // The leader may or may not have applied it: etcd answers "timed out" here.
                    Err(e) => {
                        warn!(error = %e, "forwarding a write failed");
                        return Err(EtcdError::Timeout.into());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::Timeout.into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a linearizable read may be served from local state.
    pub async fn read_barrier(&self) -> Result<()> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            let index = if leader == self.id {
                match self.raft.get_read_log_id().await {
                    Ok((read, _)) => Some(read.map(|l| l.index).unwrap_or(0)),
                    Err(RaftError::APIError(_)) => None,
                    Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped.into()),
                }
            } else {
                let left = deadline.saturating_duration_since(Instant::now());
                match self
                    .peers
                    .forward(leader, &node, &Forward::ReadIndex, left)
                    .await
                {
                    Ok(ForwardReply::ReadIndex(i)) => Some(i),
                    Ok(_) => None,
                    Err(e) => {
                        warn!(error = %e, "read index from leader failed");
                        None
                    }
                }
            };
            if let Some(index) = index {
                let left = deadline.saturating_duration_since(Instant::now());
                return match self
                    .raft
                    .wait(Some(left))
                    .applied_index_at_least(Some(index), "read index")
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(_) => Err(EtcdError::Timeout.into()),
                };
            }
            if Instant::now() >= deadline {
                return Err(EtcdError::Timeout.into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Serves a request forwarded by another member.
    pub async fn serve_forward(&self, req: Forward) -> ForwardReply {
        if let Forward::Members = req {
            return ForwardReply::View(self.view());
        }
        if let Forward::Removed { id } = req {
            if id == self.id {
                self.mark_removed();
            }
            return ForwardReply::View(self.view());
        }
        if !self.is_leader() {
            return ForwardReply::NotLeader;
        }
        match req {
            Forward::Members | Forward::Removed { .. } => ForwardReply::View(self.view()),
            Forward::Member(change) => match self.local_member_change(change).await {
                Ok(id) => ForwardReply::Members {
                    id,
                    view: self.view(),
                },
                Err(Error::Etcd(e)) => ForwardReply::Failed(e),
                Err(e) => {
                    warn!(error = %e, "membership change failed");
                    ForwardReply::Failed(EtcdError::Timeout)
                }
            },
            Forward::Write(r) => match self.proposer.propose(r).await {
                Ok(applied) => ForwardReply::Written(applied),
                Err(ProposeError::NotLeader) => ForwardReply::NotLeader,
                Err(ProposeError::Fatal(_)) => ForwardReply::Failed(EtcdError::Stopped),
            },
            Forward::ReadIndex => match self.raft.get_read_log_id().await {
                Ok((read, _)) => ForwardReply::ReadIndex(read.map(|l| l.index).unwrap_or(0)),
                Err(_) => ForwardReply::NotLeader,
            },
            Forward::LeaseKeepAlive { id } => ForwardReply::Ttl(self.local_keep_alive(id)),
            Forward::LeaseTimeToLive { id } => ForwardReply::Ttl(self.local_ttl(id)),
        }
    }

    fn local_keep_alive(&self, id: i64) -> i64 {
        match self.mvcc.lease(id) {
            Some((ttl, _)) => {
                self.lessor.renew(id, ttl, Instant::now());
                ttl
            }
            None => 0,
        }
    }

    fn local_ttl(&self, id: i64) -> i64 {
        match self.mvcc.lease(id) {
            None => -1,
            Some((ttl, _)) => self.lessor.remaining(id, Instant::now()).unwrap_or(ttl),
        }
    }

    async fn on_leader(&self, req: Forward, local: impl Fn(&Self) -> i64) -> Result<i64> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            if leader == self.id {
                return Ok(local(self));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.peers.forward(leader, &node, &req, left).await {
                Ok(ForwardReply::Ttl(t)) => return Ok(t),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Err(EtcdError::Timeout.into()),
            }
        }
    }

    /// Renews a lease on the leader; the granted TTL, or 0 if it is gone.
    pub async fn keep_alive(&self, id: i64) -> Result<i64> {
        self.on_leader(Forward::LeaseKeepAlive { id }, |s| s.local_keep_alive(id))
            .await
    }

    /// Remaining TTL from the leader; -1 if the lease does not exist.
    pub async fn time_to_live(&self, id: i64) -> Result<i64> {
        self.on_leader(Forward::LeaseTimeToLive { id }, |s| s.local_ttl(id))
            .await
    }

    /// The smallest TTL a lease may have: 1.5 election timeouts, rounded up (etcd's rule).
    pub fn min_lease_ttl(&self) -> i64 {
        let ms = self.config.election_timeout.as_millis() as i64 * 3 / 2;
        (ms + 999) / 1000
    }

    /// Renews a lease's deadline right after a grant on the leader.
    pub(crate) fn lease_granted(&self, id: i64, ttl: i64) {
        if self.is_leader() {
            self.lessor.renew(id, ttl, Instant::now());
        }
    }

    async fn lease_loop(self: Arc<Self>) {
        let mut was_leader = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            self.db_size.store(self.db.size_bytes(), Ordering::Relaxed);
            let leader = self.is_leader();
            if leader != was_leader {
                if leader {
                    self.lessor.promote(
                        &self.mvcc.leases(),
                        Instant::now(),
                        self.config.election_timeout,
                    );
                } else {
                    self.lessor.reset();
                }
                was_leader = leader;
            }
            if !leader {
                continue;
            }
            let expired = self.lessor.sync(&self.mvcc.leases(), Instant::now());
            if expired.is_empty() {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.write(Request::LeaseExpire { ids: expired }).await {
                    warn!(error = %e, "proposing lease expiry failed; will retry");
                }
            });
        }
    }

    async fn leader_watch(self: Arc<Self>) {
        let mut rx = self.raft.metrics();
        let mut last = rx.borrow().current_leader;
        while rx.changed().await.is_ok() {
            let now = rx.borrow().current_leader;
            if now != last {
                if last == Some(self.id) {
                    // Deadlines of a former leader are stale at once: keep-alives
                    // go elsewhere from now on.
                    self.lessor.reset();
                }
                if now.is_some() {
                    self.leader_changes.fetch_add(1, Ordering::Relaxed);
                }
                info!(leader = ?now.map(|l| format!("{l:x}")), "leader changed");
                last = now;
            }
        }
    }

    /// Publishes this member's name and client URLs through the log once a
    /// leader exists (etcd's member attributes).
    async fn publish_attributes(self: Arc<Self>) {
        loop {
            let (_, _, members, _) = self.mvcc.raft_view();
            let mine = members.get(&self.id);
            if mine.is_some_and(|m| {
                m.name == self.config.name && m.client_urls == self.config.advertise_client_urls
            }) {
                return;
            }
            let req = Request::MemberAttr {
                id: self.id,
                name: self.config.name.clone(),
                client_urls: self.config.advertise_client_urls.clone(),
            };
            match self.write(req).await {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, "publishing member attributes failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// This member's view of the cluster, as MemberList answers it.
    pub fn view(&self) -> ClusterView {
        ClusterView {
            cluster_id: self.cluster_id,
            members: self
                .members()
                .into_iter()
                .map(|(id, info, learner)| MemberEntry { id, info, learner })
                .collect(),
        }
    }

    /// Turns true once this member has been removed from the cluster; the
    /// process should then stop, as etcd's does.
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }

    fn mark_removed(&self) {
        if *self.removed.borrow() {
            return;
        }
        warn!("this member has been removed from the cluster");
        let mut b = rocksdb::WriteBatch::default();
        if let Ok(cf) = self.db.cf(crate::db::cf::META) {
            b.put_cf(cf, META_REMOVED, b"1");
            if let Err(e) = self.db.write_sync(b) {
                warn!(error = %e, "recording the removal failed");
            }
        }
        self.removed.send_replace(true);
    }

    /// Applies a Cluster API change on the leader (forwarded from a follower);
    /// returns the id of the member concerned and the members after the change.
    pub async fn change_members(&self, change: MemberChange) -> Result<(NodeId, ClusterView)> {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let (leader, node) = self.wait_for_leader(deadline).await?;
            if leader == self.id {
                let id = self.local_member_change(change.clone()).await?;
                return Ok((id, self.view()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let req = Forward::Member(change.clone());
            match self.peers.forward(leader, &node, &req, left).await {
                Ok(ForwardReply::Members { id, view }) => return Ok((id, view)),
                Ok(ForwardReply::Failed(e)) => return Err(e.into()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => return Err(EtcdError::Timeout.into()),
            }
        }
    }

    /// The effective Raft membership and its voters.
    fn membership(&self) -> (openraft::Membership<NodeId, MemberInfo>, BTreeSet<NodeId>) {
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters = membership.voter_ids().collect();
        (membership, voters)
    }

    async fn local_member_change(&self, change: MemberChange) -> Result<NodeId> {
        let (membership, voters) = self.membership();
        let url_taken = |urls: &[String], except: NodeId| {
            membership
                .nodes()
                .any(|(id, n)| *id != except && n.peer_urls.iter().any(|u| urls.contains(u)))
        };
        let (id, changes) = match change {
            MemberChange::Add { peer_urls, learner } => {
                check_peer_urls(&peer_urls)?;
                if url_taken(&peer_urls, 0) {
                    return Err(EtcdError::PeerUrlExist.into());
                }
                let id = new_member_id(&peer_urls, &self.config.initial_cluster_token);
                let node = MemberInfo {
                    peer_urls,
                    promote: !learner,
                    ..Default::default()
                };
                info!(member = %format_args!("{id:x}"), %node, learner, "adding member");
                (id, ChangeMembers::AddNodes(BTreeMap::from([(id, node)])))
            }
            MemberChange::Remove { id } => {
                if membership.get_node(&id).is_none() {
                    return Err(EtcdError::MemberNotFound.into());
                }
                info!(member = %format_args!("{id:x}"), "removing member");
                if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err(EtcdError::NotEnoughStartedMembers.into());
                    }
                    (id, ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                } else {
                    (id, ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                }
            }
            MemberChange::Update { id, peer_urls } => {
                check_peer_urls(&peer_urls)?;
                let Some(node) = membership.get_node(&id) else {
                    return Err(EtcdError::MemberNotFound.into());
                };
                if url_taken(&peer_urls, id) {
                    return Err(EtcdError::PeerUrlExist.into());
                }
                let node = MemberInfo {
                    peer_urls,
                    ..node.clone()
                };
                (id, ChangeMembers::SetNodes(BTreeMap::from([(id, node)])))
            }
            MemberChange::Promote { id } => {
                if membership.get_node(&id).is_none() {
                    return Err(EtcdError::MemberNotFound.into());
                }
                if voters.contains(&id) {
                    return Err(EtcdError::MemberNotLearner.into());
                }
                if !self.learner_ready(id) {
                    return Err(EtcdError::LearnerNotReady.into());
                }
                (id, ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            }
        };
        let removing = matches!(
            changes,
            ChangeMembers::RemoveVoters(_) | ChangeMembers::RemoveNodes(_)
        );
        let log_id = self.propose_membership(changes).await?;
        // The member list is read from the metrics, which trail the commit.
        let _ = self
            .raft
            .wait(Some(Duration::from_secs(2)))
            .metrics(
                |m| m.membership_config.log_id().is_some_and(|l| l >= log_id),
                "membership applied",
            )
            .await;
        if removing {
            self.peers.forget(id);
            if id == self.id {
                self.mark_removed();
            } else if let Some(node) = membership.get_node(&id) {
                // Best effort: a member that is down learns it when it restarts
                // and finds no leader that knows it.
                let _ = self
                    .peers
                    .forward(id, node, &Forward::Removed { id }, Duration::from_secs(1))
                    .await;
                self.peers.forget(id);
            }
        }
        Ok(id)
    }

    async fn propose_membership(
        &self,
        changes: ChangeMembers<NodeId, MemberInfo>,
    ) -> Result<crate::types::LogId> {
        let r = tokio::time::timeout(
            self.request_timeout(),
            self.raft.change_membership(changes, false),
        )
        .await
        .map_err(|_| EtcdError::Timeout)?;
        match r {
            Ok(resp) => Ok(resp.log_id),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(EtcdError::NoLeader.into())
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => match e {
                ChangeMembershipError::LearnerNotFound(_) => Err(EtcdError::MemberNotFound.into()),
                ChangeMembershipError::EmptyMembership(_) => {
                    Err(EtcdError::NotEnoughStartedMembers.into())
                }
                // Another change is still being committed: etcd answers the same
                // way when a conf change cannot be applied in time.
                ChangeMembershipError::InProgress(_) => Err(EtcdError::Timeout.into()),
            },
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped.into()),
        }
    }

    /// Whether a learner's replicated log reaches 90% of the leader's.
    fn learner_ready(&self, id: NodeId) -> bool {
        let m = self.raft.metrics().borrow().clone();
        let leader_index = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index);
        matched.is_some_and(|i| i as f64 >= leader_index as f64 * LEARNER_READY_RATIO)
    }

    /// On the leader: promotes members added as voters once they have caught up.
    async fn promoter(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tick.tick().await;
            if *self.removed.borrow() {
                return;
            }
            if !self.is_leader() {
                continue;
            }
            let (membership, voters) = self.membership();
            let ready: BTreeSet<NodeId> = membership
                .nodes()
                .filter(|(id, n)| n.promote && !voters.contains(id) && self.learner_ready(**id))
                .map(|(id, _)| *id)
                .collect();
            if ready.is_empty() {
                continue;
            }
            info!(members = ?ready, "promoting caught-up members to voters");
            if let Err(e) = self
                .propose_membership(ChangeMembers::AddVoterIds(ready))
                .await
            {
                warn!(error = %e, "promoting members failed; will retry");
            }
        }
    }

    /// `--auto-compaction-*`: samples the revision on every member, and on the
    /// leader proposes compactions (etcd's compactor runs on the leader).
    async fn auto_compactor(self: Arc<Self>) {
        let Some(policy) = self.config.auto_compaction else {
            return;
        };
        let mut compactor = Compactor::new(policy);
        let mut tick = tokio::time::interval(policy.interval());
        loop {
            tick.tick().await;
            if *self.removed.borrow() {
                return;
            }
            let (rev, compacted) = {
                let st = self.mvcc.state.read();
                (st.revision, st.compact_revision)
            };
            let Some(target) = compactor.tick(Instant::now(), rev, compacted) else {
                continue;
            };
            if !self.is_leader() {
                continue;
            }
            info!(revision = target, ?policy, "auto-compaction");
            let req = Request::Compact(crate::types::Pb(
                crate::pb::etcdserverpb::CompactionRequest {
                    revision: target,
                    physical: false,
                },
            ));
            if let Err(e) = self.write(req).await {
                warn!(error = %e, revision = target, "auto-compaction failed");
            }
        }
    }

    /// Members with their names and URLs, and whether each is a learner.
    pub fn members(&self) -> Vec<(NodeId, MemberInfo, bool)> {
        let m = self.raft.metrics().borrow().clone();
        let (_, _, attrs, _) = self.mvcc.raft_view();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| {
                let mut info = node.clone();
                if let Some(a) = attrs.get(id) {
                    if !a.name.is_empty() {
                        info.name = a.name.clone();
                    }
                    info.client_urls = a.client_urls.clone();
                }
                (*id, info, !voters.contains(id))
            })
            .collect()
    }

    /// Values for `/metrics` and Status.
    pub fn gauges(&self) -> Gauges {
        let m = self.raft.metrics().borrow().clone();
        let st = self.mvcc.state.read();
        Gauges {
            has_leader: m.current_leader.is_some(),
            is_leader: m.current_leader == Some(self.id),
            leader_changes: self.leader_changes.load(Ordering::Relaxed),
            db_size: self.db.size_bytes(),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            term: m.current_term,
            revision: st.revision,
            compact_revision: st.compact_revision,
            keys: st.index.len() as u64,
        }
    }

    /// Active alarms as (member, etcd `AlarmType`).
    pub fn alarms(&self) -> Vec<(NodeId, i32)> {
        self.mvcc.state.read().alarms.iter().copied().collect()
    }

    /// etcd's quota check for requests that grow the database: refused while a
    /// NOSPACE alarm is active; a member over `--quota-backend-bytes` raises it.
    pub fn check_quota(self: &Arc<Self>) -> Result<(), EtcdError> {
        if self
            .mvcc
            .state
            .read()
            .alarms
            .iter()
            .any(|&(_, a)| a == ALARM_NOSPACE)
        {
            return Err(EtcdError::NoSpace);
        }
        let quota = match self.config.quota_backend_bytes {
            0 => DEFAULT_QUOTA_BYTES,
            q => q,
        };
        // The cached size may predate a compaction and defrag: look again.
        if self.db_size() <= quota || self.refresh_db_size() <= quota {
            return Ok(());
        }
        if !self.raising_nospace.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            tokio::spawn(async move {
                warn!(
                    db_size = me.db_size(),
                    quota, "database space exceeded: raising the NOSPACE alarm"
                );
                let req = Request::Alarm {
                    activate: true,
                    member: me.id,
                    alarm: ALARM_NOSPACE,
                };
                if let Err(e) = me.write(req).await {
                    warn!(error = %e, "raising the NOSPACE alarm failed");
                }
                me.raising_nospace.store(false, Ordering::Release);
            });
        }
        Err(EtcdError::NoSpace)
    }

    fn refresh_db_size(&self) -> u64 {
        let size = self.db.size_bytes();
        self.db_size.store(size, Ordering::Relaxed);
        size
    }

    /// Database size in bytes as of the last tick (at most 250 ms old).
    pub fn db_size(&self) -> u64 {
        self.db_size.load(Ordering::Relaxed)
    }

    /// Last log index (for Status).
    pub fn last_log_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = ?e, "raft shutdown");
        }
        let _ = self.db.sync_wal();
    }
}

/// Checks MemberAdd/MemberUpdate peer URLs: at least one, each `http(s)://host:port`.
fn check_peer_urls(urls: &[String]) -> Result<()> {
    let ok = !urls.is_empty()
        && urls.iter().all(|u| {
            url::Url::parse(u).is_ok_and(|p| {
                matches!(p.scheme(), "http" | "https")
                    && p.host_str().is_some()
                    && p.port().is_some()
            })
        });
    if ok {
        Ok(())
    } else {
        Err(EtcdError::MemberBadUrls.into())
    }
}

/// A new member's id: like etcd, from its URLs, the cluster token and the
/// time, so a member removed and added again gets a new id.
fn new_member_id(peer_urls: &[String], token: &str) -> NodeId {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .to_string();
    let mut parts: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    parts.push(token);
    parts.push(&now);
    crate::config::fnv64(&parts).max(1)
}

/// A member started with `--initial-cluster-state existing` on an empty data
/// dir asks the other members of `--initial-cluster` for the cluster, finds
/// itself by peer URL (MemberAdd put it there) and learns its id and the
/// cluster id. etcd's checks apply: the member must have been added, its name
/// must be free, and `--initial-cluster` must list the cluster's peer URLs.
async fn discover(config: &StoreConfig, peers: &Peers) -> Result<(NodeId, u64)> {
    let me = config.own_peer_url();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut errors = Vec::new();
        for (name, url) in &config.initial_cluster {
            if *url == me {
                continue;
            }
            let view = match peers.view_at(url, Duration::from_secs(2)).await {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{name} ({url}): {e}"));
                    continue;
                }
            };
            let Some(mine) = view.members.iter().find(|m| m.info.peer_urls.contains(&me)) else {
                return Err(Error::Config(format!(
                    "the cluster at {url} has no member with peer URL {me}; add it first \
                     (`etcdctl member add {} --peer-urls={me}`)",
                    config.name
                )));
            };
            if let Some(other) = view
                .members
                .iter()
                .find(|m| m.id != mine.id && m.info.name == config.name)
            {
                return Err(Error::Config(format!(
                    "member name {:?} is already used by member {:x} of the cluster",
                    config.name, other.id
                )));
            }
            let theirs: BTreeSet<&String> = view
                .members
                .iter()
                .flat_map(|m| &m.info.peer_urls)
                .collect();
            let ours: BTreeSet<&String> = config.initial_cluster.iter().map(|(_, u)| u).collect();
            if theirs != ours {
                return Err(Error::Config(format!(
                    "--initial-cluster peer URLs {ours:?} do not match the cluster's {theirs:?}"
                )));
            }
            info!(member_id = %format_args!("{:x}", mine.id), cluster_id = %format_args!("{:x}", view.cluster_id), "joining existing cluster");
            return Ok((mine.id, view.cluster_id));
        }
        if Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "cannot join the cluster: no other member of --initial-cluster answered ({})",
                errors.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What `capstan snapshot restore` did.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The new member's id.
    pub member_id: NodeId,
    /// The new cluster's id.
    pub cluster_id: u64,
    /// Store revision of the snapshot.
    pub revision: i64,
}

/// `capstan snapshot restore`: builds a new member's data dir from a snapshot
/// file. The keys, their history since the last compaction, the revision and
/// the leases come from the file; the members and the cluster id come from the
/// configuration, as with `etcdctl snapshot restore`. Start the member with the
/// same flags and `--initial-cluster-state new` afterwards.
pub fn restore(path: &std::path::Path, config: StoreConfig) -> Result<Restored> {
    let config = config.validate()?;
    crate::snapshot::verify(path)?;
    if config.data_dir.exists()
        && std::fs::read_dir(&config.data_dir).map(|mut d| d.next().is_some())?
    {
        return Err(Error::Config(format!(
            "data-dir {:?} exists and is not empty; restore into a new directory",
            config.data_dir
        )));
    }
    let (member_id, cluster_id) = (config.member_id(), config.cluster_id());
    let build = || -> Result<i64> {
        let db = Db::open(&config.data_dir)?;
        let header = crate::snapshot::load(&db, path, crate::snapshot::Load::Restore)?;
        write_identity(&db, cluster_id, member_id)?;
        Ok(header.revision)
    };
    match build() {
        Ok(revision) => Ok(Restored {
            member_id,
            cluster_id,
            revision,
        }),
        Err(e) => {
            // Leave nothing half-built behind.
            let _ = std::fs::remove_dir_all(&config.data_dir);
            Err(e)
        }
    }
}

/// The decision part of the auto-compactor: which revision to compact to now.
#[derive(Debug)]
pub struct Compactor {
    policy: crate::config::AutoCompaction,
    /// (when, revision) samples, oldest first; only periodic mode keeps them.
    samples: std::collections::VecDeque<(Instant, i64)>,
}

impl Compactor {
    /// A compactor with no history.
    pub fn new(policy: crate::config::AutoCompaction) -> Self {
        Compactor {
            policy,
            samples: Default::default(),
        }
    }

    /// Records the current revision; returns the revision to compact to, if any.
    pub fn tick(&mut self, now: Instant, revision: i64, compacted: i64) -> Option<i64> {
        use crate::config::AutoCompaction::*;
        let target = match self.policy {
            Periodic(retention) => {
                self.samples.push_back((now, revision));
                // Keep the newest sample that is at least a retention old.
                while self.samples.len() >= 2 && now.duration_since(self.samples[1].0) >= retention
                {
                    self.samples.pop_front();
                }
                let &(at, rev) = self.samples.front()?;
                (now.duration_since(at) >= retention).then_some(rev)?
            }
            Revision(keep) => revision - keep,
        };
        (target > compacted && target > 0).then_some(target)
    }
}

/// A data dir copied from another member (or another cluster) would make this
/// process impersonate that member: refuse to start when the member the data
/// dir belongs to has other peer URLs than this one is configured with.
fn check_data_dir_is_ours(config: &StoreConfig, id: NodeId, mvcc: &Mvcc) -> Result<()> {
    let st = mvcc.state.read();
    let membership = st.membership.membership();
    if membership.nodes().next().is_none() {
        return Ok(());
    }
    let mine = config.own_peer_url();
    match membership.get_node(&id) {
        Some(node) if node.peer_urls.contains(&mine) => Ok(()),
        Some(node) => Err(Error::Config(format!(
            "data dir {} belongs to member {id:x} with peer URLs {:?}, but this member \
             advertises {mine}; use the data dir of this member, or update its URLs with \
             `etcdctl member update` first",
            config.data_dir.display(),
            node.peer_urls
        ))),
        // Not (yet, or no longer) a member: a learner being added, or a removed one
        // (refused earlier by its removal mark).
        None => Ok(()),
    }
}

#[cfg(test)]
mod compactor_tests {
    use super::*;
    use crate::config::AutoCompaction;

    #[test]
    fn periodic_compacts_to_the_revision_one_retention_ago() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut c = Compactor::new(AutoCompaction::Periodic(Duration::from_secs(10)));
        // Nothing before a whole retention has passed.
        for i in 0..10 {
            assert_eq!(c.tick(s(i), 100 + i as i64, 0), None, "at {i}s");
        }
        // Then every tick compacts to what was current 10 s earlier.
        assert_eq!(c.tick(s(10), 110, 0), Some(100));
        assert_eq!(c.tick(s(11), 111, 100), Some(101));
        // Nothing new to compact: revision did not move a retention ago.
        let mut idle = Compactor::new(AutoCompaction::Periodic(Duration::from_secs(10)));
        for i in 0..30 {
            let got = idle.tick(s(i), 50, 50);
            assert_eq!(got, None, "at {i}s");
        }
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        let now = Instant::now();
        let mut c = Compactor::new(AutoCompaction::Revision(100));
        assert_eq!(c.tick(now, 50, 0), None);
        assert_eq!(c.tick(now, 150, 0), Some(50));
        assert_eq!(c.tick(now, 150, 50), None);
        assert_eq!(c.tick(now, 1000, 50), Some(900));
    }
}
