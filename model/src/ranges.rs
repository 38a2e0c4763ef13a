//! A set of disjoint half-open ranges `[start, end)` of bytes or blocks, kept merged.
//!
//! Populated memory, received pages, guest data and plugged blocks are tracked as ranges so
//! that cost grows with the number of runs, never with the size of memory.

use std::collections::BTreeMap;

/// Disjoint, merged half-open ranges keyed by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Number of disjoint runs.
    pub fn runs(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total bytes covered.
    pub fn total(&self) -> u64 {
        self.map.iter().map(|(s, e)| e - s).sum()
    }

    /// The runs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }

    /// The runs that intersect `[start, end)`, clipped to it, ascending.
    pub fn clipped(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        // The run that starts at or before `start` may reach into the range; any other starts inside.
        let end = end.max(start);
        let first = self.map.range(..=start).next_back().map_or(start, |(&s, _)| s);
        self.map.range(first..end).filter_map(move |(&s, &e)| {
            let (a, b) = (s.max(start), e.min(end));
            (a < b).then_some((a, b))
        })
    }

    /// The runs that intersect `[start, end)`, clipped to it.
    pub fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        self.clipped(start, end).collect()
    }

    /// The parts of `[start, end)` not covered, in ascending order.
    pub fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cur = start;
        for (s, e) in self.clipped(start, end) {
            if s > cur {
                out.push((cur, s));
            }
            cur = e;
        }
        if cur < end {
            out.push((cur, end));
        }
        out
    }

    /// Bytes of `[start, end)` that are covered.
    pub fn covered(&self, start: u64, end: u64) -> u64 {
        self.clipped(start, end).map(|(s, e)| e - s).sum()
    }

    /// True if all of `[start, end)` is covered.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        self.covered(start, end) == end.saturating_sub(start)
    }

    /// The lowest covered byte in `[start, end)`.
    pub fn first_covered(&self, start: u64, end: u64) -> Option<u64> {
        self.clipped(start, end).next().map(|(s, _)| s)
    }

    /// Adds `[start, end)`; returns how many bytes were newly covered.
    pub fn insert(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        // Ranges usually arrive in ascending order (pages, runs): extend or follow the last run.
        match self.map.last_key_value().map(|(&s, &e)| (s, e)) {
            Some((s, e)) if e == start => {
                self.map.insert(s, end);
                return end - start;
            }
            Some((_, e)) if e > start => {}
            _ => {
                self.map.insert(start, end);
                return end - start;
            }
        }
        let added = (end - start) - self.covered(start, end);
        let mut new_start = start;
        let mut new_end = end;
        // Merge with a run that starts before and touches `start`.
        if let Some((&s, &e)) = self.map.range(..=start).next_back() {
            if e >= start {
                new_start = s;
                new_end = new_end.max(e);
                self.map.remove(&s);
            }
        }
        let overlapping: Vec<u64> = self.map.range(new_start..=new_end).map(|(&s, _)| s).collect();
        for s in overlapping {
            let e = self.map.remove(&s).expect("key just listed");
            new_end = new_end.max(e);
        }
        self.map.insert(new_start, new_end);
        added
    }

    /// Removes `[start, end)`; returns how many bytes were covered before.
    pub fn remove(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let removed = self.covered(start, end);
        if removed == 0 {
            return 0;
        }
        let first = self.map.range(..=start).next_back().map(|(&s, _)| s).unwrap_or(start);
        let touched: Vec<(u64, u64)> = self.map.range(first..end).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in touched {
            if e <= start {
                continue;
            }
            self.map.remove(&s);
            if s < start {
                self.map.insert(s, start);
            }
            if e > end {
                self.map.insert(end, e);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removing the tail or the head of a run leaves one run, never an empty one beside it.
    #[test]
    fn remove_at_a_runs_edge_leaves_no_empty_run() {
        let mut r = RangeSet::new();
        r.insert(0, 10);
        assert_eq!(r.remove(5, 10), 5);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 5)]);
        assert_eq!(r.remove(0, 2), 2);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(2, 5)]);
        assert_eq!(r.runs(), 1);
    }

    #[test]
    fn insert_merges_and_counts_new_bytes() {
        let mut r = RangeSet::new();
        assert_eq!(r.insert(10, 20), 10);
        assert_eq!(r.insert(30, 40), 10);
        assert_eq!(r.insert(15, 35), 10);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(10, 40)]);
        assert_eq!(r.insert(40, 41), 1);
        assert_eq!(r.runs(), 1);
        assert_eq!(r.insert(0, 5), 5);
        assert_eq!(r.runs(), 2);
    }

    #[test]
    fn remove_splits_and_gaps_are_exact() {
        let mut r = RangeSet::new();
        r.insert(0, 100);
        assert_eq!(r.remove(10, 20), 10);
        assert_eq!(r.remove(10, 20), 0);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(0, 10), (20, 100)]);
        assert_eq!(r.gaps(5, 30), vec![(10, 20)]);
        assert_eq!(r.gaps(100, 120), vec![(100, 120)]);
        assert_eq!(r.first_covered(10, 50), Some(20));
        assert!(r.contains(20, 100));
        assert!(!r.contains(0, 100));
        assert_eq!(r.total(), 90);
    }

    proptest::proptest! {
        /// Every operation against a set of points over a small domain.
        #[test]
        fn ranges_behave_as_a_set_of_points(ops in proptest::collection::vec((proptest::bool::ANY, 0u64..64, 0u64..20), 1..40), probe in (0u64..70, 0u64..70)) {
            let mut r = RangeSet::new();
            let mut points = std::collections::BTreeSet::new();
            for (add, start, len) in ops {
                let range = start..start + len;
                let changed = range.clone().filter(|p| points.contains(p) != add).count() as u64;
                if add {
                    proptest::prop_assert_eq!(r.insert(range.start, range.end), changed);
                    points.extend(range);
                } else {
                    proptest::prop_assert_eq!(r.remove(range.start, range.end), changed);
                    range.for_each(|p| { points.remove(&p); });
                }
                let runs: Vec<(u64, u64)> = r.iter().collect();
                proptest::prop_assert!(runs.windows(2).all(|w| w[0].1 < w[1].0), "merged and ordered: {:?}", runs);
                proptest::prop_assert_eq!(r.total(), points.len() as u64);
            }
            let (a, b) = (probe.0.min(probe.1), probe.0.max(probe.1));
            let inside: Vec<u64> = (a..b).filter(|p| points.contains(p)).collect();
            proptest::prop_assert_eq!(r.covered(a, b), inside.len() as u64);
            proptest::prop_assert_eq!(r.contains(a, b), inside.len() as u64 == b - a);
            proptest::prop_assert_eq!(r.first_covered(a, b), inside.first().copied());
            let from_within: Vec<u64> = r.within(a, b).into_iter().flat_map(|(s, e)| s..e).collect();
            proptest::prop_assert_eq!(from_within, inside);
            let from_gaps: Vec<u64> = r.gaps(a, b).into_iter().flat_map(|(s, e)| s..e).collect();
            proptest::prop_assert_eq!(from_gaps, (a..b).filter(|p| !points.contains(p)).collect::<Vec<_>>());
        }
    }
}
