//! Generated protobuf types: etcd's `etcdserverpb`, `mvccpb`, `authpb` (wire
//! compatible with etcd v3) and capstan's own peer protocol.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's key-value record and watch event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth types (only needed because `etcdserverpb` refers to them).
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's v3 RPC services and messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// capstan's member-to-member transport.
pub mod capstanpb {
    tonic::include_proto!("capstanpb");
}
