//! The in-memory index and accounting shared by the file and memory stores:
//! a dense sequence -> entry table, per-subject state and retention decisions.
//! Pure logic, no I/O: `L` is where the store keeps the record.

use std::collections::{HashMap, VecDeque};

use crate::config::{Discard, Limits, StreamState};
use crate::subject::subject_matches;

/// One sequence slot. `live == false`: deleted, or missing after corruption.
#[derive(Clone, Debug)]
pub(crate) struct Entry<L> {
    pub ts_ns: u64,
    pub term: u64,
    pub subject: u32,
    pub size_bytes: u32,
    pub live: bool,
    pub loc: L,
}

#[derive(Clone, Debug)]
struct SubjectInfo {
    name: Box<str>,
    msgs: u64,
    /// No live message of this subject is below this sequence.
    first_hint: u64,
    last_seq: u64,
}

/// The stream reads that both stores answer from their `Core` and their own `get`:
/// expands into an `impl` of a store with fields `inner.core` and an async `get`.
macro_rules! stream_reads {
    () => {
        /// Live messages with sequence in `[from, to]`, at most `max_msgs` of them.
        pub async fn range(
            &self,
            from: u64,
            to: u64,
            max_msgs: usize,
        ) -> $crate::Result<Vec<$crate::StoredMsg>> {
            let seqs: Vec<u64> = {
                let inner = self.inner.borrow();
                inner
                    .core
                    .range(from, to)
                    .map(|(s, _)| s)
                    .take(max_msgs)
                    .collect()
            };
            let mut out = Vec::with_capacity(seqs.len());
            for s in seqs {
                if let Some(m) = self.get(s).await? {
                    out.push(m);
                }
            }
            Ok(out)
        }

        pub async fn last_for_subject(
            &self,
            subject: &str,
        ) -> $crate::Result<Option<$crate::StoredMsg>> {
            let seq = self.inner.borrow().core.last_of_subject(subject);
            match seq {
                Some(s) => self.get(s).await,
                None => Ok(None),
            }
        }

        /// First live sequence stored at or after `ts_ns`.
        pub fn seq_for_time(&self, ts_ns: u64) -> Option<u64> {
            self.inner.borrow().core.seq_for_time(ts_ns)
        }

        pub fn subject_counts(&self, filter: &str) -> Vec<(String, u64)> {
            self.inner.borrow().core.subject_counts(filter)
        }

        /// First live sequence `>= from` on a subject matching `filters` (all when empty).
        pub fn next_matching(&self, from: u64, filters: &[String]) -> Option<u64> {
            self.inner.borrow().core.next_matching(from, filters)
        }

        /// Live messages `>= from` on subjects matching `filters` (all when empty).
        pub fn count_matching(&self, from: u64, filters: &[String]) -> u64 {
            self.inner.borrow().core.count_matching(from, filters)
        }

        /// The subject of live message `seq`.
        pub fn subject_of(&self, seq: u64) -> Option<String> {
            let inner = self.inner.borrow();
            let e = inner.core.live(seq)?;
            Some(inner.core.subject_name(e.subject).to_string())
        }

        /// Live messages in `[from, to]` on subjects matching `filters`.
        pub fn count_matching_range(&self, from: u64, to: u64, filters: &[String]) -> u64 {
            self.inner
                .borrow()
                .core
                .count_matching_range(from, to, filters)
        }

        /// The newest sequence of each subject matching `filters`, ascending.
        pub fn last_per_subject(&self, filters: &[String]) -> Vec<u64> {
            self.inner.borrow().core.last_per_subject(filters)
        }

        /// The newest live sequence on exactly `subject`.
        pub fn last_seq_of_subject(&self, subject: &str) -> Option<u64> {
            self.inner.borrow().core.last_of_subject(subject)
        }

        /// Deleted sequences between the first and the last.
        pub fn deleted(&self) -> Vec<u64> {
            self.inner.borrow().core.deleted()
        }

        /// The deleted sequences in `[from, to]` as runs, at most `runs_max`.
        pub fn deleted_runs(&self, from: u64, to: u64, runs_max: usize) -> $crate::DeletedRuns {
            self.inner.borrow().core.deleted_runs(from, to, runs_max)
        }

        /// How many removals this store has seen: a mark for `removed_since`.
        pub fn removals(&self) -> u64 {
            self.inner.borrow().core.removals()
        }

        /// Whether a removal after mark `since` took a sequence `>= from`;
        /// `None` when that is too long ago to tell.
        pub fn removed_since(&self, since: u64, from: u64) -> Option<bool> {
            self.inner.borrow().core.removed_since(since, from)
        }

        pub fn state(&self) -> $crate::StreamState {
            self.inner.borrow().core.state()
        }

        pub fn first_index(&self) -> u64 {
            self.inner.borrow().core.base_seq()
        }

        pub fn last_index(&self) -> u64 {
            self.inner.borrow().core.last_seq()
        }

        /// Raft: the term of the entry at `index` (or of the snapshot at `first_index - 1`).
        pub fn term(&self, index: u64) -> Option<u64> {
            let inner = self.inner.borrow();
            if index + 1 == inner.core.base_seq() {
                return Some(inner.core.floor_term());
            }
            inner.core.live(index).map(|e| e.term)
        }
    };
}
pub(crate) use stream_reads;

/// Deleted sequences as inclusive runs `(first, last)`, complete through `through`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletedRuns {
    pub runs: Vec<(u64, u64)>,
    pub through: u64,
    /// Every deleted sequence asked about is in `runs` (none was left for want of room).
    pub complete: bool,
}

/// Removals remembered for `removed_since`.
const RECENT_REMOVALS_MAX: usize = 512;

/// Dense table of sequences `[base_seq, last_seq]`; the front entry is always live.
#[derive(Clone, Debug)]
pub(crate) struct Core<L> {
    base_seq: u64,
    last_seq: u64,
    /// Term of `base_seq - 1` (a Raft snapshot's term), 0 if unknown.
    floor_term: u64,
    entries: VecDeque<Entry<L>>,
    msgs: u64,
    bytes: u64,
    subject_ids: HashMap<Box<str>, u32>,
    subjects: Vec<SubjectInfo>,
    num_subjects: u64,
    /// The subject interned last (appends usually repeat it): checked before the map.
    hot_subject: u32,
    /// Removals so far, and the highest sequence each of the latest took: readers
    /// that keep a count of messages above a point (consumers' pending counts)
    /// learn from it whether the count still holds.
    removals: u64,
    recent_removals: VecDeque<u64>,
}

impl<L: Clone> Default for Core<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Clone> Core<L> {
    pub fn new() -> Self {
        Core {
            base_seq: 1,
            last_seq: 0,
            floor_term: 0,
            entries: VecDeque::new(),
            msgs: 0,
            bytes: 0,
            subject_ids: HashMap::new(),
            subjects: Vec::new(),
            num_subjects: 0,
            hot_subject: u32::MAX,
            removals: 0,
            recent_removals: VecDeque::new(),
        }
    }

    fn note_removal(&mut self, highest_seq: u64) {
        self.removals += 1;
        if self.recent_removals.len() == RECENT_REMOVALS_MAX {
            self.recent_removals.pop_front();
        }
        self.recent_removals.push_back(highest_seq);
    }

    pub fn removals(&self) -> u64 {
        self.removals
    }

    pub fn removed_since(&self, since: u64, from: u64) -> Option<bool> {
        debug_assert!(since <= self.removals, "a mark from this store");
        let count = usize::try_from(self.removals - since).ok()?;
        if count > self.recent_removals.len() {
            return None;
        }
        Some(
            self.recent_removals
                .iter()
                .rev()
                .take(count)
                .any(|&s| s >= from),
        )
    }

    fn check_invariants(&self) {
        debug_assert_eq!(self.entries.len() as u64, self.last_seq + 1 - self.base_seq);
        debug_assert!(self.entries.front().is_none_or(|e| e.live));
        debug_assert!(self.msgs <= self.entries.len() as u64);
    }

    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
    pub fn floor_term(&self) -> u64 {
        self.floor_term
    }

    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(s) = self.subjects.get(self.hot_subject as usize) {
            if &*s.name == name {
                return self.hot_subject;
            }
        }
        if let Some(&id) = self.subject_ids.get(name) {
            self.hot_subject = id;
            return id;
        }
        let id = u32::try_from(self.subjects.len()).expect("subject count fits u32");
        self.subjects.push(SubjectInfo {
            name: name.into(),
            msgs: 0,
            first_hint: u64::MAX,
            last_seq: 0,
        });
        self.subject_ids.insert(name.into(), id);
        id
    }

    pub fn subject_name(&self, id: u32) -> &str {
        &self.subjects[id as usize].name
    }

    pub fn subject_id(&self, name: &str) -> Option<u32> {
        self.subject_ids.get(name).copied()
    }

    pub fn entry(&self, seq: u64) -> Option<&Entry<L>> {
        if seq < self.base_seq || seq > self.last_seq {
            return None;
        }
        self.entries.get((seq - self.base_seq) as usize)
    }

    pub fn entry_mut(&mut self, seq: u64) -> Option<&mut Entry<L>> {
        if seq < self.base_seq || seq > self.last_seq {
            return None;
        }
        self.entries.get_mut((seq - self.base_seq) as usize)
    }

    pub fn live(&self, seq: u64) -> Option<&Entry<L>> {
        self.entry(seq).filter(|e| e.live)
    }

    /// Appends `seq`, which must be `last_seq + 1`.
    pub fn push(&mut self, seq: u64, entry: Entry<L>) {
        assert_eq!(seq, self.last_seq + 1, "sequences are dense");
        let live = entry.live;
        let subject = entry.subject;
        let size = entry.size_bytes as u64;
        self.entries.push_back(entry);
        self.last_seq = seq;
        if live {
            self.msgs += 1;
            self.bytes += size;
            let s = &mut self.subjects[subject as usize];
            if s.msgs == 0 {
                self.num_subjects += 1;
                s.first_hint = seq;
            }
            s.msgs += 1;
            s.last_seq = seq;
        }
        self.trim_front();
        self.check_invariants();
    }

    fn trim_front(&mut self) {
        while let Some(front) = self.entries.front() {
            if front.live {
                break;
            }
            self.entries.pop_front();
            self.base_seq += 1;
        }
        if self.entries.is_empty() {
            self.base_seq = self.last_seq + 1;
        }
    }

    /// Marks `seq` removed; returns whether it was live.
    pub fn remove(&mut self, seq: u64) -> bool {
        let Some(e) = self.entry_mut(seq) else {
            return false;
        };
        if !e.live {
            return false;
        }
        e.live = false;
        let subject = e.subject;
        let size = e.size_bytes as u64;
        self.note_removal(seq);
        self.msgs -= 1;
        self.bytes -= size;
        let s = &mut self.subjects[subject as usize];
        s.msgs -= 1;
        if s.msgs == 0 {
            self.num_subjects -= 1;
            s.first_hint = u64::MAX;
            s.last_seq = 0;
        } else if s.last_seq == seq {
            let new_last = self.scan_back_subject(subject, seq);
            self.subjects[subject as usize].last_seq = new_last;
        }
        self.trim_front();
        self.check_invariants();
        true
    }

    /// Marks `seq` as missing (corrupt on disk): it occupies its slot but is never served.
    pub fn push_missing(&mut self, seq: u64, loc: L) {
        let ts_ns = self.entries.back().map_or(0, |e| e.ts_ns);
        self.push(
            seq,
            Entry {
                ts_ns,
                term: 0,
                subject: u32::MAX,
                size_bytes: 0,
                live: false,
                loc,
            },
        );
    }

    fn scan_back_subject(&self, subject: u32, below: u64) -> u64 {
        let mut seq = below;
        while seq > self.base_seq {
            seq -= 1;
            if let Some(e) = self.live(seq) {
                if e.subject == subject {
                    return seq;
                }
            }
        }
        panic!("subject count says a message is left");
    }

    /// Removes everything below `floor` (and moves the end up if `floor` is past it).
    pub fn compact(&mut self, floor: u64, floor_term: u64) -> Vec<u64> {
        let mut removed = Vec::new();
        if floor < self.base_seq {
            return removed;
        }
        if floor == self.base_seq {
            self.floor_term = floor_term;
            return removed;
        }
        let top = floor.min(self.last_seq + 1);
        for seq in self.base_seq..top {
            if self.live(seq).is_some() {
                removed.push(seq);
                self.remove(seq);
            }
        }
        if floor > self.last_seq + 1 {
            self.entries.clear();
            self.last_seq = floor - 1;
            self.base_seq = floor;
        } else {
            while self.base_seq < floor {
                self.entries.pop_front();
                self.base_seq += 1;
            }
            self.trim_front();
        }
        self.floor_term = floor_term;
        self.check_invariants();
        removed
    }

    /// Drops `from..=last_seq` (a Raft conflicting suffix).
    pub fn truncate_from(&mut self, from: u64) {
        assert!(
            from >= self.base_seq,
            "cannot truncate below the first sequence"
        );
        if from > self.last_seq {
            return;
        }
        self.note_removal(self.last_seq);
        while self.last_seq >= from {
            let e = self.entries.pop_back().expect("dense");
            let seq = self.last_seq;
            self.last_seq -= 1;
            if e.live {
                self.msgs -= 1;
                self.bytes -= e.size_bytes as u64;
                let s = &mut self.subjects[e.subject as usize];
                s.msgs -= 1;
                if s.msgs == 0 {
                    self.num_subjects -= 1;
                    s.first_hint = u64::MAX;
                    s.last_seq = 0;
                } else if s.last_seq == seq {
                    let new_last = self.scan_back_subject(e.subject, seq);
                    self.subjects[e.subject as usize].last_seq = new_last;
                }
            }
        }
        if self.entries.is_empty() {
            self.base_seq = self.last_seq + 1;
        }
        self.check_invariants();
    }

    /// Oldest live sequence of a subject.
    pub fn first_of_subject(&mut self, subject: u32) -> Option<u64> {
        let s = &self.subjects[subject as usize];
        if s.msgs == 0 {
            return None;
        }
        let mut seq = s.first_hint.max(self.base_seq);
        let last = s.last_seq;
        while seq <= last {
            if let Some(e) = self.live(seq) {
                if e.subject == subject {
                    self.subjects[subject as usize].first_hint = seq;
                    return Some(seq);
                }
            }
            seq += 1;
        }
        panic!("subject count says a message is left");
    }

    pub fn last_of_subject(&self, name: &str) -> Option<u64> {
        let id = self.subject_id(name)?;
        let s = &self.subjects[id as usize];
        (s.msgs > 0).then_some(s.last_seq)
    }

    /// First live sequence `>= seq`.
    pub fn next_live(&self, seq: u64) -> Option<u64> {
        let mut seq = seq.max(self.base_seq);
        while seq <= self.last_seq {
            if self.live(seq).is_some() {
                return Some(seq);
            }
            seq += 1;
        }
        None
    }

    /// First live sequence stored at or after `ts_ns` (timestamps never go back,
    /// deleted and missing slots included).
    pub fn seq_for_time(&self, ts_ns: u64) -> Option<u64> {
        let idx = self.entries.partition_point(|e| e.ts_ns < ts_ns);
        self.next_live(self.base_seq + idx as u64)
    }

    pub fn state(&self) -> StreamState {
        let first_ts = self.entries.front().map_or(0, |e| e.ts_ns);
        let last_ts = self.live(self.last_seq).map_or(0, |e| e.ts_ns);
        StreamState {
            msgs: self.msgs,
            bytes: self.bytes,
            first_seq: self.base_seq,
            first_ts_ns: first_ts,
            last_seq: self.last_seq,
            last_ts_ns: last_ts,
            num_deleted: self.entries.len() as u64 - self.msgs,
            num_subjects: self.num_subjects,
        }
    }

    /// Per-subject message counts for subjects matching `filter` (NATS wildcards).
    pub fn subject_counts(&self, filter: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .subjects
            .iter()
            .filter(|s| s.msgs > 0 && subject_matches(filter, &s.name))
            .map(|s| (s.name.to_string(), s.msgs))
            .collect();
        out.sort();
        out
    }

    /// Whether a new message of `size_bytes` on `subject` may be stored (discard new).
    pub fn admit(
        &self,
        limits: &Limits,
        subject: Option<u32>,
        size_bytes: u64,
    ) -> Result<(), &'static str> {
        if limits.discard != Discard::New {
            return Ok(());
        }
        if limits.max_msgs > 0 && self.msgs + 1 > limits.max_msgs {
            return Err("messages");
        }
        if limits.max_bytes > 0 && self.bytes + size_bytes > limits.max_bytes {
            return Err("bytes");
        }
        if limits.discard_new_per_subject && limits.max_msgs_per_subject > 0 {
            if let Some(id) = subject {
                if self.subjects[id as usize].msgs + 1 > limits.max_msgs_per_subject {
                    return Err("messages per subject");
                }
            }
        }
        Ok(())
    }

    /// Applies the limits after `last_subject` got a message; returns removed sequences.
    pub fn enforce(&mut self, limits: &Limits, now_ns: u64, last_subject: Option<u32>) -> Vec<u64> {
        let mut removed = Vec::new();
        if limits.max_msgs_per_subject > 0 {
            let subjects: Vec<u32> = match last_subject {
                Some(s) => vec![s],
                None => (0..self.subjects.len() as u32).collect(),
            };
            for s in subjects {
                while self.subjects[s as usize].msgs > limits.max_msgs_per_subject {
                    let seq = self.first_of_subject(s).expect("has messages");
                    self.remove(seq);
                    removed.push(seq);
                }
            }
        }
        if limits.discard == Discard::Old {
            while limits.max_msgs > 0 && self.msgs > limits.max_msgs {
                removed.push(self.remove_front());
            }
            while limits.max_bytes > 0 && self.bytes > limits.max_bytes {
                removed.push(self.remove_front());
            }
        }
        if !limits.max_age.is_zero() {
            let cutoff = now_ns.saturating_sub(limits.max_age.as_nanos() as u64);
            while self.entries.front().is_some_and(|e| e.ts_ns < cutoff) {
                removed.push(self.remove_front());
            }
        }
        removed
    }

    fn remove_front(&mut self) -> u64 {
        let seq = self.base_seq;
        assert!(self.remove(seq), "front entry is live");
        seq
    }

    /// Sequences a purge removes, oldest first.
    pub fn purge_victims(&self, req: &crate::config::PurgeRequest) -> Vec<u64> {
        let mut candidates: Vec<u64> = (self.base_seq..=self.last_seq)
            .filter(|&seq| {
                let Some(e) = self.live(seq) else {
                    return false;
                };
                if let Some(up_to) = req.up_to_seq {
                    if seq >= up_to {
                        return false;
                    }
                }
                match &req.subject {
                    Some(f) => subject_matches(f, &self.subjects[e.subject as usize].name),
                    None => true,
                }
            })
            .collect();
        if let Some(keep) = req.keep {
            let n = candidates.len().saturating_sub(keep as usize);
            candidates.truncate(n);
        }
        candidates
    }

    /// Whether subject `id` matches any of `filters` (every subject when empty),
    /// remembered per subject in `cache` for one scan.
    fn subject_in(&self, id: u32, filters: &[String], cache: &mut HashMap<u32, bool>) -> bool {
        if filters.is_empty() {
            return true;
        }
        *cache.entry(id).or_insert_with(|| {
            let name = &self.subjects[id as usize].name;
            filters.iter().any(|f| subject_matches(f, name))
        })
    }

    /// First live sequence `>= from` on a subject matching `filters`.
    pub fn next_matching(&self, from: u64, filters: &[String]) -> Option<u64> {
        if filters.is_empty() {
            return self.next_live(from);
        }
        let mut cache = HashMap::new();
        self.range(from, u64::MAX)
            .find(|(_, e)| self.subject_in(e.subject, filters, &mut cache))
            .map(|(seq, _)| seq)
    }

    /// Live messages `>= from` on subjects matching `filters`.
    pub fn count_matching(&self, from: u64, filters: &[String]) -> u64 {
        if from <= self.base_seq && filters.is_empty() {
            return self.msgs;
        }
        if filters.is_empty() && self.entries.len() as u64 == self.msgs {
            // Nothing deleted: every slot from `from` on is a message.
            return (self.last_seq + 1).saturating_sub(from);
        }
        let mut cache = HashMap::new();
        self.range(from, u64::MAX)
            .filter(|(_, e)| self.subject_in(e.subject, filters, &mut cache))
            .count() as u64
    }

    /// Live messages in `[from, to]` on subjects matching `filters`.
    pub fn count_matching_range(&self, from: u64, to: u64, filters: &[String]) -> u64 {
        if from > to {
            return 0;
        }
        let mut cache = HashMap::new();
        self.range(from, to)
            .filter(|(_, e)| self.subject_in(e.subject, filters, &mut cache))
            .count() as u64
    }

    /// The newest sequence of every subject matching `filters`, ascending.
    pub fn last_per_subject(&self, filters: &[String]) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .subjects
            .iter()
            .filter(|s| s.msgs > 0)
            .filter(|s| filters.is_empty() || filters.iter().any(|f| subject_matches(f, &s.name)))
            .map(|s| s.last_seq)
            .collect();
        out.sort_unstable();
        out
    }

    /// Deleted (or missing) sequences between the first and the last.
    pub fn deleted(&self) -> Vec<u64> {
        self.deleted_runs(self.base_seq, self.last_seq, usize::MAX)
            .runs
            .into_iter()
            .flat_map(|(first, last)| first..=last)
            .collect()
    }

    /// The deleted (or missing) sequences in `[from, to]` as inclusive runs, at
    /// most `runs_max` of them, from the lowest; with the sequence through which
    /// they name every deleted one.
    pub fn deleted_runs(&self, from: u64, to: u64, runs_max: usize) -> DeletedRuns {
        let (from, to) = (from.max(self.base_seq), to.min(self.last_seq));
        let mut out = DeletedRuns {
            runs: Vec::new(),
            through: to.max(from.saturating_sub(1)),
            complete: true,
        };
        // From the first entry on, the scan stops after the last deleted one: a
        // compaction's snapshot asks about the whole stream, which mostly has none.
        let mut deleted_left =
            (from == self.base_seq).then(|| self.entries.len() as u64 - self.msgs);
        let mut open: Option<u64> = None;
        for seq in from..=to {
            if deleted_left == Some(0) && open.is_none() {
                break;
            }
            let deleted = self.live(seq).is_none();
            if deleted {
                deleted_left = deleted_left.map(|n| n - 1);
            }
            match (deleted, open) {
                (true, None) if out.runs.len() == runs_max => {
                    out.through = seq - 1;
                    out.complete = false;
                    return out;
                }
                (true, None) => open = Some(seq),
                (false, Some(start)) => {
                    out.runs.push((start, seq - 1));
                    open = None;
                }
                _ => {}
            }
        }
        if let Some(start) = open {
            out.runs.push((start, to));
        }
        debug_assert!(out.runs.len() <= runs_max);
        out
    }

    /// Iterates live `(seq, entry)` in `[from, to]`.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &Entry<L>)> + '_ {
        let from = from.max(self.base_seq);
        let to = to.min(self.last_seq);
        (from..=to).filter_map(move |seq| self.live(seq).map(|e| (seq, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn add(c: &mut Core<()>, subject: &str, ts: u64) -> u64 {
        let id = c.intern(subject);
        let seq = c.last_seq() + 1;
        c.push(
            seq,
            Entry {
                ts_ns: ts,
                term: 0,
                subject: id,
                size_bytes: 10,
                live: true,
                loc: (),
            },
        );
        seq
    }

    #[test]
    fn removals_tell_whether_a_count_above_a_point_holds() {
        let mut c = Core::<()>::new();
        for _ in 0..10 {
            add(&mut c, "a", 1);
        }
        let mark = c.removals();
        assert_eq!(c.removed_since(mark, 1), Some(false));
        c.remove(3);
        assert_eq!(c.removed_since(mark, 4), Some(false));
        assert_eq!(c.removed_since(mark, 3), Some(true));
        let mark = c.removals();
        c.truncate_from(8);
        assert_eq!(c.removed_since(mark, 10), Some(true));
        for _ in 0..RECENT_REMOVALS_MAX {
            let seq = add(&mut c, "a", 1);
            assert!(c.remove(seq));
        }
        assert_eq!(c.removed_since(mark, 1), None, "too long ago");
    }

    /// Against a plain scan, for random deletions (front ones trimmed away) and
    /// random ranges and bounds.
    #[test]
    fn deleted_runs_match_a_plain_scan() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut c = Core::<()>::new();
            let len = 1 + next(60);
            for _ in 0..len {
                add(&mut c, "a", 1);
            }
            for _ in 0..next(len + 1) {
                c.remove(1 + next(len));
            }
            let (from, to, max) = (next(len + 3), next(len + 3), 1 + next(4) as usize);
            let got = c.deleted_runs(from, to, max);
            let (lo, hi) = (from.max(c.base_seq()), to.min(c.last_seq()));
            let missing: Vec<u64> = (lo..=hi).filter(|s| c.live(*s).is_none()).collect();
            let named: Vec<u64> = got.runs.iter().flat_map(|&(a, b)| a..=b).collect();
            let through: Vec<u64> = missing
                .iter()
                .copied()
                .filter(|s| *s <= got.through)
                .collect();
            assert_eq!(named, through, "{from}..{to} max {max}: {got:?}");
            assert!(got.runs.len() <= max);
            assert_eq!(got.complete, got.through >= hi.max(lo.saturating_sub(1)));
        }
    }

    #[test]
    fn deleted_runs_are_bounded_and_say_how_far_they_hold() {
        let mut c = Core::<()>::new();
        for _ in 0..20 {
            add(&mut c, "a", 1);
        }
        for seq in [3, 4, 5, 8, 12, 13, 20] {
            assert!(c.remove(seq));
        }
        let all = c.deleted_runs(1, u64::MAX, 10);
        assert_eq!(all.runs, vec![(3, 5), (8, 8), (12, 13), (20, 20)]);
        assert_eq!(all.through, 20);
        let two = c.deleted_runs(1, 19, 2);
        assert_eq!(two.runs, vec![(3, 5), (8, 8)]);
        assert_eq!((two.through, two.complete), (11, false));
        let rest = c.deleted_runs(two.through + 1, 19, 2);
        assert_eq!(rest.runs, vec![(12, 13)]);
        assert_eq!((rest.through, rest.complete), (19, true));
        let cut = c.deleted_runs(4, 12, 10);
        assert_eq!(cut.runs, vec![(4, 5), (8, 8), (12, 12)]);
        assert_eq!(cut.through, 12);
        let none = c.deleted_runs(9, 8, 10);
        assert_eq!((none.runs.len(), none.through), (0, 8));
        let expected: Vec<u64> = all.runs.iter().flat_map(|&(a, b)| a..=b).collect();
        assert_eq!(c.deleted(), expected);

        // Deletions only early on: the answer still holds through the end.
        let mut early = Core::<()>::new();
        for _ in 0..1000 {
            add(&mut early, "a", 1);
        }
        for seq in [3, 4, 9] {
            assert!(early.remove(seq));
        }
        let runs = early.deleted_runs(1, u64::MAX, 10);
        assert_eq!(runs.runs, vec![(3, 4), (9, 9)]);
        assert_eq!((runs.through, runs.complete), (1000, true));
        let none = early.deleted_runs(10, 1000, 10);
        assert_eq!(
            (none.runs.len(), none.through, none.complete),
            (0, 1000, true)
        );
    }

    #[test]
    fn delete_front_and_middle() {
        let mut c = Core::<()>::new();
        for i in 0..5 {
            add(&mut c, if i % 2 == 0 { "a" } else { "b" }, i);
        }
        assert!(c.remove(3));
        assert!(!c.remove(3));
        assert_eq!(c.state().num_deleted, 1);
        assert!(c.remove(1));
        assert_eq!(c.state().first_seq, 2);
        assert_eq!(c.last_of_subject("a"), Some(5));
        assert!(c.remove(5));
        assert_eq!(c.last_of_subject("a"), None);
        assert_eq!(c.state().num_subjects, 1);
        let a = c.intern("a");
        assert_eq!(c.first_of_subject(a), None);
    }

    #[test]
    fn retention_per_subject_and_age() {
        let mut c = Core::<()>::new();
        let limits = Limits {
            max_msgs_per_subject: 2,
            max_age: Duration::from_nanos(100),
            ..Limits::default()
        };
        for i in 0..6 {
            add(&mut c, "k", 1000 + i);
            let s = c.intern("k");
            c.enforce(&limits, 1000 + i, Some(s));
        }
        assert_eq!(c.state().msgs, 2);
        assert_eq!(c.state().first_seq, 5);
        let removed = c.enforce(&limits, 1105, None);
        assert_eq!(removed, vec![5]);
    }

    #[test]
    fn compact_past_end_and_truncate() {
        let mut c = Core::<()>::new();
        for i in 0..4 {
            add(&mut c, "x", i);
        }
        c.truncate_from(3);
        assert_eq!(c.last_seq(), 2);
        assert_eq!(c.last_of_subject("x"), Some(2));
        c.compact(10, 7);
        assert_eq!(c.state().first_seq, 10);
        assert_eq!(c.last_seq(), 9);
        assert_eq!(c.floor_term(), 7);
        assert_eq!(add(&mut c, "x", 9), 10);
    }

    #[test]
    fn time_lookup() {
        let mut c = Core::<()>::new();
        for ts in [10, 20, 20, 30, 40] {
            add(&mut c, "t", ts);
        }
        c.remove(4);
        assert_eq!(c.seq_for_time(0), Some(1));
        assert_eq!(c.seq_for_time(20), Some(2));
        assert_eq!(c.seq_for_time(25), Some(5));
        assert_eq!(c.seq_for_time(41), None);
    }
}
