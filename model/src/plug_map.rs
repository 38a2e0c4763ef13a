//! A device's plug state: which blocks are plugged, the content of QEMU's `VirtIOMEM.bitmap`.
//!
//! QEMU keeps one bit per block. The model keeps the same set as runs, so that realizing,
//! migrating and comparing a 16 TiB region cost what its plugged runs cost, not what its
//! 8 Mi blocks would cost. The bit form ([`Bitmap`]) exists where QEMU's bytes do: in the stream.

use bitvec::field::BitField as _;
use bitvec::prelude::{BitSlice, BitVec, Lsb0};

use crate::ranges::RangeSet;
use crate::units::{BlockCount, BlockIndex};

/// The bitmap as the stream carries it: bit set = block plugged, 64-bit words, bit 0 first
/// (`vmstate_virtio_mem_device_early`'s `VMSTATE_BITMAP`).
pub type Bitmap = BitVec<u64, Lsb0>;

/// A maximal run of blocks in one state.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockRun {
    pub first: BlockIndex,
    pub count: BlockCount,
}

impl BlockRun {
    fn from_range((start, end): (u64, u64)) -> BlockRun {
        BlockRun { first: BlockIndex(start), count: BlockCount(end - start) }
    }

    fn end(self) -> u64 {
        self.first.0 + self.count.0
    }
}

/// The plugged blocks of a region of `len` blocks, as merged runs, with their count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlugMap {
    len: u64,
    plugged: RangeSet,
    count: u64,
}

impl PlugMap {
    /// Nothing plugged (`bitmap_new`).
    pub fn new(len: BlockCount) -> PlugMap {
        PlugMap { len: len.0, plugged: RangeSet::new(), count: 0 }
    }

    /// The number of blocks in the region (QEMU's `bitmap_size`).
    pub fn len(&self) -> BlockCount {
        BlockCount(self.len)
    }

    /// The number of plugged blocks (QEMU's `bitmap_count_one`).
    pub fn plugged_blocks(&self) -> BlockCount {
        BlockCount(self.count)
    }

    pub fn none_plugged(&self) -> bool {
        self.count == 0
    }

    /// True if every block of the run is in state `plugged` (`find_next_zero_bit` /
    /// `find_next_bit` over the range in `virtio_mem_is_range_plugged` / `_unplugged`).
    pub fn all(&self, run: BlockRun, plugged: bool) -> bool {
        self.check(run);
        let covered = self.plugged.covered(run.first.0, run.end());
        if plugged {
            covered == run.count.0
        } else {
            covered == 0
        }
    }

    /// The number of blocks of the run in state `plugged` (`count_ones` over a slice).
    pub fn count_in(&self, run: BlockRun, plugged: bool) -> BlockCount {
        self.check(run);
        let covered = self.plugged.covered(run.first.0, run.end());
        BlockCount(if plugged { covered } else { run.count.0 - covered })
    }

    /// Sets every block of the run to `plugged` (`bitmap_set` / `bitmap_clear`).
    pub fn set(&mut self, run: BlockRun, plugged: bool) {
        self.check(run);
        if plugged {
            self.count += self.plugged.insert(run.first.0, run.end());
        } else {
            self.count -= self.plugged.remove(run.first.0, run.end());
        }
    }

    /// Unplugs every block (`bitmap_clear(.., 0, bitmap_size)`).
    pub fn clear(&mut self) {
        self.plugged = RangeSet::new();
        self.count = 0;
    }

    /// Maximal runs of plugged blocks, ascending (`virtio_mem_for_each_plugged_range`).
    pub fn plugged_runs(&self) -> impl Iterator<Item = BlockRun> + '_ {
        self.plugged.iter().map(BlockRun::from_range)
    }

    /// Maximal runs of unplugged blocks, ascending (`virtio_mem_for_each_unplugged_range`).
    pub fn unplugged_runs(&self) -> Vec<BlockRun> {
        self.plugged.gaps(0, self.len).into_iter().map(BlockRun::from_range).collect()
    }

    /// The plug state a stream's bitmap describes; bits past `len` are ignored, as QEMU's
    /// bitmap functions ignore them.
    pub fn from_bitmap(bits: &BitSlice<u64, Lsb0>) -> PlugMap {
        let mut map = PlugMap::new(BlockCount(bits.len() as u64));
        for run in runs_of_ones(bits) {
            map.set(run, true);
        }
        map
    }

    /// The bitmap QEMU would send for this state.
    pub fn to_bitmap(&self) -> Bitmap {
        let len = usize::try_from(self.len).expect("realize bounds the bitmap to i32");
        let mut bits: Bitmap = BitVec::repeat(false, len);
        for run in self.plugged_runs() {
            bits[run.first.0 as usize..run.end() as usize].fill(true);
        }
        bits
    }

    fn check(&self, run: BlockRun) {
        let end = run.first.0.checked_add(run.count.0);
        assert!(end.is_some_and(|e| e <= self.len), "run {run:?} outside a plug map of {} blocks", self.len);
    }
}

/// Maximal runs of set bits, found a 64-bit word at a time: all-zero words are skipped whole
/// and all-one words continue a run whole, so a bitmap scans at memory speed.
fn runs_of_ones(bits: &BitSlice<u64, Lsb0>) -> Vec<BlockRun> {
    let len = bits.len();
    let mut out: Vec<BlockRun> = Vec::new();
    let mut start: Option<usize> = None;
    let mut close = |start: &mut Option<usize>, at: usize| {
        if let Some(s) = start.take() {
            out.push(BlockRun { first: BlockIndex(s as u64), count: BlockCount((at - s) as u64) });
        }
    };
    for (wi, chunk) in bits.chunks(64).enumerate() {
        let base = wi * 64;
        let n = chunk.len();
        // `load_le` reads only the chunk's own bits: storage past the length never shows.
        let w: u64 = chunk.load_le();
        let valid = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        if w == 0 {
            close(&mut start, base);
            continue;
        }
        if w == valid && start.is_some() {
            continue;
        }
        let mut i = 0;
        while i < n {
            let rest = w >> i;
            if start.is_none() {
                if rest == 0 {
                    break;
                }
                i += rest.trailing_zeros() as usize;
                start = Some(base + i);
            } else {
                let ones = (!rest).trailing_zeros() as usize;
                i += ones;
                if i >= n {
                    break;
                }
                close(&mut start, base + i);
            }
        }
    }
    close(&mut start, len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: u64, count: u64) -> BlockRun {
        BlockRun { first: BlockIndex(first), count: BlockCount(count) }
    }

    #[test]
    fn length_and_emptiness() {
        let mut m = PlugMap::new(BlockCount(7));
        assert_eq!(m.len(), BlockCount(7));
        assert!(m.none_plugged());
        m.set(run(2, 3), true);
        assert!(!m.none_plugged());
        assert_eq!(m.plugged_blocks(), BlockCount(3));
    }

    /// The word-wise scan against a bit-by-bit one, on patterns that cross word edges.
    #[test]
    fn from_bitmap_matches_a_bit_by_bit_scan() {
        let slow = |bits: &Bitmap, value: bool| {
            let mut out = Vec::new();
            let mut i = 0;
            while i < bits.len() {
                if bits[i] == value {
                    let s = i;
                    while i < bits.len() && bits[i] == value {
                        i += 1;
                    }
                    out.push(run(s as u64, (i - s) as u64));
                } else {
                    i += 1;
                }
            }
            out
        };
        let mut x: u64 = 88172645463325252;
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 300, 1000] {
            for density in [0u64, 1, 2, 8, 64] {
                let mut bits: Bitmap = BitVec::repeat(false, len);
                for i in 0..len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Long runs: flip with probability 1/density.
                    let flip = density != 0 && x % density == 0;
                    let prev = i > 0 && bits[i - 1];
                    bits.set(i, if density == 64 { true } else { prev ^ flip });
                }
                let map = PlugMap::from_bitmap(&bits);
                assert_eq!(map.plugged_runs().collect::<Vec<_>>(), slow(&bits, true), "len {len} density {density}");
                assert_eq!(map.unplugged_runs(), slow(&bits, false), "len {len} density {density}");
                assert_eq!(map.plugged_blocks().0, bits.count_ones() as u64);
                assert_eq!(map.to_bitmap(), bits, "len {len} density {density}");
            }
        }
    }

    #[test]
    fn set_counts_only_blocks_that_change() {
        let mut m = PlugMap::new(BlockCount(100));
        m.set(run(10, 10), true);
        m.set(run(15, 10), true);
        assert_eq!(m.plugged_blocks(), BlockCount(15));
        assert!(m.all(run(10, 15), true));
        assert!(!m.all(run(9, 2), true));
        assert!(!m.all(run(9, 2), false));
        assert!(m.all(run(25, 75), false));
        m.set(run(12, 2), false);
        assert_eq!(m.plugged_blocks(), BlockCount(13));
        assert_eq!(m.plugged_runs().collect::<Vec<_>>(), vec![run(10, 2), run(14, 11)]);
        assert_eq!(m.unplugged_runs(), vec![run(0, 10), run(12, 2), run(25, 75)]);
        assert_eq!((m.count_in(run(8, 8), true), m.count_in(run(8, 8), false)), (BlockCount(4), BlockCount(4)));
        m.clear();
        assert!(m.none_plugged());
        assert_eq!(m.unplugged_runs(), vec![run(0, 100)]);
    }

    #[test]
    fn bits_past_the_length_are_ignored() {
        let mut bits = Bitmap::from_vec(vec![u64::MAX]);
        bits.truncate(3);
        assert_eq!(bits.as_raw_slice()[0], u64::MAX, "the storage still holds the stale bits");
        let m = PlugMap::from_bitmap(&bits);
        assert_eq!(m.plugged_runs().collect::<Vec<_>>(), vec![run(0, 3)]);
        assert_eq!(m.to_bitmap(), bits);
    }

    #[test]
    #[should_panic(expected = "outside a plug map")]
    fn a_run_past_the_end_is_a_bug() {
        PlugMap::new(BlockCount(4)).set(run(3, 2), true);
    }
}
