#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::*;
use crate::history::{ClientId, Revision};

// ---- builders -------------------------------------------------------------

fn rec(client: u32, op: Op, invoke: u64, complete: Option<u64>, outcome: Outcome) -> Record {
    Record {
        client: ClientId(client),
        op,
        invoke_ns: invoke,
        complete_ns: complete,
        outcome,
    }
}

fn unknown() -> Outcome {
    Outcome::Unknown {
        reason: "test".into(),
    }
}

fn get(c: u32, key: &str, t: (u64, u64), value: Option<&str>) -> Record {
    rec(
        c,
        Op::Get { key: key.into() },
        t.0,
        Some(t.1),
        Outcome::Ok(Output::Get {
            value: value.map(Into::into),
            revision: None,
        }),
    )
}

fn put(c: u32, key: &str, t: (u64, u64), value: &str) -> Record {
    rec(
        c,
        Op::Put {
            key: key.into(),
            value: value.into(),
        },
        t.0,
        Some(t.1),
        Outcome::Ok(Output::Put { revision: None }),
    )
}

fn put_unknown(c: u32, key: &str, invoke: u64, value: &str) -> Record {
    rec(
        c,
        Op::Put {
            key: key.into(),
            value: value.into(),
        },
        invoke,
        None,
        unknown(),
    )
}

fn put_failed(c: u32, key: &str, t: (u64, u64), value: &str) -> Record {
    rec(
        c,
        Op::Put {
            key: key.into(),
            value: value.into(),
        },
        t.0,
        Some(t.1),
        Outcome::Fail {
            reason: "refused".into(),
        },
    )
}

fn del(c: u32, key: &str, t: (u64, u64), deleted: u64) -> Record {
    rec(
        c,
        Op::Delete { key: key.into() },
        t.0,
        Some(t.1),
        Outcome::Ok(Output::Delete {
            deleted,
            revision: None,
        }),
    )
}

fn cas(
    c: u32,
    key: &str,
    t: (u64, u64),
    expect: Option<&str>,
    value: &str,
    succeeded: bool,
) -> Record {
    rec(
        c,
        Op::Cas {
            key: key.into(),
            expect: expect.map(Into::into),
            value: value.into(),
        },
        t.0,
        Some(t.1),
        Outcome::Ok(Output::Cas {
            succeeded,
            revision: None,
        }),
    )
}

fn cas_unknown(c: u32, key: &str, invoke: u64, expect: Option<&str>, value: &str) -> Record {
    rec(
        c,
        Op::Cas {
            key: key.into(),
            expect: expect.map(Into::into),
            value: value.into(),
        },
        invoke,
        None,
        unknown(),
    )
}

fn run(records: Vec<Record>) -> CheckResult {
    check(&History::new(records), &CheckConfig::default())
}

// ---- table of small histories ---------------------------------------------

#[test]
fn small_histories() {
    struct Case {
        name: &'static str,
        records: Vec<Record>,
        linearizable: bool,
    }
    let cases = vec![
        Case {
            name: "empty",
            records: vec![],
            linearizable: true,
        },
        Case {
            name: "read of absent key",
            records: vec![get(0, "k", (0, 1), None)],
            linearizable: true,
        },
        Case {
            name: "sequential put then get",
            records: vec![put(0, "k", (0, 1), "a"), get(1, "k", (2, 3), Some("a"))],
            linearizable: true,
        },
        Case {
            name: "read overlapping a write sees the new value",
            records: vec![put(0, "k", (0, 10), "a"), get(1, "k", (5, 6), Some("a"))],
            linearizable: true,
        },
        Case {
            name: "read overlapping a write sees the old value",
            records: vec![put(0, "k", (0, 10), "a"), get(1, "k", (5, 6), None)],
            linearizable: true,
        },
        Case {
            name: "overlapping writes, later read sees the first",
            records: vec![
                put(0, "k", (0, 10), "a"),
                put(1, "k", (2, 8), "b"),
                get(2, "k", (20, 21), Some("a")),
            ],
            linearizable: true,
        },
        Case {
            name: "overlapping writes, later read sees the second",
            records: vec![
                put(0, "k", (0, 10), "a"),
                put(1, "k", (2, 8), "b"),
                get(2, "k", (20, 21), Some("b")),
            ],
            linearizable: true,
        },
        Case {
            name: "concurrent reads see the writes in one order",
            records: vec![
                put(0, "k", (0, 100), "a"),
                put(1, "k", (0, 100), "b"),
                get(2, "k", (10, 20), Some("a")),
                get(3, "k", (30, 40), Some("b")),
                get(2, "k", (50, 60), Some("b")),
            ],
            linearizable: true,
        },
        Case {
            name: "concurrent reads disagree on the order of two writes",
            records: vec![
                put(0, "k", (0, 100), "a"),
                put(1, "k", (0, 100), "b"),
                get(2, "k", (10, 20), Some("a")),
                get(3, "k", (30, 40), Some("b")),
                get(2, "k", (50, 60), Some("a")),
            ],
            linearizable: false,
        },
        Case {
            name: "unknown write observed later",
            records: vec![
                put(0, "k", (0, 1), "a"),
                put_unknown(1, "k", 2, "b"),
                get(2, "k", (10, 11), Some("a")),
                get(2, "k", (20, 21), Some("b")),
            ],
            linearizable: true,
        },
        Case {
            name: "unknown write never observed",
            records: vec![
                put(0, "k", (0, 1), "a"),
                put_unknown(1, "k", 2, "b"),
                get(2, "k", (10, 11), Some("a")),
                put(0, "k", (12, 13), "c"),
                get(2, "k", (20, 21), Some("c")),
            ],
            linearizable: true,
        },
        Case {
            name: "unknown write observed before it was invoked",
            records: vec![get(2, "k", (0, 1), Some("b")), put_unknown(1, "k", 2, "b")],
            linearizable: false,
        },
        Case {
            name: "unknown write cannot take effect twice",
            records: vec![
                put(0, "k", (0, 1), "a"),
                put_unknown(1, "k", 2, "b"),
                get(2, "k", (10, 11), Some("b")),
                put(0, "k", (12, 13), "c"),
                get(2, "k", (20, 21), Some("b")),
            ],
            linearizable: false,
        },
        Case {
            name: "unknown cas takes effect",
            records: vec![
                put(0, "k", (0, 1), "a"),
                cas_unknown(1, "k", 2, Some("a"), "b"),
                get(2, "k", (10, 11), Some("b")),
            ],
            linearizable: true,
        },
        Case {
            name: "unknown cas whose comparison never held was observed",
            records: vec![
                put(0, "k", (0, 1), "a"),
                cas_unknown(1, "k", 2, Some("z"), "b"),
                get(2, "k", (10, 11), Some("b")),
            ],
            linearizable: false,
        },
        Case {
            name: "unknown read is dropped",
            records: vec![
                put(0, "k", (0, 1), "a"),
                rec(1, Op::Get { key: "k".into() }, 2, None, unknown()),
            ],
            linearizable: true,
        },
        Case {
            name: "stale read after a completed write",
            records: vec![
                put(0, "k", (0, 1), "a"),
                put(0, "k", (2, 3), "b"),
                get(1, "k", (4, 5), Some("a")),
            ],
            linearizable: false,
        },
        Case {
            name: "read of a value never written",
            records: vec![put(0, "k", (0, 1), "a"), get(1, "k", (2, 3), Some("x"))],
            linearizable: false,
        },
        Case {
            name: "read of a failed write's value",
            records: vec![
                put_failed(0, "k", (0, 1), "a"),
                get(1, "k", (2, 3), Some("a")),
            ],
            linearizable: false,
        },
        Case {
            name: "cas succeeds twice from the same expected value",
            records: vec![
                put(0, "k", (0, 1), "a"),
                cas(1, "k", (2, 3), Some("a"), "b", true),
                cas(2, "k", (4, 5), Some("a"), "c", true),
            ],
            linearizable: false,
        },
        Case {
            name: "concurrent cas from the same value: one wins",
            records: vec![
                put(0, "k", (0, 1), "a"),
                cas(1, "k", (2, 10), Some("a"), "b", true),
                cas(2, "k", (3, 9), Some("a"), "c", false),
                get(0, "k", (11, 12), Some("b")),
            ],
            linearizable: true,
        },
        Case {
            name: "cas on absent key",
            records: vec![
                cas(0, "k", (0, 1), None, "a", true),
                cas(1, "k", (2, 3), None, "b", false),
                get(0, "k", (4, 5), Some("a")),
            ],
            linearizable: true,
        },
        Case {
            name: "cas fails although the comparison held",
            records: vec![
                put(0, "k", (0, 1), "a"),
                cas(1, "k", (2, 3), Some("a"), "b", false),
            ],
            linearizable: false,
        },
        Case {
            name: "lost acknowledged write",
            records: vec![
                put(0, "k", (0, 1), "a"),
                get(1, "k", (2, 3), Some("a")),
                put(0, "k", (4, 5), "b"),
                get(1, "k", (6, 7), Some("a")),
            ],
            linearizable: false,
        },
        Case {
            name: "acknowledged write lost entirely",
            records: vec![put(0, "k", (0, 1), "a"), get(1, "k", (2, 3), None)],
            linearizable: false,
        },
        Case {
            name: "delete counts",
            records: vec![
                del(0, "k", (0, 1), 0),
                put(0, "k", (2, 3), "a"),
                del(1, "k", (4, 5), 1),
                get(0, "k", (6, 7), None),
            ],
            linearizable: true,
        },
        Case {
            name: "delete of an absent key reports a deletion",
            records: vec![del(0, "k", (0, 1), 1)],
            linearizable: false,
        },
        Case {
            name: "delete of a present key reports none",
            records: vec![put(0, "k", (0, 1), "a"), del(0, "k", (2, 3), 0)],
            linearizable: false,
        },
        Case {
            name: "operations touching at one instant are concurrent",
            records: vec![put(0, "k", (0, 5), "a"), get(1, "k", (5, 6), None)],
            linearizable: true,
        },
    ];
    for case in cases {
        let result = run(case.records);
        assert_eq!(
            result.ok, case.linearizable,
            "{}: expected linearizable={}, got {result}",
            case.name, case.linearizable
        );
        assert!(!result.timed_out, "{}", case.name);
        assert_eq!(
            result.violation.is_some(),
            !case.linearizable,
            "{}",
            case.name
        );
    }
}

#[test]
fn violation_names_the_stuck_operation() {
    let stale = get(1, "k", (4, 5), Some("a"));
    let result = run(vec![
        put(0, "k", (0, 1), "a"),
        put(0, "k", (2, 3), "b"),
        stale.clone(),
    ]);
    let v = result.violation.unwrap();
    assert_eq!(v.key, "k");
    assert_eq!(v.stuck, Some(stale));
    assert_eq!(v.state, "\"b\"");
    assert_eq!(v.linearized, 2);
    assert!(v.description.contains("get(k)"), "{}", v.description);
}

#[test]
fn keys_are_checked_independently() {
    let result = run(vec![
        put(0, "a", (0, 10), "1"),
        put(1, "b", (0, 10), "2"),
        get(2, "a", (11, 12), Some("1")),
        get(2, "b", (13, 14), Some("1")),
    ]);
    assert!(!result.ok);
    assert_eq!(result.per_key.len(), 2);
    assert!(result.per_key[0].ok);
    assert!(!result.per_key[1].ok);
    assert_eq!(result.violation.unwrap().key, "b");
    assert_eq!(result.ops_checked, 4);
}

#[test]
fn budget_exhaustion_is_reported_not_success() {
    // Many concurrent writes and a final read of a value nobody wrote: the search
    // has to explore a lot before giving up.
    let mut records: Vec<Record> = (0..12)
        .map(|i| put(i, "k", (0, 100), &format!("v{i}")))
        .collect();
    records.push(get(99, "k", (200, 201), Some("nobody")));
    let cfg = CheckConfig {
        max_steps_per_key: 50,
        ..CheckConfig::default()
    };
    let result = check(&History::new(records), &cfg);
    assert!(!result.ok);
    assert!(result.timed_out);
    assert!(result.violation.is_none());
    assert!(result.per_key[0].timed_out);
    assert!(result.to_string().contains("UNDECIDED"));
}

#[test]
fn many_unobserved_unknown_writes_stay_cheap() {
    // 40 unknown writes that never take effect, interleaved with reads and
    // acknowledged writes. Without dominance in the memo this is exponential.
    let mut records = Vec::new();
    let mut t = 0;
    for i in 0..40u32 {
        records.push(put(0, "k", (t, t + 1), &format!("a{i}")));
        records.push(put_unknown(1, "k", t + 2, &format!("u{i}")));
        records.push(get(2, "k", (t + 3, t + 4), Some(&format!("a{i}"))));
        t += 10;
    }
    let result = run(records);
    assert!(result.ok, "{result}");
    assert!(result.per_key[0].steps < 1_000_000, "{result}");
}

#[test]
fn result_serializes_to_json() {
    let result = run(vec![
        put(0, "k", (0, 1), "a"),
        get(1, "k", (2, 3), Some("x")),
    ]);
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["violation"]["key"], "k");
}

// ---- randomized histories -------------------------------------------------

struct Generated {
    records: Vec<Record>,
}

/// A random sequential execution over `keys` registers, each op wrapped in an
/// interval around its linearization point (points are 10 ns apart, intervals
/// extend up to `spread` ns on each side), with some writes' outcomes unknown and
/// some extra unknown writes that never took effect.
fn generate(seed: u64, ops: usize, keys: usize, clients: u32, spread: u64) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut state: HashMap<String, Option<String>> = HashMap::new();
    let mut written: HashMap<String, Vec<String>> = HashMap::new();
    let mut records = Vec::with_capacity(ops + ops / 20);
    for n in 0..ops {
        let lp = spread + 10 * n as u64;
        let invoke = lp - rng.gen_range(0..=spread);
        let complete = lp + rng.gen_range(0..=spread);
        let client = rng.gen_range(0..clients);
        let key = format!("k{}", rng.gen_range(0..keys));
        let current = state.get(&key).cloned().flatten();
        let value = format!("v{n}");
        let (op, output) = match rng.gen_range(0..10) {
            0..=3 => (
                Op::Get { key: key.clone() },
                Output::Get {
                    value: current.clone(),
                    revision: None,
                },
            ),
            4..=5 => {
                state.insert(key.clone(), Some(value.clone()));
                (
                    Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                    },
                    Output::Put {
                        revision: Some(Revision(n as i64)),
                    },
                )
            }
            6 => {
                state.insert(key.clone(), None);
                (
                    Op::Delete { key: key.clone() },
                    Output::Delete {
                        deleted: u64::from(current.is_some()),
                        revision: None,
                    },
                )
            }
            _ => {
                let history = written.get(&key).cloned().unwrap_or_default();
                let expect = match rng.gen_range(0..3) {
                    0 => current.clone(),
                    1 => None,
                    _ => history.choose(&mut rng).cloned(),
                };
                let succeeded = expect == current;
                if succeeded {
                    state.insert(key.clone(), Some(value.clone()));
                }
                (
                    Op::Cas {
                        key: key.clone(),
                        expect,
                        value: value.clone(),
                    },
                    Output::Cas {
                        succeeded,
                        revision: None,
                    },
                )
            }
        };
        if op.is_write() {
            written.entry(key.clone()).or_default().push(value.clone());
        }
        let (complete_ns, outcome) = if op.is_write() && rng.gen_bool(0.03) {
            (None, unknown())
        } else {
            (Some(complete), Outcome::Ok(output))
        };
        records.push(rec(client, op, invoke, complete_ns, outcome));
        if rng.gen_bool(0.02) {
            // A write that was sent but never took effect.
            records.push(put_unknown(client, &key, invoke, &format!("lost{n}")));
        }
    }
    // The recorder stores records in completion order; mimic that.
    records.sort_by_key(|r| r.complete_ns.unwrap_or(u64::MAX));
    Generated { records }
}

#[test]
fn random_linearizable_histories_pass_and_corrupted_ones_fail() {
    for seed in 0..40 {
        let g = generate(seed, 300, 3, 8, 60);
        let result = run(g.records.clone());
        assert!(result.ok, "seed {seed}: {result}");

        // Corrupt one successful read to a value nobody wrote.
        let mut rng = StdRng::seed_from_u64(seed ^ 0xdead);
        let reads: Vec<usize> = g
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.outcome, Outcome::Ok(Output::Get { .. })))
            .map(|(i, _)| i)
            .collect();
        let victim = *reads.choose(&mut rng).unwrap();
        let mut corrupted = g.records.clone();
        corrupted[victim].outcome = Outcome::Ok(Output::Get {
            value: Some("never-written".into()),
            revision: None,
        });
        let result = run(corrupted.clone());
        assert!(!result.ok, "seed {seed}: corruption not detected");
        assert!(!result.timed_out, "seed {seed}");
        let v = result.violation.unwrap();
        assert_eq!(v.key, corrupted[victim].op.key(), "seed {seed}");
    }
}

#[test]
fn random_stale_reads_are_detected() {
    // A read that returns the value before the latest *completed* write, placed
    // strictly after that write's interval, is surely illegal when no write of
    // that key overlaps it.
    let mut detected = 0;
    for seed in 0..20 {
        let g = generate(seed, 200, 2, 4, 5);
        let mut records = g.records.clone();
        records.sort_by_key(|r| r.invoke_ns);
        let last = records.iter().map(|r| r.invoke_ns).max().unwrap_or(0);
        // Sequential tail: read after everything, returning an old value.
        let key = "k0";
        let writes: Vec<&Record> = records
            .iter()
            .filter(|r| {
                r.op.key() == key && matches!(r.op, Op::Put { .. }) && r.complete_ns.is_some()
            })
            .collect();
        if writes.len() < 2 {
            continue;
        }
        let Op::Put { value, .. } = &writes[0].op else {
            unreachable!()
        };
        let value = value.clone();
        records.push(put(7, key, (last + 1000, last + 1001), "final"));
        records.push(get(7, key, (last + 2000, last + 2001), Some(&value)));
        let result = run(records);
        assert!(!result.ok, "seed {seed}");
        detected += 1;
    }
    assert!(detected > 10);
}

#[test]
fn ten_thousand_ops_with_sixteen_clients() {
    let g = generate(7, 10_000, 8, 16, 80);
    let result = run(g.records);
    assert!(result.ok, "{result}");
    assert!(!result.timed_out);
    assert_eq!(result.per_key.len(), 8);
}

// ---- cross-check against brute force --------------------------------------

/// Whether `records` (one key) is linearizable, by trying every order of every
/// admissible subset: required ops (known outcome) must all be placed, unknown
/// writes may be, failed ops and unknown reads are ignored.
fn brute_force(records: &[Record]) -> bool {
    struct B<'a> {
        ops: Vec<&'a Record>,
    }
    fn required(r: &Record) -> bool {
        matches!(r.outcome, Outcome::Ok(_))
    }
    fn apply(r: &Record, state: &Option<String>) -> Option<Option<String>> {
        match (&r.op, &r.outcome) {
            (Op::Get { .. }, Outcome::Ok(Output::Get { value, .. })) => {
                (value == state).then(|| state.clone())
            }
            (Op::Put { value, .. }, _) => Some(Some(value.clone())),
            (Op::Delete { .. }, Outcome::Ok(Output::Delete { deleted, .. })) => {
                ((*deleted > 0) == state.is_some()).then_some(None)
            }
            (Op::Delete { .. }, _) => Some(None),
            (Op::Cas { expect, value, .. }, outcome) => {
                let holds = expect == state;
                match outcome {
                    Outcome::Ok(Output::Cas { succeeded, .. }) if *succeeded != holds => None,
                    _ if holds => Some(Some(value.clone())),
                    _ => Some(state.clone()),
                }
            }
            _ => None,
        }
    }
    fn go(b: &B<'_>, placed: &mut Vec<bool>, state: Option<String>) -> bool {
        if b.ops
            .iter()
            .zip(placed.iter())
            .all(|(r, p)| *p || !required(r))
        {
            return true;
        }
        for i in 0..b.ops.len() {
            if placed[i] {
                continue;
            }
            let inv = b.ops[i].invoke_ns;
            let blocked = b
                .ops
                .iter()
                .zip(placed.iter())
                .any(|(o, p)| !*p && required(o) && o.complete_ns.is_some_and(|c| c < inv));
            if blocked {
                continue;
            }
            if let Some(next) = apply(b.ops[i], &state) {
                placed[i] = true;
                if go(b, placed, next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let ops: Vec<&Record> = records
        .iter()
        .filter(|r| {
            !matches!(
                (&r.op, &r.outcome),
                (_, Outcome::Fail { .. }) | (Op::Get { .. }, Outcome::Unknown { .. })
            )
        })
        .collect();
    let mut placed = vec![false; ops.len()];
    go(&B { ops }, &mut placed, None)
}

fn random_small_history(rng: &mut StdRng) -> Vec<Record> {
    let pool = |rng: &mut StdRng| ["a", "b", "c"][rng.gen_range(0..3)].to_owned();
    let maybe = |rng: &mut StdRng| {
        if rng.gen_bool(0.3) {
            None
        } else {
            Some(pool(rng))
        }
    };
    let n = rng.gen_range(1..=7);
    (0..n)
        .map(|_| {
            let invoke = rng.gen_range(0..20);
            let complete = invoke + rng.gen_range(0..10);
            let (op, out) = match rng.gen_range(0..4) {
                0 => (
                    Op::Get { key: "k".into() },
                    Output::Get {
                        value: maybe(rng),
                        revision: None,
                    },
                ),
                1 => (
                    Op::Put {
                        key: "k".into(),
                        value: pool(rng),
                    },
                    Output::Put { revision: None },
                ),
                2 => (
                    Op::Delete { key: "k".into() },
                    Output::Delete {
                        deleted: rng.gen_range(0..2),
                        revision: None,
                    },
                ),
                _ => (
                    Op::Cas {
                        key: "k".into(),
                        expect: maybe(rng),
                        value: pool(rng),
                    },
                    Output::Cas {
                        succeeded: rng.gen_bool(0.5),
                        revision: None,
                    },
                ),
            };
            match rng.gen_range(0..10) {
                0..=6 => rec(0, op, invoke, Some(complete), Outcome::Ok(out)),
                7..=8 => rec(0, op, invoke, None, unknown()),
                _ => rec(
                    0,
                    op,
                    invoke,
                    Some(complete),
                    Outcome::Fail {
                        reason: "refused".into(),
                    },
                ),
            }
        })
        .collect()
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = StdRng::seed_from_u64(2024);
    let (mut yes, mut no) = (0, 0);
    for case in 0..20_000 {
        let records = random_small_history(&mut rng);
        let expected = brute_force(&records);
        let got = run(records.clone());
        assert!(!got.timed_out);
        assert_eq!(
            got.ok,
            expected,
            "case {case}: checker says {}, brute force says {expected}:\n{}",
            got.ok,
            records
                .iter()
                .map(|r| format!("  {r}\n"))
                .collect::<String>()
        );
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    // Both verdicts are well represented.
    assert!(yes > 2000 && no > 2000, "{yes} linearizable, {no} not");
}
