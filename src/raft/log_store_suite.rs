//! Behaviour tests every [`LogStore`] must pass, run against [`MemStore`] here and
//! against the file store in `storage_log_tests`. Each case starts from an empty store.

use raft::eraftpb::{Entry, EntryType, HardState, Snapshot};

use super::log_store::{GroupId, LogStore, MemStore};

pub(crate) type Case<S> = (&'static str, fn(&mut S));

/// Every case, by name.
pub(crate) fn cases<S: LogStore>() -> Vec<Case<S>> {
    vec![
        ("append_truncate_compact", append_truncate_compact::<S>),
        ("hard_state", hard_state::<S>),
        ("install_snapshot", install_snapshot::<S>),
        ("groups_are_independent", groups_are_independent::<S>),
        ("entries_size_limit", entries_size_limit::<S>),
        ("entry_kinds_kept", entry_kinds_kept::<S>),
        ("bootstrapped_group", bootstrapped_group::<S>),
        ("stale_compaction_ignored", stale_compaction_ignored::<S>),
    ]
}

pub(crate) fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("e{index}t{term}").into_bytes().into(),
        ..Default::default()
    }
}

pub(crate) fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters.to_vec();
    s.data = format!("state@{index}").into_bytes().into();
    s
}

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn empty_group<S: LogStore>(s: &mut S, g: GroupId) {
    s.create_group(g, 1, &Snapshot::default(), &HardState::default());
}

fn append_truncate_compact<S: LogStore>(s: &mut S) {
    empty_group(s, 7);
    s.append(7, &[entry(1, 1), entry(2, 1), entry(3, 2)]);
    assert_eq!((s.first_index(7), s.last_index(7)), (1, 3));
    s.truncate_suffix(7, 3);
    assert_eq!(s.last_index(7), 2);
    s.append(7, &[entry(3, 3), entry(4, 3)]);
    assert_eq!(s.term(7, 3), Some(3));
    s.compact_prefix(7, &snapshot(2, 1, &[1]));
    assert_eq!((s.first_index(7), s.last_index(7)), (3, 4));
    assert_eq!(s.term(7, 2), Some(1));
    assert_eq!(s.term(7, 1), None);
    assert_eq!(s.term(7, 5), None);
    assert_eq!(s.entries(7, 3, 5, u64::MAX), vec![entry(3, 3), entry(4, 3)]);
    assert_eq!(s.snapshot(7).get_metadata().index, 2);
}

fn hard_state<S: LogStore>(s: &mut S) {
    empty_group(s, 1);
    s.append(1, &[entry(1, 2), entry(2, 3)]);
    s.set_hard_state(1, &hs(3, 1, 2));
    assert_eq!(s.hard_state(1), hs(3, 1, 2));
    s.set_hard_state(1, &hs(4, 0, 2));
    assert_eq!(s.hard_state(1), hs(4, 0, 2));
}

fn install_snapshot<S: LogStore>(s: &mut S) {
    empty_group(s, 2);
    s.append(2, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
    s.set_hard_state(2, &hs(1, 0, 1));
    s.install_snapshot(2, &snapshot(10, 4, &[1, 2, 3]));
    assert_eq!((s.first_index(2), s.last_index(2)), (11, 10));
    assert_eq!(s.term(2, 10), Some(4));
    assert_eq!(s.term(2, 3), None);
    let h = s.hard_state(2);
    assert_eq!((h.term, h.commit), (4, 10));
    assert_eq!(s.snapshot(2), snapshot(10, 4, &[1, 2, 3]));
    s.append(2, &[entry(11, 5)]);
    assert_eq!(s.last_index(2), 11);
}

fn groups_are_independent<S: LogStore>(s: &mut S) {
    empty_group(s, 1);
    s.create_group(2, 9, &Snapshot::default(), &HardState::default());
    empty_group(s, 3);
    s.append(1, &[entry(1, 1)]);
    s.append(2, &[entry(1, 5), entry(2, 5)]);
    s.append(3, &[entry(1, 2)]);
    s.set_hard_state(2, &hs(5, 9, 1));
    s.remove_group(3);
    let mut ids = s.group_ids();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(s.replica_id(2), 9);
    assert_eq!(s.last_index(1), 1);
    assert_eq!(s.last_index(2), 2);
    assert_eq!(s.term(2, 2), Some(5));
    // A group may be created again under the same id (a fresh replica).
    empty_group(s, 3);
    assert_eq!(s.last_index(3), 0);
}

fn entries_size_limit<S: LogStore>(s: &mut S) {
    empty_group(s, 1);
    let es: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
    s.append(1, &es);
    assert_eq!(s.entries(1, 1, 11, 0).len(), 1, "at least one entry");
    let one = (es[0].data.len() + 16) as u64;
    assert_eq!(s.entries(1, 1, 11, 3 * one).len(), 3);
    assert_eq!(s.entries(1, 4, 6, u64::MAX), es[3..5].to_vec());
}

fn entry_kinds_kept<S: LogStore>(s: &mut S) {
    empty_group(s, 1);
    let mut cc = entry(1, 1);
    cc.set_entry_type(EntryType::EntryConfChangeV2);
    cc.context = b"ctx".to_vec().into();
    let mut noop = entry(2, 1);
    noop.data = Default::default();
    s.append(1, &[cc.clone(), noop.clone(), entry(3, 1)]);
    assert_eq!(s.entries(1, 1, 4, u64::MAX), vec![cc, noop, entry(3, 1)]);
}

fn bootstrapped_group<S: LogStore>(s: &mut S) {
    s.create_group(5, 3, &snapshot(1, 1, &[1, 2, 3]), &hs(1, 0, 1));
    assert_eq!((s.first_index(5), s.last_index(5)), (2, 1));
    assert_eq!(s.term(5, 1), Some(1));
    s.append(5, &[entry(2, 2), entry(3, 2)]);
    s.set_hard_state(5, &hs(2, 3, 3));
    s.compact_prefix(5, &snapshot(3, 2, &[1, 2, 3]));
    assert_eq!((s.first_index(5), s.last_index(5)), (4, 3));
}

fn stale_compaction_ignored<S: LogStore>(s: &mut S) {
    empty_group(s, 1);
    s.append(1, &[entry(1, 1), entry(2, 1), entry(3, 1)]);
    s.compact_prefix(1, &snapshot(2, 1, &[1]));
    s.compact_prefix(1, &snapshot(1, 1, &[1]));
    assert_eq!(s.first_index(1), 3);
    assert_eq!(s.snapshot(1).get_metadata().index, 2);
}

/// Everything a store holds, for comparing a store with itself after a reopen.
#[derive(Debug, PartialEq)]
pub(crate) struct Dump {
    pub groups: Vec<GroupDump>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct GroupDump {
    pub group: GroupId,
    pub replica: u64,
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

pub(crate) fn dump<S: LogStore>(s: &S) -> Dump {
    let mut ids = s.group_ids();
    ids.sort_unstable();
    let groups = ids
        .into_iter()
        .map(|g| {
            let h = s.hard_state(g);
            let (first, last) = (s.first_index(g), s.last_index(g));
            GroupDump {
                group: g,
                replica: s.replica_id(g),
                term: h.term,
                vote: h.vote,
                commit: h.commit,
                snapshot: s.snapshot(g),
                entries: if last >= first {
                    s.entries(g, first, last + 1, u64::MAX)
                } else {
                    Vec::new()
                },
            }
        })
        .collect();
    Dump { groups }
}

#[test]
fn mem_store_passes_the_suite() {
    for (name, case) in cases::<MemStore>() {
        let mut s = MemStore::new();
        case(&mut s);
        assert!(!dump(&s).groups.is_empty(), "{name} left groups behind");
    }
}
