//! An order-statistic multiset of `f64` (a treap in an arena), so that
//! `min`, `max` and nearest-rank percentiles of a window's numeric field
//! stay exact and cost O(log n) whichever events expire or arrive late.
//! It knows nothing about events or fields; `window::fields` feeds it.

use std::cmp::Ordering;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    key: f64,
    /// How many times `key` is in the set.
    count: u32,
    /// Sum of `count` over this subtree.
    size: u32,
    prio: u32,
    left: u32,
    right: u32,
}

/// A multiset of floats ordered by `f64::total_cmp`.
#[derive(Debug, Clone)]
pub(crate) struct OrderStats {
    nodes: Vec<Node>,
    /// Head of the list of freed nodes, chained through `left`.
    free: u32,
    root: u32,
    /// xorshift state for priorities; a fixed seed keeps runs reproducible.
    seed: u32,
}

impl Default for OrderStats {
    fn default() -> Self {
        OrderStats {
            nodes: Vec::new(),
            free: NIL,
            root: NIL,
            seed: 0x9E37_79B9,
        }
    }
}

impl OrderStats {
    /// Number of values, counting repeats.
    pub(crate) fn len(&self) -> usize {
        self.size(self.root) as usize
    }

    pub(crate) fn insert(&mut self, key: f64) {
        if self.find(key).is_some() {
            let mut cur = self.root;
            loop {
                let n = &mut self.nodes[cur as usize];
                n.size += 1;
                match key.total_cmp(&n.key) {
                    Ordering::Equal => {
                        n.count += 1;
                        return;
                    }
                    Ordering::Less => cur = n.left,
                    Ordering::Greater => cur = n.right,
                }
            }
        }
        let node = self.alloc(key);
        let (l, r) = self.split(self.root, key, false);
        let l = self.merge(l, node);
        self.root = self.merge(l, r);
    }

    /// Removes one occurrence of `key`; false when it was not there.
    pub(crate) fn remove(&mut self, key: f64) -> bool {
        let Some(found) = self.find(key) else {
            return false;
        };
        if self.nodes[found as usize].count > 1 {
            let mut cur = self.root;
            loop {
                let n = &mut self.nodes[cur as usize];
                n.size -= 1;
                match key.total_cmp(&n.key) {
                    Ordering::Equal => {
                        n.count -= 1;
                        return true;
                    }
                    Ordering::Less => cur = n.left,
                    Ordering::Greater => cur = n.right,
                }
            }
        }
        let (l, r) = self.split(self.root, key, false);
        let (m, r) = self.split(r, key, true);
        self.release(m);
        self.root = self.merge(l, r);
        true
    }

    pub(crate) fn min(&self) -> Option<f64> {
        let mut cur = self.root;
        let mut best = None;
        while cur != NIL {
            best = Some(self.nodes[cur as usize].key);
            cur = self.nodes[cur as usize].left;
        }
        best
    }

    pub(crate) fn max(&self) -> Option<f64> {
        let mut cur = self.root;
        let mut best = None;
        while cur != NIL {
            best = Some(self.nodes[cur as usize].key);
            cur = self.nodes[cur as usize].right;
        }
        best
    }

    /// The value at 0-based position `k` in ascending order.
    pub(crate) fn kth(&self, mut k: usize) -> Option<f64> {
        let mut cur = self.root;
        while cur != NIL {
            let n = &self.nodes[cur as usize];
            let left = self.size(n.left) as usize;
            if k < left {
                cur = n.left;
            } else if k < left + n.count as usize {
                return Some(n.key);
            } else {
                k -= left + n.count as usize;
                cur = n.right;
            }
        }
        None
    }

    fn find(&self, key: f64) -> Option<u32> {
        let mut cur = self.root;
        while cur != NIL {
            let n = &self.nodes[cur as usize];
            match key.total_cmp(&n.key) {
                Ordering::Equal => return Some(cur),
                Ordering::Less => cur = n.left,
                Ordering::Greater => cur = n.right,
            }
        }
        None
    }

    fn size(&self, n: u32) -> u32 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size
        }
    }

    fn update(&mut self, n: u32) {
        let (l, r) = (self.nodes[n as usize].left, self.nodes[n as usize].right);
        let size = self.nodes[n as usize].count + self.size(l) + self.size(r);
        self.nodes[n as usize].size = size;
    }

    /// Splits `n` into keys before `key` and the rest; with `inclusive`,
    /// keys equal to `key` go left too.
    fn split(&mut self, n: u32, key: f64, inclusive: bool) -> (u32, u32) {
        if n == NIL {
            return (NIL, NIL);
        }
        let ord = self.nodes[n as usize].key.total_cmp(&key);
        let goes_left = ord == Ordering::Less || (inclusive && ord == Ordering::Equal);
        if goes_left {
            let (l, r) = self.split(self.nodes[n as usize].right, key, inclusive);
            self.nodes[n as usize].right = l;
            self.update(n);
            (n, r)
        } else {
            let (l, r) = self.split(self.nodes[n as usize].left, key, inclusive);
            self.nodes[n as usize].left = r;
            self.update(n);
            (l, n)
        }
    }

    /// Joins two treaps where every key of `a` is below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio >= self.nodes[b as usize].prio {
            let right = self.merge(self.nodes[a as usize].right, b);
            self.nodes[a as usize].right = right;
            self.update(a);
            a
        } else {
            let left = self.merge(a, self.nodes[b as usize].left);
            self.nodes[b as usize].left = left;
            self.update(b);
            b
        }
    }

    fn alloc(&mut self, key: f64) -> u32 {
        // xorshift32: cheap, and good enough to keep the treap balanced.
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.seed = x;
        let node = Node {
            key,
            count: 1,
            size: 1,
            prio: x,
            left: NIL,
            right: NIL,
        };
        if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].left;
            self.nodes[i as usize] = node;
            i
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    fn release(&mut self, n: u32) {
        if n == NIL {
            return;
        }
        self.nodes[n as usize].left = self.free;
        self.free = n;
    }
}

/// The 1-based nearest rank of percentile `p` (clamped to 0..=100) among
/// `n` values: `ceil(p / 100 * n)`, at least 1.
pub(crate) fn nearest_rank(p: f64, n: usize) -> usize {
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    let rank = (p * n as f64 / 100.0).ceil() as usize;
    rank.clamp(1, n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiset_order_and_ranks() {
        let mut s = OrderStats::default();
        for v in [5.0, 1.0, 3.0, 3.0, 9.0, -2.0] {
            s.insert(v);
        }
        assert_eq!(s.len(), 6);
        assert_eq!(s.min(), Some(-2.0));
        assert_eq!(s.max(), Some(9.0));
        let sorted: Vec<f64> = (0..6).filter_map(|k| s.kth(k)).collect();
        assert_eq!(sorted, vec![-2.0, 1.0, 3.0, 3.0, 5.0, 9.0]);
        assert!(s.remove(3.0));
        assert!(s.remove(9.0));
        assert!(!s.remove(42.0));
        assert_eq!(s.len(), 4);
        assert_eq!(s.max(), Some(5.0));
        assert_eq!(s.kth(2), Some(3.0));
        for v in [-2.0, 1.0, 3.0, 5.0] {
            assert!(s.remove(v));
        }
        assert_eq!(s.len(), 0);
        assert_eq!(s.min(), None);
        // Freed nodes are reused rather than growing the arena.
        s.insert(7.0);
        assert!(s.nodes.len() <= 6);
    }

    #[test]
    fn nearest_rank_matches_definition() {
        assert_eq!(nearest_rank(0.0, 10), 1);
        assert_eq!(nearest_rank(50.0, 10), 5);
        assert_eq!(nearest_rank(95.0, 20), 19);
        assert_eq!(nearest_rank(99.0, 10), 10);
        assert_eq!(nearest_rank(100.0, 10), 10);
        assert_eq!(nearest_rank(250.0, 4), 4);
    }
}
