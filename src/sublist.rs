//! The subscription index: a trie over subject tokens with `*` and `>` branches,
//! holding plain and queue-group entries, with a cache of match results.
//!
//! It is generic over the entry type so that one structure serves local
//! subscriptions and the interest learned from other shards (and, later, routes).

use ahash::AHashMap;
use bytes::Bytes;
use std::rc::Rc;

/// Cached match results at most; the cache is dropped whole when it is full.
const CACHE_ENTRIES_MAX: usize = 4096;
/// Slots of the cache's doorkeeper: hashes of subjects seen once lately.
const SEEN_SLOTS: usize = 4096;
/// Subject tokens split on the stack; longer subjects use a `Vec`.
const TOKENS_INLINE: usize = 16;

/// Entries that matched one literal subject, grouped as delivery needs them.
pub struct Match<T> {
    pub plain: Vec<T>,
    pub queues: Vec<(Bytes, Vec<T>)>,
}

impl<T> Match<T> {
    fn empty() -> Self {
        Match {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }
}

struct Node<T> {
    next: Option<Box<Level<T>>>,
    plain: Vec<T>,
    queues: Vec<(Bytes, Vec<T>)>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            next: None,
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty() && self.next.is_none()
    }
}

struct Level<T> {
    literal: AHashMap<Box<[u8]>, Node<T>>,
    star: Option<Box<Node<T>>>,
    gt: Option<Box<Node<T>>>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            literal: AHashMap::new(),
            star: None,
            gt: None,
        }
    }
}

impl<T> Level<T> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.star.is_none() && self.gt.is_none()
    }

    fn child_mut(&mut self, token: &[u8]) -> &mut Node<T> {
        match token {
            b"*" => self.star.get_or_insert_with(Default::default),
            b">" => self.gt.get_or_insert_with(Default::default),
            _ => self.literal.entry(token.into()).or_default(),
        }
    }
}

/// Counters reported by /subsz.
#[derive(Default, Clone, Copy, Debug)]
pub struct SublistStats {
    pub count: u64,
    pub inserts: u64,
    pub removes: u64,
    pub matches: u64,
    pub cache_hits: u64,
    pub cache_entries: u64,
}

pub struct Sublist<T> {
    root: Level<T>,
    cache: AHashMap<Box<[u8]>, Rc<Match<T>>>,
    /// A subject is cached only when its hash is found here, i.e. on its second
    /// miss: subjects seen once (a reply inbox per request, a PubAck per publish)
    /// never fill the cache, nor empty it of the subjects that repeat.
    seen: Box<[u64]>,
    stats: SublistStats,
}

impl<T: Clone + PartialEq> Default for Sublist<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> Sublist<T> {
    pub fn new() -> Self {
        Sublist {
            root: Level::default(),
            cache: AHashMap::new(),
            seen: vec![0; SEEN_SLOTS].into_boxed_slice(),
            stats: SublistStats::default(),
        }
    }

    pub fn stats(&self) -> SublistStats {
        SublistStats {
            cache_entries: self.cache.len() as u64,
            ..self.stats
        }
    }

    /// Adds `item` under `filter` (a valid subscription subject).
    pub fn insert(&mut self, filter: &[u8], queue: Option<&[u8]>, item: T) {
        let mut level = &mut self.root;
        let mut tokens = filter.split(|b| *b == b'.').peekable();
        let node = loop {
            let token = tokens.next().expect("filter is never empty");
            let node = level.child_mut(token);
            if tokens.peek().is_none() {
                break node;
            }
            level = node.next.get_or_insert_with(Default::default);
        };
        match queue {
            None => node.plain.push(item),
            Some(q) => match node.queues.iter_mut().find(|(name, _)| &**name == q) {
                Some((_, members)) => members.push(item),
                None => node.queues.push((Bytes::copy_from_slice(q), vec![item])),
            },
        }
        self.stats.count += 1;
        self.stats.inserts += 1;
        self.cache.clear();
    }

    /// Removes one `item` under `filter`; false when it was not there.
    pub fn remove(&mut self, filter: &[u8], queue: Option<&[u8]>, item: &T) -> bool {
        let tokens: Vec<&[u8]> = filter.split(|b| *b == b'.').collect();
        let removed = remove_in(&mut self.root, &tokens, queue, item);
        if removed {
            self.stats.count -= 1;
            self.stats.removes += 1;
            self.cache.clear();
        }
        removed
    }

    /// Every entry whose filter matches the literal `subject`.
    pub fn matches(&mut self, subject: &[u8]) -> Rc<Match<T>> {
        self.stats.matches += 1;
        if let Some(hit) = self.cache.get(subject) {
            self.stats.cache_hits += 1;
            return hit.clone();
        }
        let mut result = Match::empty();
        with_tokens(subject, |tokens| collect(&self.root, tokens, &mut result));
        let result = Rc::new(result);
        if self.seen_before(subject) {
            if self.cache.len() >= CACHE_ENTRIES_MAX {
                self.cache.clear();
            }
            self.cache.insert(subject.into(), result.clone());
        }
        result
    }

    /// Whether `subject` missed the cache lately; remembers it when not.
    fn seen_before(&mut self, subject: &[u8]) -> bool {
        let hash = self.cache.hasher().hash_one(subject) | 1;
        let slot = &mut self.seen[(hash as usize) % SEEN_SLOTS];
        let seen = *slot == hash;
        *slot = hash;
        seen
    }

    /// Every entry, with its filter and queue (for monitoring).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], Option<&[u8]>, &T)) {
        let mut path = Vec::new();
        walk(&self.root, &mut path, &mut f);
    }
}

fn remove_in<T: PartialEq>(
    level: &mut Level<T>,
    tokens: &[&[u8]],
    queue: Option<&[u8]>,
    item: &T,
) -> bool {
    let (token, rest) = tokens.split_first().expect("filter is never empty");
    let node = match *token {
        b"*" => level.star.as_deref_mut(),
        b">" => level.gt.as_deref_mut(),
        t => level.literal.get_mut(t),
    };
    let Some(node) = node else { return false };
    let removed = if rest.is_empty() {
        remove_entry(node, queue, item)
    } else {
        match node.next.as_deref_mut() {
            Some(next) => {
                let removed = remove_in(next, rest, queue, item);
                if next.is_empty() {
                    node.next = None;
                }
                removed
            }
            None => false,
        }
    };
    if node.is_empty() {
        match *token {
            b"*" => level.star = None,
            b">" => level.gt = None,
            t => {
                level.literal.remove(t);
            }
        }
    }
    removed
}

fn remove_entry<T: PartialEq>(node: &mut Node<T>, queue: Option<&[u8]>, item: &T) -> bool {
    let list = match queue {
        None => &mut node.plain,
        Some(q) => match node.queues.iter_mut().find(|(name, _)| &**name == q) {
            Some((_, members)) => members,
            None => return false,
        },
    };
    let Some(at) = list.iter().position(|x| x == item) else {
        return false;
    };
    list.swap_remove(at);
    node.queues.retain(|(_, members)| !members.is_empty());
    true
}

/// Runs `f` on the tokens of `subject`, split without allocating when they are few.
fn with_tokens<R>(subject: &[u8], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let mut inline: [&[u8]; TOKENS_INLINE] = [&[]; TOKENS_INLINE];
    let mut count = 0;
    for token in subject.split(|b| *b == b'.') {
        if count == TOKENS_INLINE {
            let tokens: Vec<&[u8]> = subject.split(|b| *b == b'.').collect();
            return f(&tokens);
        }
        inline[count] = token;
        count += 1;
    }
    f(&inline[..count])
}

fn collect<T: Clone>(level: &Level<T>, tokens: &[&[u8]], out: &mut Match<T>) {
    let (token, rest) = tokens.split_first().expect("subject is never empty");
    if let Some(gt) = &level.gt {
        add_node(gt, out);
    }
    if let Some(star) = &level.star {
        descend(star, rest, out);
    }
    if let Some(node) = level.literal.get(*token) {
        descend(node, rest, out);
    }
}

fn descend<T: Clone>(node: &Node<T>, rest: &[&[u8]], out: &mut Match<T>) {
    if rest.is_empty() {
        add_node(node, out);
    } else if let Some(next) = &node.next {
        collect(next, rest, out);
    }
}

fn add_node<T: Clone>(node: &Node<T>, out: &mut Match<T>) {
    out.plain.extend(node.plain.iter().cloned());
    for (name, members) in &node.queues {
        match out.queues.iter_mut().find(|(n, _)| n == name) {
            Some((_, all)) => all.extend(members.iter().cloned()),
            None => out.queues.push((name.clone(), members.clone())),
        }
    }
}

fn walk<T>(level: &Level<T>, path: &mut Vec<u8>, f: &mut impl FnMut(&[u8], Option<&[u8]>, &T)) {
    let children = level
        .literal
        .iter()
        .map(|(t, n)| (&**t, n))
        .chain(level.star.as_deref().map(|n| (&b"*"[..], n)))
        .chain(level.gt.as_deref().map(|n| (&b">"[..], n)));
    for (token, node) in children {
        let len = path.len();
        if len > 0 {
            path.push(b'.');
        }
        path.extend_from_slice(token);
        node.plain.iter().for_each(|e| f(path, None, e));
        for (q, members) in &node.queues {
            members.iter().for_each(|e| f(path, Some(q), e));
        }
        if let Some(next) = &node.next {
            walk(next, path, f);
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(m: &Match<u32>) -> Vec<u32> {
        let mut v = m.plain.clone();
        v.sort();
        v
    }

    #[test]
    fn literal_and_wildcards() {
        let mut s = Sublist::new();
        s.insert(b"foo.bar", None, 1);
        s.insert(b"foo.*", None, 2);
        s.insert(b"foo.>", None, 3);
        s.insert(b">", None, 4);
        s.insert(b"*.bar", None, 5);
        assert_eq!(plain(&s.matches(b"foo.bar")), vec![1, 2, 3, 4, 5]);
        assert_eq!(plain(&s.matches(b"foo.baz")), vec![2, 3, 4]);
        assert_eq!(plain(&s.matches(b"foo.bar.baz")), vec![3, 4]);
        assert_eq!(plain(&s.matches(b"foo")), vec![4]);
        assert_eq!(s.stats().count, 5);
    }

    #[test]
    fn only_subjects_that_repeat_are_cached() {
        let mut s = Sublist::new();
        s.insert(b"_INBOX.x.*", None, 1);
        s.insert(b"orders", None, 2);
        assert_eq!(s.matches(b"orders").plain, vec![2]);
        assert_eq!(s.stats().cache_entries, 0, "seen once: not cached");
        assert_eq!(s.matches(b"orders").plain, vec![2]);
        assert_eq!(s.stats().cache_entries, 1, "seen twice: cached");
        for i in 0..2 * CACHE_ENTRIES_MAX {
            let reply = format!("_INBOX.x.{i}");
            assert_eq!(s.matches(reply.as_bytes()).plain, vec![1]);
        }
        assert_eq!(s.stats().cache_entries, 1, "unique replies never enter");
        let hits = s.stats().cache_hits;
        assert_eq!(s.matches(b"orders").plain, vec![2]);
        assert_eq!(s.stats().cache_hits, hits + 1, "nor push out what repeats");
    }

    #[test]
    fn long_subjects_match_like_short_ones() {
        let mut s = Sublist::new();
        let long: Vec<String> = (0..TOKENS_INLINE + 4).map(|i| format!("t{i}")).collect();
        let subject = long.join(".");
        s.insert(b"t0.>", None, 1);
        s.insert(subject.as_bytes(), None, 2);
        assert_eq!(s.matches(subject.as_bytes()).plain, vec![1, 2]);
    }

    #[test]
    fn remove_invalidates_cache_and_prunes() {
        let mut s = Sublist::new();
        s.insert(b"a.b.c", None, 1);
        assert_eq!(s.matches(b"a.b.c").plain, vec![1]);
        assert!(s.remove(b"a.b.c", None, &1));
        assert!(s.matches(b"a.b.c").is_empty());
        assert!(!s.remove(b"a.b.c", None, &1));
        assert!(s.root.is_empty());
    }

    #[test]
    fn queues_group_across_filters() {
        let mut s = Sublist::new();
        s.insert(b"q.x", Some(b"workers"), 1);
        s.insert(b"q.*", Some(b"workers"), 2);
        s.insert(b"q.x", Some(b"other"), 3);
        let m = s.matches(b"q.x");
        assert!(m.plain.is_empty());
        let mut names: Vec<_> = m
            .queues
            .iter()
            .map(|(n, v)| (n.to_vec(), v.len()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![(b"other".to_vec(), 1), (b"workers".to_vec(), 2)]
        );
        assert!(s.remove(b"q.*", Some(b"workers"), &2));
        assert_eq!(s.matches(b"q.x").queues.len(), 2);
    }

    #[test]
    fn for_each_lists_filters() {
        let mut s = Sublist::new();
        s.insert(b"a.*", None, 1);
        s.insert(b"a.b.>", Some(b"g"), 2);
        let mut seen = Vec::new();
        s.for_each(|f, q, e| seen.push((f.to_vec(), q.map(|q| q.to_vec()), *e)));
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (b"a.*".to_vec(), None, 1),
                (b"a.b.>".to_vec(), Some(b"g".to_vec()), 2)
            ]
        );
    }
}
