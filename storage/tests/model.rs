//! Model-based test: random operations on the file store and the memory store,
//! checked against a plain in-memory model after every step (reopen included).

use std::collections::BTreeMap;

use natrix_storage::frame::stored_len;
use natrix_storage::rt::run_local;
use natrix_storage::{FileStore, Limits, LogConfig, MemStore, PurgeRequest, StreamState};
use proptest::prelude::*;

const SUBJECTS: [&str; 4] = ["a.x", "a.y", "b.x", "c"];
const MAX_MSGS: u64 = 40;
const MAX_PER_SUBJECT: u64 = 12;

#[derive(Clone, Debug)]
enum Op {
    Append { subject: usize, len: usize },
    Delete { pick: usize },
    PurgeAll,
    PurgeSubject { subject: usize },
    PurgeUpTo { pick: usize },
    PurgeKeep { keep: u64 },
    Compact { ahead: u64 },
    Truncate { back: u64 },
    Commit,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        14 => (0..4usize, prop_oneof![0..100usize, 0..3000usize]).prop_map(|(subject, len)| Op::Append { subject, len }),
        2 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        1 => Just(Op::PurgeAll),
        1 => (0..4usize).prop_map(|subject| Op::PurgeSubject { subject }),
        1 => any::<usize>().prop_map(|pick| Op::PurgeUpTo { pick }),
        1 => (0..10u64).prop_map(|keep| Op::PurgeKeep { keep }),
        1 => (0..4u64).prop_map(|ahead| Op::Compact { ahead }),
        1 => (0..6u64).prop_map(|back| Op::Truncate { back }),
        2 => Just(Op::Commit),
        2 => Just(Op::Reopen),
    ]
}

#[derive(Default, Debug)]
struct Model {
    msgs: BTreeMap<u64, (usize, Vec<u8>)>,
    first: u64,
    last: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            first: 1,
            ..Default::default()
        }
    }
    fn size(m: &(usize, Vec<u8>)) -> u64 {
        stored_len(SUBJECTS[m.0].len(), 0, m.1.len()) as u64
    }
    fn remove_oldest_where(&mut self, f: impl Fn(&(usize, Vec<u8>)) -> bool) {
        let seq = *self.msgs.iter().find(|(_, m)| f(m)).expect("one").0;
        self.msgs.remove(&seq);
    }
    fn append(&mut self, subject: usize, payload: Vec<u8>) {
        self.last += 1;
        self.msgs.insert(self.last, (subject, payload));
        while self.msgs.values().filter(|m| m.0 == subject).count() as u64 > MAX_PER_SUBJECT {
            self.remove_oldest_where(|m| m.0 == subject);
        }
        while self.msgs.len() as u64 > MAX_MSGS {
            self.remove_oldest_where(|_| true);
        }
        self.fix_first();
    }
    fn fix_first(&mut self) {
        self.first = self
            .first
            .max(*self.msgs.keys().next().unwrap_or(&(self.last + 1)));
        if self.msgs.is_empty() {
            self.first = self.last + 1;
        }
    }
    fn compact(&mut self, floor: u64) {
        self.msgs.retain(|&s, _| s >= floor);
        if floor > self.last + 1 {
            self.last = floor - 1;
        }
        self.first = self.first.max(floor);
        self.fix_first();
    }
    fn state(&self) -> StreamState {
        let mut subjects: Vec<usize> = self.msgs.values().map(|m| m.0).collect();
        subjects.sort();
        subjects.dedup();
        StreamState {
            msgs: self.msgs.len() as u64,
            bytes: self.msgs.values().map(Self::size).sum(),
            first_seq: self.first,
            first_ts_ns: 0,
            last_seq: self.last,
            last_ts_ns: 0,
            num_deleted: if self.msgs.is_empty() {
                0
            } else {
                self.last + 1 - self.first - self.msgs.len() as u64
            },
            num_subjects: subjects.len() as u64,
        }
    }
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_size_bytes: 64 << 10,
        record_max_bytes: 4 << 10,
        limits: Limits {
            max_msgs: MAX_MSGS,
            max_msgs_per_subject: MAX_PER_SUBJECT,
            ..Limits::default()
        },
        ..LogConfig::default()
    }
}

fn strip_ts(mut s: StreamState) -> StreamState {
    s.first_ts_ns = 0;
    s.last_ts_ns = 0;
    s
}

async fn check_file(s: &FileStore, m: &Model, full: bool) {
    assert_eq!(strip_ts(s.state()), m.state());
    let seqs: Vec<u64> = if full {
        (m.first.saturating_sub(2)..=m.last + 1).collect()
    } else {
        m.msgs.keys().rev().take(3).copied().collect()
    };
    for seq in seqs {
        let got = s.get(seq).await.unwrap();
        match m.msgs.get(&seq) {
            None => assert!(got.is_none(), "seq {seq} should be gone"),
            Some((subj, payload)) => {
                let g = got.unwrap_or_else(|| panic!("seq {seq} missing"));
                assert_eq!(g.subject, SUBJECTS[*subj]);
                assert_eq!(&g.payload[..], &payload[..]);
            }
        }
    }
}

async fn check_mem(s: &MemStore, m: &Model) {
    assert_eq!(strip_ts(s.state()), m.state());
    for (seq, (subj, payload)) in &m.msgs {
        let g = s.get(*seq).await.unwrap().unwrap();
        assert_eq!(g.subject, SUBJECTS[*subj]);
        assert_eq!(&g.payload[..], &payload[..]);
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(move || async move {
        let mut fs = FileStore::open(&path, cfg()).await.unwrap();
        let ms = MemStore::new(cfg().limits);
        let mut m = Model::new();
        let mut n = 0u64;
        for op in ops {
            let mut full = false;
            match op {
                Op::Append { subject, len } => {
                    n += 1;
                    let payload: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + n) as u8).collect();
                    fs.append(SUBJECTS[subject], b"", &payload).unwrap();
                    ms.append(SUBJECTS[subject], b"", &payload).unwrap();
                    m.append(subject, payload);
                }
                Op::Delete { pick } => {
                    if !m.msgs.is_empty() {
                        let seq = *m.msgs.keys().nth(pick % m.msgs.len()).unwrap();
                        assert!(fs.delete(seq).unwrap());
                        assert!(ms.delete(seq).unwrap());
                        m.msgs.remove(&seq);
                        m.fix_first();
                    }
                }
                Op::PurgeAll => {
                    let n1 = fs.purge(&PurgeRequest::default()).unwrap();
                    assert_eq!(ms.purge(&PurgeRequest::default()).unwrap(), n1);
                    assert_eq!(n1, m.msgs.len() as u64);
                    let last = m.last;
                    m.compact(last + 1);
                }
                Op::PurgeSubject { subject } => {
                    let req = PurgeRequest {
                        subject: Some(SUBJECTS[subject].into()),
                        ..Default::default()
                    };
                    let n1 = fs.purge(&req).unwrap();
                    assert_eq!(ms.purge(&req).unwrap(), n1);
                    let before = m.msgs.len();
                    m.msgs.retain(|_, v| v.0 != subject);
                    assert_eq!(n1, (before - m.msgs.len()) as u64);
                    m.fix_first();
                }
                Op::PurgeUpTo { pick } => {
                    let up_to = m.first + (pick as u64 % (m.last + 2 - m.first));
                    let req = PurgeRequest {
                        up_to_seq: Some(up_to),
                        ..Default::default()
                    };
                    let n1 = fs.purge(&req).unwrap();
                    assert_eq!(ms.purge(&req).unwrap(), n1);
                    let before = m.msgs.len();
                    m.msgs.retain(|&s, _| s >= up_to);
                    assert_eq!(n1, (before - m.msgs.len()) as u64);
                    m.fix_first();
                }
                Op::PurgeKeep { keep } => {
                    let req = PurgeRequest {
                        keep: Some(keep),
                        ..Default::default()
                    };
                    fs.purge(&req).unwrap();
                    ms.purge(&req).unwrap();
                    while m.msgs.len() as u64 > keep {
                        m.remove_oldest_where(|_| true);
                    }
                    m.fix_first();
                }
                Op::Compact { ahead } => {
                    let floor = m.first + ahead;
                    fs.compact(floor, 0).unwrap();
                    ms.compact(floor, 0).unwrap();
                    m.compact(floor);
                }
                Op::Truncate { back } => {
                    let from = m.last.saturating_sub(back).max(m.first).max(1);
                    if from <= m.last {
                        fs.truncate_from(from).await.unwrap();
                        ms.truncate_from(from).await.unwrap();
                        m.msgs.retain(|&s, _| s < from);
                        m.last = from - 1;
                        m.fix_first();
                        full = true;
                    }
                }
                Op::Commit => {
                    fs.commit().await.unwrap();
                }
                Op::Reopen => {
                    fs.commit().await.unwrap();
                    drop(fs);
                    fs = FileStore::open(&path, cfg()).await.unwrap();
                    let r = fs.recovery_report();
                    assert!(
                        r.missing.is_empty() && r.damage.is_empty() && r.torn_tails.is_empty(),
                        "{r:?}"
                    );
                    full = true;
                }
            }
            check_file(&fs, &m, full).await;
            check_mem(&ms, &m).await;
        }
        fs.commit().await.unwrap();
        drop(fs);
        let fs = FileStore::open(&path, cfg()).await.unwrap();
        check_file(&fs, &m, true).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn file_and_memory_stores_follow_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        run(ops);
    }
}
