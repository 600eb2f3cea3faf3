//! Linearizability checker for [`History`]s against a per-key register model.
//!
//! Every operation touches one key and a register per key is independent of the
//! others, so a history is linearizable iff its restriction to each key is
//! (P-compositionality); [`check`] splits the history by key and checks each part
//! on its own.
//!
//! Per key it runs the Wing–Gong–Lowe search, as Porcupine does: calls and returns
//! are events on one time line in a doubly linked list; the search repeatedly picks
//! a pending call that may take effect now (it precedes the first return still in
//! the list), applies it to the model, removes its call and return from the list,
//! and backtracks when a return is reached whose operation could not be placed.
//! Lowe's memoization prunes configurations (set of placed ops, model state) that
//! were seen before.
//!
//! Outcomes map to the search like this:
//! - [`Outcome::Fail`] records are dropped: they did not take effect.
//! - [`Outcome::Unknown`] reads are dropped: reads have no effect.
//! - [`Outcome::Unknown`] writes are *optional*: they have no return (it is at
//!   +infinity) and the search may place them at any point after their invoke or
//!   never. The search tries every required operation before an optional one, and
//!   the memo treats a configuration as covered by an explored one with the same
//!   required set and state but fewer optional operations placed (that one had
//!   strictly more freedom), so unobserved unknown writes do not multiply the
//!   search space.
//!
//! The initial state of every key is "absent": histories must be recorded under a
//! fresh key prefix. A step and time budget bound the search per key; running out
//! is reported as `timed_out`, never as success.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::history::{show_value, History, Op, Outcome, Output, Record};

/// Budgets of the search.
#[derive(Clone, Debug, Serialize)]
pub struct CheckConfig {
    /// Search steps allowed per key before giving up.
    pub max_steps_per_key: u64,
    /// Wall-clock time allowed per key before giving up.
    pub time_budget_per_key: Duration,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_steps_per_key: 200_000_000,
            time_budget_per_key: Duration::from_secs(60),
        }
    }
}

/// Statistics of the check of one key.
#[derive(Clone, Debug, Serialize)]
pub struct KeyStats {
    /// The key.
    pub key: String,
    /// Operations that took part in the search.
    pub ops: usize,
    /// Of those, writes with an unknown outcome (optional in the search).
    pub unknown_writes: usize,
    /// Records of this key left out: failed operations and unknown reads.
    pub dropped: usize,
    /// Search steps taken.
    pub steps: u64,
    /// Configurations in the memo at the end.
    pub cache_entries: usize,
    /// Time the search took, in microseconds.
    pub elapsed_us: u64,
    /// Whether a linearization was found.
    pub ok: bool,
    /// Whether the budget ran out (then `ok` is false).
    pub timed_out: bool,
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug, Serialize)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// Human-readable explanation.
    pub description: String,
    /// The operation that could not be placed after the deepest partial
    /// linearization, if the search ended at one.
    pub stuck: Option<Record>,
    /// Register state after the deepest partial linearization, for humans
    /// (`absent`, a quoted value, or a note that it holds a value nobody read).
    pub state: String,
    /// Number of operations in the deepest partial linearization.
    pub linearized: usize,
    /// The last operations of the deepest partial linearization, in order.
    pub linearized_tail: Vec<Record>,
    /// Operations whose interval overlaps the stuck one, by invoke time.
    pub concurrent: Vec<Record>,
}

/// Result of [`check`].
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// True iff every key was linearizable within the budget.
    pub ok: bool,
    /// Operations that took part in the search, over all keys.
    pub ops_checked: usize,
    /// Per-key statistics, by key.
    pub per_key: Vec<KeyStats>,
    /// The first violation found (keys in order).
    pub violation: Option<Violation>,
    /// Whether some key ran out of budget.
    pub timed_out: bool,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok {
            "linearizable"
        } else if self.violation.is_some() {
            "NOT linearizable"
        } else {
            "UNDECIDED (budget exhausted)"
        };
        writeln!(
            f,
            "linearizability: {verdict} ({} ops over {} keys)",
            self.ops_checked,
            self.per_key.len()
        )?;
        for k in &self.per_key {
            let status = match (k.ok, k.timed_out) {
                (true, _) => "ok",
                (false, true) => "TIMED OUT",
                (false, false) => "VIOLATION",
            };
            writeln!(
                f,
                "  {}: {status}, {} ops ({} unknown writes, {} dropped), {} steps, {} cached, {:.1} ms",
                k.key,
                k.ops,
                k.unknown_writes,
                k.dropped,
                k.steps,
                k.cache_entries,
                k.elapsed_us as f64 / 1000.0
            )?;
        }
        if let Some(v) = &self.violation {
            writeln!(f, "{}", v.description)?;
        }
        Ok(())
    }
}

/// Checks `history` for linearizability, one register per key.
#[tracing::instrument(skip_all, fields(records = history.records.len()))]
pub fn check(history: &History, cfg: &CheckConfig) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in history.records.iter().enumerate() {
        by_key.entry(r.op.key()).or_default().push(i);
    }
    let mut result = CheckResult {
        ok: true,
        ops_checked: 0,
        per_key: Vec::with_capacity(by_key.len()),
        violation: None,
        timed_out: false,
    };
    for (key, indices) in by_key {
        let (stats, violation) = check_key(key, &history.records, &indices, cfg);
        tracing::debug!(key, ok = stats.ok, steps = stats.steps, "checked key");
        result.ops_checked += stats.ops;
        result.ok &= stats.ok;
        result.timed_out |= stats.timed_out;
        if result.violation.is_none() {
            result.violation = violation;
        }
        result.per_key.push(stats);
    }
    result
}

/// Register states: [`ABSENT`], [`OPAQUE`], or an index into [`Model::values`]
/// (offset by 2).
type State = u32;
/// The key does not exist.
const ABSENT: State = 0;
/// The key holds a value that no read returns and no CAS compares against.
const OPAQUE: State = 1;

/// One operation of one key, compiled against interned values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Read(State),
    Write(State),
    /// `deleted`: whether a key was removed; `None` if the outcome is unknown.
    Delete(Option<bool>),
    /// `succeeded`: `None` if the outcome is unknown.
    Cas {
        expect: State,
        value: State,
        succeeded: Option<bool>,
    },
}

impl Step {
    /// Whether the step leaves the state unchanged in every state where its
    /// output is possible (reads, failed CASes, deletes of absent keys).
    fn is_observer(self) -> bool {
        match self {
            Step::Read(_) | Step::Delete(Some(false)) => true,
            Step::Cas {
                succeeded: Some(false),
                ..
            } => true,
            Step::Cas {
                expect,
                value,
                succeeded: Some(true),
            } => expect == value,
            Step::Write(_) | Step::Delete(_) | Step::Cas { .. } => false,
        }
    }

    /// The state after applying this step to `s`, or `None` if the step's output
    /// is impossible in `s`.
    fn apply(self, s: State) -> Option<State> {
        match self {
            Step::Read(v) => (s == v).then_some(s),
            Step::Write(v) => Some(v),
            Step::Delete(None) => Some(ABSENT),
            Step::Delete(Some(deleted)) => (deleted == (s != ABSENT)).then_some(ABSENT),
            Step::Cas {
                expect,
                value,
                succeeded,
            } => {
                // `expect` is never OPAQUE: expected values are observed values.
                let holds = s == expect;
                match succeeded {
                    None => Some(if holds { value } else { s }),
                    Some(true) => holds.then_some(value),
                    Some(false) => (!holds).then_some(s),
                }
            }
        }
    }
}

/// Interns the register values of one key.
///
/// Values that no read returns and no CAS expects behave identically under every
/// operation, so they all map to [`OPAQUE`]: fewer distinct states make the memo
/// hit more often, and an unknown write of such a value onto another one is a
/// no-op.
struct Model {
    ids: HashMap<String, State>,
    values: Vec<String>,
}

impl Model {
    fn new(records: &[Record], indices: &[usize]) -> Self {
        let mut model = Model {
            ids: HashMap::new(),
            values: Vec::new(),
        };
        for &i in indices {
            let r = &records[i];
            let observed = match (&r.op, &r.outcome) {
                (Op::Get { .. }, Outcome::Ok(Output::Get { value, .. })) => value.as_deref(),
                (Op::Cas { expect, .. }, _) => expect.as_deref(),
                _ => None,
            };
            if let Some(v) = observed {
                if !model.ids.contains_key(v) {
                    let id = State::try_from(model.values.len() + 2).unwrap_or(State::MAX);
                    model.ids.insert(v.to_owned(), id);
                    model.values.push(v.to_owned());
                }
            }
        }
        model
    }

    fn state_of(&self, v: Option<&str>) -> State {
        match v {
            None => ABSENT,
            Some(v) => self.ids.get(v).copied().unwrap_or(OPAQUE),
        }
    }

    fn show(&self, s: State) -> String {
        match s {
            ABSENT => "absent".to_owned(),
            OPAQUE => "set to a value no read observed".to_owned(),
            _ => match self.values.get(s as usize - 2) {
                Some(v) => format!("{v:?}"),
                None => format!("<state {s}>"),
            },
        }
    }
}

/// One operation taking part in the search.
struct KeyOp {
    /// Index into the history's records.
    record: usize,
    step: Step,
    /// Required ops have a known output and must be placed; optional ones (unknown
    /// writes) may be placed or not.
    required: bool,
    /// Index into the required or the optional bit set.
    bit: usize,
    /// Invoke time.
    invoke: u64,
    /// Time by which the op must have taken effect: the return of a required op;
    /// `None` (never) for optional ones.
    ret: Option<u64>,
}

/// Compiles the records of one key; returns ops and the count of dropped records.
fn compile(records: &[Record], indices: &[usize], model: &Model) -> (Vec<KeyOp>, usize) {
    let mut ops = Vec::with_capacity(indices.len());
    let mut dropped = 0;
    for &i in indices {
        let r = &records[i];
        let (step, required) = match (&r.op, &r.outcome) {
            (_, Outcome::Fail { .. }) | (Op::Get { .. }, Outcome::Unknown { .. }) => {
                dropped += 1;
                continue;
            }
            (Op::Get { .. }, Outcome::Ok(Output::Get { value, .. })) => {
                (Step::Read(model.state_of(value.as_deref())), true)
            }
            (Op::Put { value, .. }, Outcome::Ok(Output::Put { .. })) => {
                (Step::Write(model.state_of(Some(value))), true)
            }
            (Op::Put { value, .. }, Outcome::Unknown { .. }) => {
                (Step::Write(model.state_of(Some(value))), false)
            }
            (Op::Delete { .. }, Outcome::Ok(Output::Delete { deleted, .. })) => {
                (Step::Delete(Some(*deleted > 0)), true)
            }
            (Op::Delete { .. }, Outcome::Unknown { .. }) => (Step::Delete(None), false),
            (Op::Cas { expect, value, .. }, outcome) => {
                let expect = model.state_of(expect.as_deref());
                let value = model.state_of(Some(value));
                match outcome {
                    Outcome::Ok(Output::Cas { succeeded, .. }) => (
                        Step::Cas {
                            expect,
                            value,
                            succeeded: Some(*succeeded),
                        },
                        true,
                    ),
                    Outcome::Unknown { .. } => (
                        Step::Cas {
                            expect,
                            value,
                            succeeded: None,
                        },
                        false,
                    ),
                    _ => {
                        dropped += 1;
                        continue;
                    }
                }
            }
            // An output that does not belong to the op: malformed, leave it out.
            _ => {
                dropped += 1;
                continue;
            }
        };
        ops.push(KeyOp {
            record: i,
            step,
            required,
            bit: 0,
            invoke: r.invoke_ns,
            ret: if required { r.complete_ns } else { None },
        });
    }
    promote_observed_writes(&mut ops);
    let (mut nreq, mut nopt) = (0, 0);
    for op in &mut ops {
        let counter = if op.required { &mut nreq } else { &mut nopt };
        op.bit = *counter;
        *counter += 1;
    }
    (ops, dropped)
}

/// Unknown writes whose value was observed took effect before the observer
/// returned. When such a write is the only one of its value, it becomes required,
/// with the earliest observer's return as its own (an unknown CAS also becomes a
/// successful one). This only drops linearizations that could not be valid, and
/// spares the search from trying the write at every point before the read.
fn promote_observed_writes(ops: &mut [KeyOp]) {
    let mut writers: HashMap<State, Vec<usize>> = HashMap::new();
    let mut observed_by: HashMap<State, u64> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op.step {
            Step::Write(v) | Step::Cas { value: v, .. } => writers.entry(v).or_default().push(i),
            _ => {}
        }
        let observed = match op.step {
            Step::Read(v)
            | Step::Cas {
                expect: v,
                succeeded: Some(true),
                ..
            } => v,
            _ => continue,
        };
        if let (true, Some(ret)) = (op.required, op.ret) {
            let t = observed_by.entry(observed).or_insert(ret);
            *t = (*t).min(ret);
        }
    }
    for (value, ret) in observed_by {
        if value == ABSENT || value == OPAQUE {
            continue;
        }
        let Some(&[w]) = writers.get(&value).map(Vec::as_slice) else {
            continue;
        };
        let op = &mut ops[w];
        if op.required {
            continue;
        }
        op.required = true;
        op.ret = Some(ret.max(op.invoke));
        if let Step::Cas { succeeded, .. } = &mut op.step {
            *succeeded = Some(true);
        }
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The call/return events of one key as a doubly linked list. Node 0 is the head
/// sentinel; node `1 + 2i` is the call of op `i` and `2 + 2i` its return (only
/// linked if the op has a finite return time).
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    has_return: Vec<bool>,
}

impl Events {
    fn new(ops: &[KeyOp]) -> Self {
        // (time, is_return, node): calls sort before returns at equal times, so
        // operations that touch at one instant count as concurrent.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        let mut has_return = vec![false; ops.len()];
        for (i, op) in ops.iter().enumerate() {
            order.push((op.invoke, false, 1 + 2 * i));
            if let Some(end) = op.ret {
                order.push((end.max(op.invoke), true, 2 + 2 * i));
                has_return[i] = true;
            }
        }
        order.sort_unstable();
        let n = 1 + 2 * ops.len();
        let mut next = vec![NIL; n];
        let mut prev = vec![NIL; n];
        let mut last = HEAD;
        for &(_, _, node) in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Events {
            next,
            prev,
            has_return,
        }
    }

    fn op_of(node: usize) -> usize {
        (node - 1) / 2
    }

    fn is_call(node: usize) -> bool {
        node % 2 == 1
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Whether a pending optional op with the same step as the optional op at
    /// `call` comes before it in the window. Such twins are interchangeable
    /// (neither has a return, both may take effect from now on), so the search only
    /// ever places the first of them.
    fn has_twin_before(&self, ops: &[KeyOp], call: usize) -> bool {
        let step = ops[Self::op_of(call)].step;
        let mut node = self.next[HEAD];
        while node != call && node != NIL {
            if Self::is_call(node) {
                let other = &ops[Self::op_of(node)];
                if !other.required && other.step == step {
                    return true;
                }
            }
            node = self.next[node];
        }
        false
    }

    /// The first return still in the list: the end of the current window.
    fn first_pending_return(&self) -> Option<usize> {
        let mut node = self.next[HEAD];
        while node != NIL && Self::is_call(node) {
            node = self.next[node];
        }
        (node != NIL).then_some(node)
    }

    /// Removes the call node and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if self.has_return[Self::op_of(call)] {
            self.unlink(call + 1);
        }
    }

    /// Undoes [`Events::lift`] of the most recently lifted call.
    fn unlift(&mut self, call: usize) {
        if self.has_return[Self::op_of(call)] {
            self.relink(call + 1);
        }
        self.relink(call);
    }
}

/// A fixed-size bit set.
#[derive(Clone, PartialEq, Eq)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    fn is_subset_of(&self, other: &Bits) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

struct CacheEntry {
    required: Bits,
    state: State,
    optional: Bits,
}

/// Lowe's memo with dominance on optional operations: a configuration is covered
/// by a stored one with the same required set and state whose optional set is a
/// subset of it.
#[derive(Default)]
struct Memo {
    buckets: HashMap<u64, Vec<CacheEntry>>,
    len: usize,
}

impl Memo {
    /// Stores the configuration and returns true, or returns false if it is
    /// covered by a stored one.
    fn insert(&mut self, hash: u64, required: &Bits, state: State, optional: &Bits) -> bool {
        let bucket = self.buckets.entry(hash).or_default();
        let mut same = bucket
            .iter()
            .filter(|e| e.state == state && e.required == *required);
        if same.any(|e| e.optional.is_subset_of(optional)) {
            return false;
        }
        // Entries this one covers are redundant from now on.
        let before = bucket.len();
        bucket.retain(|e| {
            !(e.state == state && e.required == *required && optional.is_subset_of(&e.optional))
        });
        self.len -= before - bucket.len();
        bucket.push(CacheEntry {
            required: required.clone(),
            state,
            optional: optional.clone(),
        });
        self.len += 1;
        true
    }
}

/// Which candidates a node of the search is trying.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A legal required op that never changes the state (a read that matches, a
    /// failed CAS, a delete of an absent key). Moving such an op to the front of
    /// any valid completion keeps it valid, so placing it at once loses nothing and
    /// the node needs no alternatives: backtracking into it backtracks past it.
    Greedy,
    /// Any required op.
    Required,
    /// Any optional op (unknown write).
    Optional,
}

struct Frame {
    call: usize,
    pass: Pass,
    prev_state: State,
}

/// The deepest dead end of the search, for the report.
struct DeadEnd {
    linearized: Vec<usize>,
    state: State,
    /// Op whose return was reached without it being placed, if any.
    stuck: Option<usize>,
}

enum SearchEnd {
    Linearizable,
    Violation(DeadEnd),
    OutOfBudget,
}

/// Search state of one key: the placed sets, the model state and the memo.
struct Search<'a> {
    ops: &'a [KeyOp],
    zobrist: Vec<u64>,
    required: Bits,
    optional: Bits,
    /// Zobrist hash of `required`.
    hash: u64,
    memo: Memo,
}

impl Search<'_> {
    /// Marks op `i` placed, leading to `next_state`, unless the resulting
    /// configuration is covered by the memo. Returns whether it was placed.
    fn place(&mut self, i: usize, next_state: State) -> bool {
        let op = &self.ops[i];
        let hash = if op.required {
            self.required.set(op.bit);
            self.hash ^ self.zobrist[i]
        } else {
            self.optional.set(op.bit);
            self.hash
        };
        let key = hash ^ crate::splitmix64(u64::from(next_state) ^ 0x5eed);
        if self
            .memo
            .insert(key, &self.required, next_state, &self.optional)
        {
            self.hash = hash;
            true
        } else {
            self.unmark(i);
            false
        }
    }

    /// Undoes [`Search::place`].
    fn unplace(&mut self, i: usize) {
        if self.ops[i].required {
            self.hash ^= self.zobrist[i];
        }
        self.unmark(i);
    }

    fn unmark(&mut self, i: usize) {
        let op = &self.ops[i];
        if op.required {
            self.required.clear(op.bit);
        } else {
            self.optional.clear(op.bit);
        }
    }
}

/// The WGL search over the ops of one key.
fn search(
    ops: &[KeyOp],
    events: &mut Events,
    cfg: &CheckConfig,
    steps: &mut u64,
) -> (SearchEnd, usize) {
    let nreq = ops.iter().filter(|o| o.required).count();
    let mut s = Search {
        ops,
        zobrist: (0..ops.len() as u64).map(crate::splitmix64).collect(),
        required: Bits::new(nreq),
        optional: Bits::new(ops.len() - nreq),
        hash: 0,
        memo: Memo::default(),
    };
    let mut remaining = nreq;
    let mut state = ABSENT;
    let mut stack: Vec<Frame> = Vec::new();
    let mut deepest: Option<DeadEnd> = None;
    let mut cur = events.next[HEAD];
    let mut pass = Pass::Greedy;
    let started = Instant::now();

    let end = loop {
        if remaining == 0 {
            break SearchEnd::Linearizable;
        }
        *steps += 1;
        if *steps > cfg.max_steps_per_key
            || (*steps % 4096 == 0 && started.elapsed() > cfg.time_budget_per_key)
        {
            break SearchEnd::OutOfBudget;
        }

        // Try the candidate at `cur`, if it is one for this pass.
        if cur != NIL && Events::is_call(cur) {
            let i = Events::op_of(cur);
            let op = &ops[i];
            let next_state = match pass {
                Pass::Greedy => op
                    .step
                    .apply(state)
                    .filter(|_| op.required && op.step.is_observer()),
                Pass::Required => op.step.apply(state).filter(|_| op.required),
                Pass::Optional => op
                    .step
                    .apply(state)
                    .filter(|_| !op.required && !events.has_twin_before(ops, cur)),
            };
            if let Some(next_state) = next_state {
                if s.place(i, next_state) {
                    if op.required {
                        remaining -= 1;
                    }
                    stack.push(Frame {
                        call: cur,
                        pass,
                        prev_state: state,
                    });
                    state = next_state;
                    events.lift(cur);
                    cur = events.next[HEAD];
                    pass = Pass::Greedy;
                    continue;
                }
                if pass == Pass::Greedy {
                    // Covered, and w.l.o.g.: this node fails too.
                    pass = Pass::Optional;
                    cur = NIL;
                    continue;
                }
            }
            cur = events.next[cur];
            continue;
        }

        // End of the window of candidates: a return (whose op is still pending)
        // or the end of the list.
        match pass {
            Pass::Greedy => {
                pass = Pass::Required;
                cur = events.next[HEAD];
                continue;
            }
            Pass::Required => {
                pass = Pass::Optional;
                cur = events.next[HEAD];
                continue;
            }
            Pass::Optional => {}
        }
        // This node is exhausted.
        if deepest
            .as_ref()
            .is_none_or(|d| stack.len() > d.linearized.len())
        {
            deepest = Some(DeadEnd {
                linearized: stack.iter().map(|f| Events::op_of(f.call)).collect(),
                state,
                stuck: events.first_pending_return().map(Events::op_of),
            });
        }
        let Some(frame) = stack.pop() else {
            break SearchEnd::Violation(deepest.unwrap_or(DeadEnd {
                linearized: Vec::new(),
                state,
                stuck: None,
            }));
        };
        let i = Events::op_of(frame.call);
        s.unplace(i);
        if ops[i].required {
            remaining += 1;
        }
        events.unlift(frame.call);
        state = frame.prev_state;
        if frame.pass == Pass::Greedy {
            // No alternatives to a greedy step: the parent node is exhausted too.
            pass = Pass::Optional;
            cur = NIL;
        } else {
            cur = events.next[frame.call];
            pass = frame.pass;
        }
    };
    (end, s.memo.len)
}

const TAIL: usize = 8;
const CONCURRENT: usize = 16;

fn check_key(
    key: &str,
    records: &[Record],
    indices: &[usize],
    cfg: &CheckConfig,
) -> (KeyStats, Option<Violation>) {
    let started = Instant::now();
    let model = Model::new(records, indices);
    let (ops, dropped) = compile(records, indices, &model);
    let mut events = Events::new(&ops);
    let mut steps = 0;
    let (end, cache_entries) = search(&ops, &mut events, cfg, &mut steps);
    let mut stats = KeyStats {
        key: key.to_owned(),
        ops: ops.len(),
        unknown_writes: ops
            .iter()
            .filter(|o| matches!(records[o.record].outcome, Outcome::Unknown { .. }))
            .count(),
        dropped,
        steps,
        cache_entries,
        elapsed_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        ok: false,
        timed_out: false,
    };
    match end {
        SearchEnd::Linearizable => {
            stats.ok = true;
            (stats, None)
        }
        SearchEnd::OutOfBudget => {
            stats.timed_out = true;
            (stats, None)
        }
        SearchEnd::Violation(dead_end) => {
            let violation = describe(key, records, &ops, &model, &dead_end);
            (stats, Some(violation))
        }
    }
}

/// The register's concrete value after `linearized`, replayed on the records
/// (the search itself folds unobserved values into one state). `None` if the
/// sequence does not replay, which would be a bug in the search.
fn replay(records: &[Record], ops: &[KeyOp], linearized: &[usize]) -> Option<Option<String>> {
    let mut state: Option<String> = None;
    for &i in linearized {
        let r = &records[ops[i].record];
        match (&r.op, &r.outcome) {
            (Op::Get { .. }, _) => {}
            (Op::Put { value, .. }, _) => state = Some(value.clone()),
            (Op::Delete { .. }, _) => state = None,
            (Op::Cas { expect, value, .. }, outcome) => {
                let holds = state == *expect;
                match outcome {
                    Outcome::Ok(Output::Cas { succeeded, .. }) if *succeeded != holds => {
                        return None;
                    }
                    _ if holds => state = Some(value.clone()),
                    _ => {}
                }
            }
        }
    }
    Some(state)
}

fn describe(
    key: &str,
    records: &[Record],
    ops: &[KeyOp],
    model: &Model,
    dead_end: &DeadEnd,
) -> Violation {
    let rec = |i: usize| records[ops[i].record].clone();
    let state = match replay(records, ops, &dead_end.linearized) {
        Some(concrete) => show_value(concrete.as_deref()),
        None => model.show(dead_end.state),
    };
    let linearized_tail: Vec<Record> = dead_end
        .linearized
        .iter()
        .skip(dead_end.linearized.len().saturating_sub(TAIL))
        .map(|&i| rec(i))
        .collect();
    let stuck = dead_end.stuck.map(rec);
    let mut concurrent: Vec<Record> = Vec::new();
    if let Some(s) = &stuck {
        let (lo, hi) = (s.invoke_ns, s.complete_ns.unwrap_or(u64::MAX));
        let mut overlapping: Vec<&Record> = ops
            .iter()
            .map(|o| &records[o.record])
            .filter(|r| r != &s && r.invoke_ns <= hi && r.complete_ns.is_none_or(|c| c >= lo))
            .collect();
        overlapping.sort_by_key(|r| r.invoke_ns);
        concurrent = overlapping.into_iter().take(CONCURRENT).cloned().collect();
    }

    let mut d = format!(
        "key {key:?} is not linearizable: the deepest partial linearization places {} of {} operations and leaves the register {state}",
        dead_end.linearized.len(),
        ops.len(),
    );
    match &stuck {
        Some(s) => d.push_str(&format!(
            "; then this operation cannot take effect before it returned:\n    {s}"
        )),
        None => d.push_str("; no remaining operation can take effect"),
    }
    if !linearized_tail.is_empty() {
        d.push_str("\n  last operations of that linearization, in order:");
        for r in &linearized_tail {
            d.push_str(&format!("\n    {r}"));
        }
    }
    if !concurrent.is_empty() {
        d.push_str("\n  operations concurrent with it:");
        for r in &concurrent {
            d.push_str(&format!("\n    {r}"));
        }
    }
    Violation {
        key: key.to_owned(),
        description: d,
        stuck,
        state,
        linearized: dead_end.linearized.len(),
        linearized_tail,
        concurrent,
    }
}

#[cfg(test)]
mod tests;
