//! Topics and topic patterns: dot-separated hierarchical names such as
//! `research.papers.nlp`. In a pattern the segment `*` matches exactly one
//! segment and `#` matches zero or more, anywhere and any number of times.
//!
//! Matching is a simulation over segments (a set of live states per topic
//! segment), never backtracking, so `#.#.#...` costs O(pattern × topic) and a
//! `TopicIndex` costs O(topic segments × live trie nodes).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Longest topic or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 1024;
/// Most segments in a topic or pattern.
pub const MAX_SEGMENTS: usize = 64;

const SEPARATOR: u8 = b'.';

/// Why a topic or pattern is refused; `errors::topic` gives the reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    Empty,
    TooLong,
    TooManySegments,
    EmptySegment,
    NotUtf8,
    WildcardInTopic,
    PartialWildcard,
}

/// Checks a topic (a name messages are published to). A topic uses the pattern
/// syntax without wildcards; `*` and `#` are refused even inside a segment, so
/// every valid topic is also a literal pattern that matches exactly itself.
pub fn validate_topic(topic: &[u8]) -> Result<(), TopicError> {
    parse_segments(topic, false).map(|_| ())
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Segment {
    Literal(Vec<u8>),
    /// `*`: exactly one segment.
    Star,
    /// `#`: zero or more segments.
    Hash,
}

/// Errors are checked in a fixed order: empty, too long, not UTF-8, too many
/// segments, then segment by segment from the left.
fn parse_segments(bytes: &[u8], allow_wildcards: bool) -> Result<Vec<Segment>, TopicError> {
    if bytes.is_empty() {
        return Err(TopicError::Empty);
    }
    if bytes.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(TopicError::NotUtf8);
    }
    if bytes.iter().filter(|&&b| b == SEPARATOR).count() >= MAX_SEGMENTS {
        return Err(TopicError::TooManySegments);
    }
    let mut segments = Vec::new();
    for seg in bytes.split(|&b| b == SEPARATOR) {
        let segment = match seg {
            [] => return Err(TopicError::EmptySegment),
            b"*" | b"#" if !allow_wildcards => return Err(TopicError::WildcardInTopic),
            b"*" => Segment::Star,
            b"#" => Segment::Hash,
            _ if seg.iter().any(|&b| b == b'*' || b == b'#') => return Err(TopicError::PartialWildcard),
            _ => Segment::Literal(seg.to_vec()),
        };
        segments.push(segment);
    }
    Ok(segments)
}

fn topic_segments(topic: &[u8]) -> impl Iterator<Item = &[u8]> {
    topic.split(|&b| b == SEPARATOR)
}

/// A parsed subscription pattern. Ordering and equality follow the original bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPattern {
    bytes: Vec<u8>,
    segments: Vec<Segment>,
}

impl TopicPattern {
    pub fn parse(pattern: &[u8]) -> Result<TopicPattern, TopicError> {
        let segments = parse_segments(pattern, true)?;
        Ok(TopicPattern { bytes: pattern.to_vec(), segments })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the pattern has no `*` or `#` segment.
    pub fn is_literal(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `topic` (assumed valid; an invalid one gives some answer, never a
    /// panic) matches. `live[i]` says "the first i pattern segments can have
    /// consumed the topic so far"; a `#` at i lets i+1 be live too (zero
    /// segments) and keeps i live across a segment (one more).
    pub fn matches(&self, topic: &[u8]) -> bool {
        let segs = &self.segments;
        let mut live = vec![false; segs.len() + 1];
        let mut next = vec![false; segs.len() + 1];
        live[0] = true;
        close_over_hash(segs, &mut live);
        for word in topic_segments(topic) {
            next.iter_mut().for_each(|n| *n = false);
            let mut any = false;
            for (i, seg) in segs.iter().enumerate() {
                if !live[i] {
                    continue;
                }
                match seg {
                    Segment::Hash => next[i] = true,
                    Segment::Star => next[i + 1] = true,
                    Segment::Literal(lit) if lit.as_slice() == word => next[i + 1] = true,
                    Segment::Literal(_) => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut live, &mut next);
            close_over_hash(segs, &mut live);
        }
        live[segs.len()]
    }
}

/// Adds the states reachable by letting each live `#` match zero segments.
fn close_over_hash(segs: &[Segment], live: &mut [bool]) {
    for (i, seg) in segs.iter().enumerate() {
        if live[i] && *seg == Segment::Hash {
            live[i + 1] = true;
        }
    }
}

#[derive(Debug, Clone)]
struct Node<S: Ord + Clone> {
    children: BTreeMap<Vec<u8>, Node<S>>,
    star: Option<Box<Node<S>>>,
    /// The node after a `#` segment. Once live, it stays live for any number of
    /// further topic segments: that is the `#` absorbing them.
    hash: Option<Box<Node<S>>>,
    /// Subscribers whose pattern ends at this node.
    subscribers: BTreeSet<S>,
}

impl<S: Ord + Clone> Node<S> {
    fn new() -> Self {
        Node { children: BTreeMap::new(), star: None, hash: None, subscribers: BTreeSet::new() }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.star.is_none() && self.hash.is_none() && self.subscribers.is_empty()
    }

    /// Removes `subscriber` from the node at the end of `segs`, pruning nodes
    /// left empty on the way back. Depth is bounded by `MAX_SEGMENTS`.
    fn remove(&mut self, segs: &[Segment], subscriber: &S) -> bool {
        let Some((first, rest)) = segs.split_first() else {
            return self.subscribers.remove(subscriber);
        };
        match first {
            Segment::Literal(lit) => {
                let Some(child) = self.children.get_mut(lit) else {
                    return false;
                };
                let removed = child.remove(rest, subscriber);
                if child.is_empty() {
                    self.children.remove(lit);
                }
                removed
            }
            Segment::Star => Self::remove_boxed(&mut self.star, rest, subscriber),
            Segment::Hash => Self::remove_boxed(&mut self.hash, rest, subscriber),
        }
    }

    fn remove_boxed(slot: &mut Option<Box<Node<S>>>, segs: &[Segment], subscriber: &S) -> bool {
        let Some(child) = slot.as_mut() else {
            return false;
        };
        let removed = child.remove(segs, subscriber);
        if child.is_empty() {
            *slot = None;
        }
        removed
    }

    #[cfg(test)]
    fn count_nodes(&self) -> usize {
        1 + self.children.values().map(Node::count_nodes).sum::<usize>()
            + self.star.as_ref().map_or(0, |n| n.count_nodes())
            + self.hash.as_ref().map_or(0, |n| n.count_nodes())
    }
}

/// Trie over pattern segments: which subscribers have a pattern matching a topic.
#[derive(Debug, Clone)]
pub struct TopicIndex<S: Ord + Clone> {
    root: Node<S>,
    len: usize,
}

impl<S: Ord + Clone> Default for TopicIndex<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Ord + Clone> TopicIndex<S> {
    pub fn new() -> Self {
        TopicIndex { root: Node::new(), len: 0 }
    }

    /// Adds the pair; false if it was already there.
    pub fn insert(&mut self, pattern: &TopicPattern, subscriber: S) -> bool {
        let mut node = &mut self.root;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Literal(lit) => node.children.entry(lit.clone()).or_insert_with(Node::new),
                Segment::Star => node.star.get_or_insert_with(|| Box::new(Node::new())),
                Segment::Hash => node.hash.get_or_insert_with(|| Box::new(Node::new())),
            };
        }
        let added = node.subscribers.insert(subscriber);
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes the pair and any node it leaves empty; false if it was not there.
    pub fn remove(&mut self, pattern: &TopicPattern, subscriber: &S) -> bool {
        let removed = self.root.remove(&pattern.segments, subscriber);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Every subscriber with at least one pattern matching `topic` (assumed
    /// valid; an invalid one gives some answer, never a panic). Walks only the
    /// trie nodes the topic can reach, one step per topic segment, each live
    /// node kept once per step.
    pub fn matches(&self, topic: &[u8]) -> BTreeSet<S> {
        self.matching(topic).into_iter().cloned().collect()
    }

    /// What `matches` gives, lent in order without copies: one publish to many
    /// subscribers allocates one list of references, not a set of their names.
    pub fn matching(&self, topic: &[u8]) -> Vec<&S> {
        let mut live = Live::default();
        live.add(&self.root, false);
        for word in topic_segments(topic) {
            let mut next = Live::default();
            for &node in &live.nodes {
                if let Some(child) = node.children.get(word) {
                    next.add(child, false);
                }
                if let Some(star) = &node.star {
                    next.add(star, false);
                }
            }
            // A `#` node that was live absorbs this segment too.
            for &node in &live.hash_nodes {
                next.add(node, true);
            }
            if next.nodes.is_empty() {
                return Vec::new();
            }
            live = next;
        }
        let mut out: Vec<&S> = live.nodes.iter().flat_map(|node| node.subscribers.iter()).collect();
        // One node's set is in order already; several may overlap.
        if live.nodes.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// Number of (pattern, subscriber) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The live trie nodes after some topic segments, each once (by address).
struct Live<'a, S: Ord + Clone> {
    nodes: Vec<&'a Node<S>>,
    /// The live nodes that were reached through a `#` edge.
    hash_nodes: Vec<&'a Node<S>>,
    seen: HashSet<*const Node<S>>,
}

impl<S: Ord + Clone> Default for Live<'_, S> {
    fn default() -> Self {
        Live { nodes: Vec::new(), hash_nodes: Vec::new(), seen: HashSet::new() }
    }
}

impl<'a, S: Ord + Clone> Live<'a, S> {
    /// Adds `node` and, since a `#` may match zero segments, its chain of `#`
    /// children. Iterative, and stops at a node already live.
    /// `via_hash` says whether `node` itself hangs off a `#` edge.
    fn add(&mut self, node: &'a Node<S>, via_hash: bool) {
        let mut current = Some(node);
        let mut via_hash = via_hash;
        while let Some(node) = current {
            if !self.seen.insert(node as *const Node<S>) {
                return;
            }
            self.nodes.push(node);
            if via_hash {
                self.hash_nodes.push(node);
            }
            current = node.hash.as_deref();
            via_hash = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> TopicPattern {
        TopicPattern::parse(p.as_bytes()).unwrap()
    }

    #[test]
    fn pattern_matching_table() {
        let table: &[(&str, &[&str], &[&str])] = &[
            ("a.*.c", &["a.b.c", "a.x.c"], &["a.c", "a.b.b.c", "a.b.d", "b.b.c", "a.b.c.d"]),
            ("a.#", &["a", "a.b", "a.b.c"], &["b", "b.a", "ab"]),
            ("#.c", &["c", "a.c", "a.b.c"], &["a", "c.a", "a.b"]),
            ("a.#.c", &["a.c", "a.b.c", "a.b.d.c", "a.c.c"], &["a.b.d", "a", "c", "b.a.c", "a.c.d"]),
            ("#", &["x", "x.y", "a.b.c.d.e"], &[]),
            ("*", &["x", "abc"], &["x.y", "a.b.c"]),
            ("*.#", &["x", "x.y", "x.y.z"], &[]),
            ("#.*", &["x", "x.y"], &[]),
            ("research.papers.*", &["research.papers.nlp"], &["research.papers", "research.papers.nlp.x"]),
            ("research.papers.nlp", &["research.papers.nlp"], &["research.papers", "research.papers.cv"]),
            ("a.#.b.#.c", &["a.b.c", "a.x.b.y.z.c", "a.b.b.c"], &["a.c", "a.b", "a.x.c"]),
            ("#.a.#", &["a", "x.a", "a.x", "x.a.y", "a.a"], &["x", "x.y"]),
            ("#.#", &["x", "x.y.z"], &[]),
            ("*.*", &["x.y"], &["x", "x.y.z"]),
            ("a.*.#", &["a.b", "a.b.c"], &["a", "b.c"]),
            ("#.*.c", &["x.c", "a.b.c"], &["c", "a.b"]),
            ("*.#.*", &["a.b", "a.b.c.d"], &["a"]),
            ("é.*", &["é.ü"], &["e.u"]),
        ];
        for (p, yes, no) in table {
            let pattern = pat(p);
            for t in *yes {
                assert!(pattern.matches(t.as_bytes()), "{p} should match {t}");
            }
            for t in *no {
                assert!(!pattern.matches(t.as_bytes()), "{p} should not match {t}");
            }
            // The index agrees with the pattern on the same cases.
            let mut index = TopicIndex::new();
            index.insert(&pattern, 1u32);
            for t in *yes {
                assert_eq!(index.matches(t.as_bytes()), BTreeSet::from([1]), "index: {p} vs {t}");
            }
            for t in *no {
                assert!(index.matches(t.as_bytes()).is_empty(), "index: {p} vs {t}");
            }
        }
    }

    #[test]
    fn hash_alone_matches_every_valid_topic_shape() {
        let p = pat("#");
        let long = vec!["s"; MAX_SEGMENTS].join(".");
        assert!(p.matches(long.as_bytes()));
        assert!(p.matches(b"only"));
    }

    #[test]
    fn validation_errors() {
        let long = vec![b'a'; MAX_TOPIC_LEN + 1];
        let max = vec![b'a'; MAX_TOPIC_LEN];
        let many = vec!["a"; MAX_SEGMENTS + 1].join(".");
        let most = vec!["a"; MAX_SEGMENTS].join(".");
        assert_eq!(validate_topic(b""), Err(TopicError::Empty));
        assert_eq!(validate_topic(&long), Err(TopicError::TooLong));
        assert_eq!(validate_topic(&max), Ok(()));
        assert_eq!(validate_topic(many.as_bytes()), Err(TopicError::TooManySegments));
        assert_eq!(validate_topic(most.as_bytes()), Ok(()));
        for bad in [&b"."[..], b"a..b", b".a", b"a."] {
            assert_eq!(validate_topic(bad), Err(TopicError::EmptySegment), "{bad:?}");
            assert_eq!(TopicPattern::parse(bad), Err(TopicError::EmptySegment), "{bad:?}");
        }
        assert_eq!(validate_topic(b"a.\xff"), Err(TopicError::NotUtf8));
        assert_eq!(TopicPattern::parse(b"\xc3"), Err(TopicError::NotUtf8));
        for bad in [&b"*"[..], b"#", b"a.*", b"#.a", b"a.#.b"] {
            assert_eq!(validate_topic(bad), Err(TopicError::WildcardInTopic), "{bad:?}");
            assert!(TopicPattern::parse(bad).is_ok(), "{bad:?}");
        }
        for bad in [&b"ab*"[..], b"#x", b"a.b*c", b"**", b"##", b"*#", b"a.#b.c"] {
            assert_eq!(validate_topic(bad), Err(TopicError::PartialWildcard), "{bad:?}");
            assert_eq!(TopicPattern::parse(bad), Err(TopicError::PartialWildcard), "{bad:?}");
        }
        assert_eq!(TopicPattern::parse(b""), Err(TopicError::Empty));
        assert_eq!(TopicPattern::parse(&long), Err(TopicError::TooLong));
        assert_eq!(TopicPattern::parse(many.as_bytes()), Err(TopicError::TooManySegments));
        assert_eq!(validate_topic("research.papers.nlp".as_bytes()), Ok(()));
        assert_eq!(validate_topic("café.menü".as_bytes()), Ok(()));
    }

    #[test]
    fn pattern_accessors() {
        let p = pat("a.*.c");
        assert_eq!(p.as_bytes(), b"a.*.c");
        assert!(!p.is_literal());
        assert!(!pat("#").is_literal());
        assert!(pat("a.b.c").is_literal());
        assert!(pat("a.b") < pat("a.c"));
        assert_eq!(pat("a.#"), pat("a.#"));
    }

    #[test]
    fn many_hashes_against_a_long_topic_completes() {
        let hashes = vec!["#"; MAX_SEGMENTS].join(".");
        let p = pat(&hashes);
        let topic = vec!["t"; MAX_SEGMENTS].join(".");
        assert!(p.matches(topic.as_bytes()));
        let mut stars_then_miss = vec!["#"; MAX_SEGMENTS - 1];
        stars_then_miss.push("nope");
        let miss = pat(&stars_then_miss.join("."));
        assert!(!miss.matches(topic.as_bytes()));

        let mut index = TopicIndex::new();
        index.insert(&p, 1u8);
        index.insert(&miss, 2u8);
        // Every prefix of the `#` chain is also a pattern: many overlapping live nodes.
        for n in 1..MAX_SEGMENTS {
            index.insert(&pat(&vec!["#"; n].join(".")), 3u8);
        }
        assert_eq!(index.matches(topic.as_bytes()), BTreeSet::from([1, 3]));
    }

    #[test]
    fn index_basics() {
        let mut index: TopicIndex<&str> = TopicIndex::default();
        assert!(index.is_empty());
        assert!(index.insert(&pat("a.*"), "x"));
        assert!(!index.insert(&pat("a.*"), "x"));
        assert!(index.insert(&pat("a.*"), "y"));
        assert!(index.insert(&pat("a.b"), "x"));
        assert!(index.insert(&pat("#"), "z"));
        assert_eq!(index.len(), 4);
        assert_eq!(index.matches(b"a.b"), BTreeSet::from(["x", "y", "z"]));
        assert_eq!(index.matches(b"a.c"), BTreeSet::from(["x", "y", "z"]));
        assert_eq!(index.matches(b"a"), BTreeSet::from(["z"]));
        assert!(!index.remove(&pat("a.c"), &"x"));
        assert!(!index.remove(&pat("a.*"), &"z"));
        assert!(index.remove(&pat("a.*"), &"x"));
        assert!(!index.remove(&pat("a.*"), &"x"));
        assert_eq!(index.len(), 3);
        assert_eq!(index.matches(b"a.c"), BTreeSet::from(["y", "z"]));
        assert_eq!(index.matches(b"a.b"), BTreeSet::from(["x", "y", "z"]));
    }

    use crate::core::xorshift::XorShift;

    fn random_name(rng: &mut XorShift, alphabet: &[&str], max_segs: usize) -> String {
        let n = 1 + rng.index(max_segs);
        (0..n).map(|_| alphabet[rng.index(alphabet.len())]).collect::<Vec<_>>().join(".")
    }

    #[test]
    fn index_agrees_with_brute_force() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _round in 0..60 {
            let mut index = TopicIndex::new();
            let mut model: BTreeSet<(TopicPattern, u8)> = BTreeSet::new();
            let inserts = 1 + rng.index(25);
            for _ in 0..inserts {
                let p = pat(&random_name(&mut rng, &["a", "b", "c", "*", "#"], 5));
                let s = rng.index(6) as u8;
                assert_eq!(index.insert(&p, s), model.insert((p, s)));
            }
            // Remove some, including pairs that were never there.
            for _ in 0..rng.index(10) {
                let p = pat(&random_name(&mut rng, &["a", "b", "*", "#"], 3));
                let s = rng.index(6) as u8;
                assert_eq!(index.remove(&p, &s), model.remove(&(p, s)));
            }
            if let Some(pair) = model.iter().next().cloned() {
                assert!(index.remove(&pair.0, &pair.1));
                model.remove(&pair);
            }
            assert_eq!(index.len(), model.len());
            for _ in 0..40 {
                let topic = random_name(&mut rng, &["a", "b", "c", "d"], 6);
                let expected: BTreeSet<u8> =
                    model.iter().filter(|(p, _)| p.matches(topic.as_bytes())).map(|(_, s)| *s).collect();
                assert_eq!(index.matches(topic.as_bytes()), expected, "topic {topic}");
            }
            // Removing everything leaves no node behind.
            for (p, s) in std::mem::take(&mut model) {
                assert!(index.remove(&p, &s));
            }
            assert!(index.is_empty());
            assert_eq!(index.len(), 0);
            assert!(index.root.is_empty());
            assert_eq!(index.root.count_nodes(), 1, "only the root is left");
        }
    }

    #[test]
    fn pattern_matches_agrees_with_naive_backtracking() {
        // A tiny exponential reference, fine on short inputs.
        fn naive(p: &[Segment], t: &[&[u8]]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((Segment::Hash, rest)) => (0..=t.len()).any(|k| naive(rest, &t[k..])),
                Some((Segment::Star, rest)) => !t.is_empty() && naive(rest, &t[1..]),
                Some((Segment::Literal(l), rest)) => t.first() == Some(&l.as_slice()) && naive(rest, &t[1..]),
            }
        }
        let mut rng = XorShift(12345);
        for _ in 0..3000 {
            let p = pat(&random_name(&mut rng, &["a", "b", "*", "#"], 6));
            let topic = random_name(&mut rng, &["a", "b", "c"], 6);
            let words: Vec<&[u8]> = topic_segments(topic.as_bytes()).collect();
            assert_eq!(p.matches(topic.as_bytes()), naive(&p.segments, &words), "{p:?} vs {topic}");
        }
    }

    #[test]
    fn invalid_topics_do_not_panic() {
        let mut index = TopicIndex::new();
        index.insert(&pat("#"), 1u8);
        index.insert(&pat("a.*"), 2u8);
        for t in [&b""[..], b".", b"a..", b"\xff.\xfe", b"a.*"] {
            let _ = pat("a.#").matches(t);
            let _ = index.matches(t);
        }
    }
}
