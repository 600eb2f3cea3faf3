//! Member-to-member transport: openraft's RPCs and request forwarding over gRPC.
//!
//! Each RPC carries one bincode-encoded openraft message inside a protobuf
//! `PeerMessage`. The same channel forwards the client requests that only the
//! leader may serve (writes, read index, lease keep-alive and TTL).

use std::collections::HashMap;
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
}

type ChannelMap = HashMap<(NodeId, String), PeerClient<Channel>>;

/// gRPC channels to the other members, created lazily and shared.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<ChannelMap>>,
}

impl Peers {
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
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
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
        let mut r = tonic::Request::new(PeerMessage {
            data: encode(req).into(),
        });
        r.set_timeout(timeout);
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
        }
    }
}

/// A connection to one member.
pub struct Conn {
    target: NodeId,
    client: Result<PeerClient<Channel>>,
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
        let mut r = tonic::Request::new(PeerMessage {
            data: encode(req).into(),
        });
        r.set_timeout(opt.hard_ttl());
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
