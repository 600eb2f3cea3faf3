//! capstan's controllers: ClusterIP and NodePort allocation, the EndpointSlice
//! controller with topology hints, and node lifecycle. Each decision is a pure
//! function over informer caches; the async shell around it reads and writes
//! objects through `capstan-api`'s client.
pub mod alloc;
pub mod endpointslice;
pub mod manager;
pub mod nodes;
pub mod slices;
