//! Member-to-member transport: openraft's RPCs and request forwarding over gRPC.
//!
//! Each RPC carries one bincode-encoded openraft message inside a protobuf
//! `PeerMessage`. The same channel forwards the client requests that only the
//! leader may serve (writes, read index, lease keep-alive and TTL).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, EtcdError, Result};
use crate::pb::capstanpb::peer_client::PeerClient;
use crate::pb::capstanpb::PeerMessage;
use crate::types::{decode, encode, Applied, MemberInfo, NodeId, Request, TypeConfig};

/// Largest peer message (snapshot chunks and entry batches).
pub const MAX_PEER_MESSAGE: usize = 256 * 1024 * 1024;

/// A request a follower forwards to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forward {
    /// Propose a write.
    Write(Request),
    /// Confirm leadership and return the log index reads must wait for.
    ReadIndex,
    /// Renew a lease.
    LeaseKeepAlive {
        /// Lease id.
        id: i64,
    },
    /// Remaining TTL of a lease.
    LeaseTimeToLive {
        /// Lease id.
        id: i64,
    },
    /// A membership change, which only the leader may propose.
    Member(MemberChange),
    /// The cluster id and member list as this member sees them; any member
    /// answers (a joining member asks before it knows its own id).
    Members,
    /// Sent by the leader to a member once its removal is committed: a removed
    /// member gets no more log entries, so it would never learn it otherwise.
    Removed {
        /// The removed member.
        id: NodeId,
    },
}

/// A Cluster API change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberChange {
    /// MemberAdd.
    Add {
        /// Peer URLs of the new member.
        peer_urls: Vec<String>,
        /// Added as a learner (never promoted automatically).
        learner: bool,
    },
    /// MemberRemove.
    Remove {
        /// Member id.
        id: NodeId,
    },
    /// MemberUpdate.
    Update {
        /// Member id.
        id: NodeId,
        /// New peer URLs.
        peer_urls: Vec<String>,
    },
    /// MemberPromote.
    Promote {
        /// Member id.
        id: NodeId,
    },
}

/// One member as the Cluster API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// Member id.
    pub id: NodeId,
    /// Name and URLs.
    pub info: MemberInfo,
    /// Whether it is a learner. A member added as a voter is one until it has
    /// caught up and the leader promotes it.
    pub learner: bool,
}

/// A member's view of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// The cluster id.
    pub cluster_id: u64,
    /// Every member.
    pub members: Vec<MemberEntry>,
}

/// The leader's answer to a [`Forward`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    /// The write was applied.
    Written(Applied),
    /// Reads must wait until this index is applied.
    ReadIndex(u64),
    /// Remaining TTL in seconds (-1 = no such lease).
    Ttl(i64),
    /// The receiver is not the leader (any more); retry elsewhere.
    NotLeader,
    /// The request failed with an etcd error.
    Failed(EtcdError),
    /// The answer to a membership change: the new member's id (0 unless
    /// added) and the member list after the change.
    Members {
        /// Id of the member the change was about.
        id: NodeId,
        /// The cluster after the change.
        view: ClusterView,
    },
    /// The answer to [`Forward::Members`].
    View(ClusterView),
}

/// gRPC metadata key carrying the sender's cluster id on every peer request:
/// a member of another cluster (or one started on another cluster's data dir)
/// is refused instead of corrupting this one.
pub const CLUSTER_ID_HEADER: &str = "x-capstan-cluster-id";

type ChannelMap = HashMap<(NodeId, String), PeerClient<Channel>>;

/// gRPC channels to the other members, created lazily and shared.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<ChannelMap>>,
    /// 0 until known (a joining member learns it from its peers).
    cluster_id: Arc<AtomicU64>,
    source_ip: Option<IpAddr>,
    /// For `https://` peer URLs.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Peers {
    /// Peers whose outgoing connections bind `source_ip` when it is set, and
    /// use `tls` for `https://` peer URLs.
    pub fn new(source_ip: Option<IpAddr>, tls: Option<tonic::transport::ClientTlsConfig>) -> Self {
        Peers {
            source_ip,
            tls,
            ..Default::default()
        }
    }

    /// Sets the cluster id sent with every request.
    pub fn set_cluster_id(&self, id: u64) {
        self.cluster_id.store(id, Ordering::Relaxed);
    }

    /// A request carrying `msg` and this member's cluster id.
    fn request<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(timeout);
        let id = self.cluster_id.load(Ordering::Relaxed);
        if id != 0 {
            if let Ok(v) = format!("{id:x}").parse() {
                r.metadata_mut().insert(CLUSTER_ID_HEADER, v);
            }
        }
        r
    }

    /// Drops cached channels to a member (its URL changed or it was removed).
    pub fn forget(&self, id: NodeId) {
        self.channels.lock().retain(|(m, _), _| *m != id);
    }

    /// Asks the member at `url` for its view of the cluster.
    pub async fn view_at(&self, url: &str, timeout: Duration) -> Result<ClusterView> {
        let node = MemberInfo {
            peer_urls: vec![url.to_string()],
            ..Default::default()
        };
        match self.forward(0, &node, &Forward::Members, timeout).await? {
            ForwardReply::View(v) => Ok(v),
            other => Err(Error::Peer {
                target: url.to_string(),
                detail: format!("unexpected reply {other:?}"),
            }),
        }
    }

    /// The client for a member, by its first peer URL.
    pub fn client(&self, id: NodeId, node: &MemberInfo) -> Result<PeerClient<Channel>> {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        let mut map = self.channels.lock();
        if let Some(c) = map.get(&(id, url.clone())) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(url.clone())
            .map_err(|e| Error::Config(format!("peer url {url:?} of member {id:x}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .local_address(self.source_ip)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let ep = match (&self.tls, url.starts_with("https://")) {
            (Some(tls), true) => ep
                .tls_config(tls.clone())
                .map_err(|e| Error::Config(format!("peer TLS for {url}: {e}")))?,
            (None, true) => {
                return Err(Error::Config(format!(
                "peer URL {url} is https but no --peer-trusted-ca-file / --peer-cert-file is set"
            )))
            }
            _ => ep,
        };
        let c = PeerClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        map.insert((id, url), c.clone());
        Ok(c)
    }

    /// Sends a forwarded request to the leader.
    pub async fn forward(
        &self,
        id: NodeId,
        node: &MemberInfo,
        req: &Forward,
        timeout: Duration,
    ) -> Result<ForwardReply> {
        let mut c = self.client(id, node)?;
        let r = self.request(
            PeerMessage {
                data: encode(req).into(),
            },
            timeout,
        );
        let resp = c.forward(r).await.map_err(|s| Error::Peer {
            target: format!("{id:x}"),
            detail: s.message().to_string(),
        })?;
        decode("forward reply", &resp.into_inner().data)
    }
}

/// openraft's network factory.
#[derive(Debug, Clone)]
pub struct Network {
    peers: Peers,
}

impl Network {
    /// A factory over shared channels.
    pub fn new(peers: Peers) -> Self {
        Network { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &MemberInfo) -> Conn {
        Conn {
            target,
            client: self.peers.client(target, node),
            peers: self.peers.clone(),
        }
    }
}

/// A connection to one member.
pub struct Conn {
    target: NodeId,
    client: Result<PeerClient<Channel>>,
    peers: Peers,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, MemberInfo, RaftError<NodeId, E>>;

impl Conn {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: &'static str,
        req: &Req,
        opt: &RPCOption,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: for<'de> Deserialize<'de>,
        E: std::error::Error + for<'de> Deserialize<'de>,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e.to_string()),
                )))
            }
        };
        let r = self.peers.request(
            PeerMessage {
                data: encode(req).into(),
            },
            opt.hard_ttl(),
        );
        let resp = match kind {
            "append" => client.append_entries(r).await,
            "vote" => client.vote(r).await,
            _ => client.install_snapshot(r).await,
        };
        let msg = match resp {
            Ok(m) => m.into_inner(),
            Err(s) => {
                let e =
                    std::io::Error::other(format!("{kind} to {:x}: {}", self.target, s.message()));
                return Err(if s.code() == tonic::Code::Unavailable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                });
            }
        };
        let res: Result<Resp, RaftError<NodeId, E>> = bincode::deserialize(&msg.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call("vote", &rpc, &option).await
    }
}
