//! Repair of allocations on start: claims whose Service is gone or no longer holds
//! them are released, and Services holding an address without its claim get the
//! claim back (or a warning when another Service holds it). Kubernetes' repair
//! loops do the same for its bitmaps and IPAddress objects.

use std::collections::HashMap;

use capstan_api::etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use capstan_api::k8s_openapi::api::core::v1::Service;
use capstan_api::{Client, Kind, ObjectRef, Result};

use super::{claim_keys, ip_claim, node_port_prefix, port_claim};

/// What a repair pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Claims released because no Service holds them.
    pub released: Vec<String>,
    /// Claims written back for Services that held an address without one.
    pub restored: Vec<String>,
    /// Addresses two Services hold (the claim's owner keeps it).
    pub conflicts: Vec<String>,
}

/// Runs one repair pass over every Service and claim.
pub async fn repair(client: &Client) -> Result<Report> {
    let services = client.list::<Service>(None).await?;
    let mut wanted: HashMap<String, ObjectRef> = HashMap::new();
    let mut report = Report::default();
    for svc in &services.items {
        let r = ObjectRef::of(svc);
        for key in claim_keys(svc) {
            if let Some(other) = wanted.insert(key.clone(), r.clone()) {
                tracing::warn!(claim = %key, first = %other, second = %r, "two Services hold the same address");
                report.conflicts.push(key);
            }
        }
    }
    let mut kv = client.etcd().kv_client();
    let mut existing: HashMap<String, (ObjectRef, i64)> = HashMap::new();
    for prefix in [Kind::IpAddress.prefix(None), node_port_prefix()] {
        let resp = kv
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await?;
        for item in resp.kvs() {
            let key = String::from_utf8_lossy(item.key()).into_owned();
            existing.insert(key, (owner_of(item.value()), item.mod_revision()));
        }
    }
    for (key, (owner, rev)) in &existing {
        if wanted.get(key) == Some(owner) {
            continue;
        }
        // Conditional on the revision read, so a claim made meanwhile is never lost.
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)])
            .and_then([TxnOp::delete(key.clone(), None)]);
        if kv.txn(txn).await?.succeeded() {
            tracing::info!(claim = %key, %owner, "released leaked allocation");
            report.released.push(key.clone());
        }
    }
    for (key, owner) in &wanted {
        if existing.get(key).is_some_and(|(o, _)| o == owner) {
            continue;
        }
        if existing.contains_key(key) {
            // Held by another Service's claim: released above if that one is gone;
            // writing ours now would race with its owner, so the next pass does it.
            continue;
        }
        let claim = match key.strip_prefix(&node_port_prefix()) {
            Some(port) => port.parse().ok().map(|p| port_claim(owner, p)),
            None => key
                .rsplit('/')
                .next()
                .and_then(|ip| ip.parse().ok())
                .map(|ip| ip_claim(owner, &ip)),
        };
        let Some(claim) = claim else { continue };
        let txn = Txn::new()
            .when([Compare::version(claim.key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(claim.key.clone(), claim.value, None)]);
        if kv.txn(txn).await?.succeeded() {
            tracing::info!(claim = %key, %owner, "restored missing allocation record");
            report.restored.push(key.clone());
        }
    }
    report.released.sort();
    report.restored.sort();
    Ok(report)
}

/// The Service a claim names (an IPAddress's parentRef or a node port record).
fn owner_of(value: &[u8]) -> ObjectRef {
    let v: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
    let parent = if v["spec"]["parentRef"].is_object() {
        &v["spec"]["parentRef"]
    } else {
        &v
    };
    ObjectRef::namespaced(
        Kind::Service,
        parent["namespace"].as_str().unwrap_or_default(),
        parent["name"].as_str().unwrap_or_default(),
    )
}
