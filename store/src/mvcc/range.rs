//! Range requests: resolving a key range at a revision through the index, then
//! etcd's filtering, sorting and limiting rules.

use std::ops::Bound;

use bytes::Bytes;

use super::index::Hit;
use super::State;
use crate::error::{EtcdError, Result};
use crate::pb::etcdserverpb::{self as rpc, range_request::SortOrder, range_request::SortTarget};
use crate::pb::mvccpb::KeyValue;

/// Start and end bounds over byte keys.
pub type ByteBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A key range as etcd encodes it: `end` empty = the single key, `end == "\0"` =
/// every key from `key` on, otherwise `[key, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// Start key.
    pub key: Bytes,
    /// End (exclusive) as etcd encodes it.
    pub end: Bytes,
}

impl KeyRange {
    /// Creates a range.
    pub fn new(key: Bytes, end: Bytes) -> Self {
        KeyRange { key, end }
    }

    /// Whether `k` falls in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            return k == self.key.as_ref();
        }
        if k < self.key.as_ref() {
            return false;
        }
        self.end.as_ref() == [0] || k < self.end.as_ref()
    }

    /// Bounds for a `BTreeMap` scan; `None` for an empty (inverted) range.
    pub fn bounds(&self) -> Option<ByteBounds<'_>> {
        let start = Bound::Included(self.key.as_ref());
        if self.end.is_empty() {
            return Some((start, Bound::Included(self.key.as_ref())));
        }
        if self.end.as_ref() == [0] {
            return Some((start, Bound::Unbounded));
        }
        if self.key.as_ref() >= self.end.as_ref() {
            return None;
        }
        Some((start, Bound::Excluded(self.end.as_ref())))
    }
}

/// Keys found live at `at` within `range`, in key order.
pub(crate) fn scan(st: &State, range: &KeyRange, at: i64) -> Vec<(Bytes, Hit)> {
    let Some(bounds) = range.bounds() else {
        return Vec::new();
    };
    st.index
        .range::<[u8], _>(bounds)
        .filter_map(|(k, ki)| ki.get(at).map(|h| (k.clone(), h)))
        .collect()
}

/// The part of a Range decided under the state lock.
#[derive(Debug)]
pub(crate) struct Plan {
    pub hits: Vec<(Bytes, Hit)>,
    pub count: i64,
    pub revision: i64,
    pub more: bool,
}

fn sort_order(req: &rpc::RangeRequest) -> SortOrder {
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    if target != SortTarget::Key && order == SortOrder::None {
        SortOrder::Ascend
    } else {
        order
    }
}

fn needs_values_to_sort(req: &rpc::RangeRequest) -> bool {
    sort_order(req) != SortOrder::None
        && SortTarget::try_from(req.sort_target) == Ok(SortTarget::Value)
}

/// Validates the request and resolves its keys to revisions.
/// `current` is the revision reads see as the latest (inside a txn that has
/// already written, the txn's own revision).
pub(crate) fn plan(st: &State, req: &rpc::RangeRequest, current: i64) -> Result<Plan> {
    if req.key.is_empty() {
        return Err(EtcdError::EmptyKey.into());
    }
    if req.revision > current {
        return Err(EtcdError::FutureRev.into());
    }
    if req.revision > 0 && req.revision < st.compact_revision {
        return Err(EtcdError::Compacted.into());
    }
    let at = if req.revision <= 0 {
        current
    } else {
        req.revision
    };
    let range = KeyRange::new(req.key.clone(), req.range_end.clone());
    let mut hits = scan(st, &range, at);
    let count = hits.len() as i64;
    hits.retain(|(_, h)| {
        (req.min_mod_revision == 0 || h.rev.main >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || h.rev.main <= req.max_mod_revision)
            && (req.min_create_revision == 0 || h.created >= req.min_create_revision)
            && (req.max_create_revision == 0 || h.created <= req.max_create_revision)
    });
    let mut more = false;
    if req.count_only {
        hits.clear();
    } else if !needs_values_to_sort(req) {
        sort_hits(req, &mut hits);
        if req.limit > 0 && hits.len() as i64 > req.limit {
            hits.truncate(req.limit as usize);
            more = true;
        }
    }
    Ok(Plan {
        hits,
        count,
        revision: current,
        more,
    })
}

fn sort_hits(req: &rpc::RangeRequest, hits: &mut [(Bytes, Hit)]) {
    let order = sort_order(req);
    if order == SortOrder::None {
        return;
    }
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    match target {
        SortTarget::Key => {}
        SortTarget::Version => hits.sort_by_key(|(_, h)| h.version),
        SortTarget::Create => hits.sort_by_key(|(_, h)| h.created),
        SortTarget::Mod => hits.sort_by_key(|(_, h)| h.rev),
        SortTarget::Value => {}
    }
    if order == SortOrder::Descend {
        hits.reverse();
    }
}

/// Builds the response from the plan and the fetched records.
pub(crate) fn finish(
    req: &rpc::RangeRequest,
    plan: Plan,
    mut kvs: Vec<KeyValue>,
) -> rpc::RangeResponse {
    let mut more = plan.more;
    if needs_values_to_sort(req) {
        kvs.sort_by(|a, b| a.value.cmp(&b.value));
        if sort_order(req) == SortOrder::Descend {
            kvs.reverse();
        }
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    rpc::RangeResponse {
        header: Some(rpc::ResponseHeader {
            revision: plan.revision,
            ..Default::default()
        }),
        kvs,
        more,
        count: plan.count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges() {
        let b = |s: &'static [u8]| Bytes::from_static(s);
        type Case = (&'static [u8], &'static [u8], &'static [u8], bool);
        let cases: &[Case] = &[
            (b"a", b"", b"a", true),
            (b"a", b"", b"ab", false),
            (b"a", b"c", b"b", true),
            (b"a", b"c", b"c", false),
            (b"a", b"\0", b"zzz", true),
            (b"b", b"\0", b"a", false),
            (b"c", b"a", b"b", false),
        ];
        for (k, e, probe, want) in cases {
            let r = KeyRange::new(b(k), b(e));
            assert_eq!(r.contains(probe), *want, "{k:?}..{e:?} contains {probe:?}");
        }
        assert!(KeyRange::new(b(b"c"), b(b"a")).bounds().is_none());
    }
}
