//! Lease expiry on the leader.
//!
//! TTL deadlines live only in the leader's memory, as in etcd: keep-alives do
//! not go through Raft. When this member becomes leader every lease gets its
//! full TTL again plus an election timeout (etcd's `Promote`), so no lease
//! expires early because of an election. Expired
//! leases are revoked by proposing `LeaseExpire` through the log, so every
//! member deletes the attached keys at the same revision.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Leader-side lease deadlines.
#[derive(Debug, Default)]
pub struct Lessor {
    deadlines: Mutex<HashMap<i64, Instant>>,
}

impl Lessor {
    /// Forgets every deadline (on gaining or losing leadership).
    pub fn reset(&self) {
        self.deadlines.lock().clear();
    }

    /// On becoming leader: every lease expires `extend` plus its full TTL from
    /// now. Leases this leader already tracks (granted or renewed since it was
    /// elected) keep their deadline.
    pub fn promote(&self, leases: &[(i64, i64)], now: Instant, extend: Duration) {
        let mut d = self.deadlines.lock();
        for &(id, ttl) in leases {
            d.entry(id)
                .or_insert_with(|| now + extend + Duration::from_secs(ttl.max(0) as u64));
        }
    }

    /// Renews a lease to its full TTL.
    pub fn renew(&self, id: i64, ttl: i64, now: Instant) {
        self.deadlines
            .lock()
            .insert(id, now + Duration::from_secs(ttl.max(0) as u64));
    }

    /// Remaining seconds, rounded up; `None` if the lease is not tracked.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<i64> {
        self.deadlines.lock().get(&id).map(|d| {
            let left = d.saturating_duration_since(now);
            left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
        })
    }

    /// Brings the deadlines in line with the leases in the store and returns the
    /// expired ones. Leases seen for the first time start their full TTL now.
    /// Expired leases get a grace second so a slow revoke is not proposed twice
    /// in a row.
    pub fn sync(&self, leases: &[(i64, i64)], now: Instant) -> Vec<i64> {
        let mut d = self.deadlines.lock();
        let live: HashMap<i64, i64> = leases.iter().copied().collect();
        d.retain(|id, _| live.contains_key(id));
        let mut expired = Vec::new();
        for (id, ttl) in live {
            let deadline = *d
                .entry(id)
                .or_insert_with(|| now + Duration::from_secs(ttl.max(0) as u64));
            if deadline <= now {
                expired.push(id);
                d.insert(id, now + Duration::from_secs(1));
            }
        }
        expired.sort_unstable();
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_renewal() {
        let l = Lessor::default();
        let t0 = Instant::now();
        assert!(l.sync(&[(1, 5), (2, 10)], t0).is_empty());
        assert_eq!(l.remaining(1, t0), Some(5));
        assert_eq!(
            l.sync(&[(1, 5), (2, 10)], t0 + Duration::from_secs(6)),
            vec![1]
        );
        l.renew(2, 10, t0 + Duration::from_secs(6));
        assert!(l.sync(&[(2, 10)], t0 + Duration::from_secs(12)).is_empty());
        assert_eq!(l.remaining(1, t0), None);
        // A new leader starts every TTL afresh, plus the election timeout.
        let t1 = t0 + Duration::from_secs(100);
        l.reset();
        l.promote(&[(2, 10)], t1, Duration::from_secs(1));
        assert!(l.sync(&[(2, 10)], t1 + Duration::from_secs(10)).is_empty());
        assert_eq!(l.sync(&[(2, 10)], t1 + Duration::from_secs(11)), vec![2]);
        // A lease granted after the election but before the promotion keeps its TTL.
        l.reset();
        l.renew(3, 10, t1);
        l.promote(&[(3, 10)], t1, Duration::from_secs(1));
        assert_eq!(l.remaining(3, t1), Some(10));
    }
}
