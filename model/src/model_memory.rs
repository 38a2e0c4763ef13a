//! The model's implementation of [`HostMemory`]: populated ranges per RAM block and a capacity
//! per pool (huge page pool, file-system quota, or unlimited).

use crate::backend::{Backend, BackendKind, Capacity, DiscardMethod};
use crate::host::{Errno, HostError, HostMemory, PageKind, RamBlockId, Sigbus};
use crate::memdev::LimitId;
use crate::ranges::RangeSet;
use crate::units::Bytes;

/// A pool of memory that RAM blocks draw from: one hugetlbfs mount's quota, the huge page
/// pool, one tmpfs mount's quota, or unlimited memory.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub usize);

#[derive(Clone, Debug)]
struct Pool {
    capacity: Capacity,
    used: u64,
}

impl Pool {
    fn free(&self) -> u64 {
        match self.capacity {
            Capacity::Unlimited => u64::MAX,
            Capacity::Limited(b) => b.0.saturating_sub(self.used),
        }
    }
}

#[derive(Clone, Debug)]
struct Block {
    name: String,
    kind: BackendKind,
    page_size: u64,
    len: u64,
    /// The pools each page is charged to: every entry must have room; within an entry, a
    /// page takes from the first alternative with room (see `memdev::BlockMemory`).
    draws: Vec<Vec<PoolId>>,
    /// Bytes this block holds of each pool, to give back on discard.
    charged: Vec<(PoolId, u64)>,
    populated: RangeSet,
    /// Pages a hugetlb mapping without MAP_NORESERVE reserved at mmap and has not faulted in
    /// yet: charged already (`hugetlb_reserve_pages`, mm/hugetlb.c).
    reserved: RangeSet,
    discard: DiscardMethod,
}

/// Populated state of a process's guest memory, kept as ranges.
#[derive(Clone, Debug, Default)]
pub struct ModelMemory {
    pools: Vec<Pool>,
    blocks: Vec<Block>,
    /// When set, every discard uses this method instead of QEMU's choice (a variant).
    discard_override: Option<DiscardMethod>,
}

impl ModelMemory {
    pub fn new() -> ModelMemory {
        ModelMemory::default()
    }

    /// Makes every discard use `method` (e.g. MADV_DONTNEED on shared memory, a known bug).
    pub fn override_discard(&mut self, method: DiscardMethod) {
        self.discard_override = Some(method);
        for b in &mut self.blocks {
            b.discard = method;
        }
    }

    pub fn add_pool(&mut self, capacity: Capacity) -> PoolId {
        self.pools.push(Pool { capacity, used: 0 });
        PoolId(self.pools.len() - 1)
    }

    /// Registers a RAM block of `len` bytes on `backend`, drawing from `pool` alone.
    pub fn add_block(&mut self, name: &str, backend: Backend, len: Bytes, pool: PoolId) -> RamBlockId {
        self.add_block_drawing(name, backend, len, vec![vec![pool]], false).expect("a block without a reservation always maps")
    }

    /// Registers a RAM block whose pages are charged to every entry of `draws`. With
    /// `reserve` (a hugetlb mapping without MAP_NORESERVE) the whole block is reserved at
    /// mmap: when its limits cannot hold it, mmap fails with ENOMEM and nothing is added.
    pub fn add_block_drawing(&mut self, name: &str, backend: Backend, len: Bytes, draws: Vec<Vec<PoolId>>, reserve: bool) -> Result<RamBlockId, HostError> {
        for p in draws.iter().flatten() {
            assert!(p.0 < self.pools.len(), "unknown pool {p:?}");
        }
        assert!(backend.page_size.0.is_power_of_two(), "page size must be a power of two");
        let discard = self
            .discard_override
            .unwrap_or_else(|| DiscardMethod::qemu_choice(backend.kind, backend.page_size));
        self.blocks.push(Block {
            name: name.to_string(),
            kind: backend.kind,
            page_size: backend.page_size.0,
            len: len.0,
            draws,
            charged: Vec::new(),
            populated: RangeSet::new(),
            reserved: RangeSet::new(),
            discard,
        });
        let id = RamBlockId(self.blocks.len() - 1);
        if reserve {
            let page = backend.page_size.0;
            let whole = len.0.div_ceil(page).checked_mul(page);
            if whole.is_none_or(|w| self.room(id, page) < w) {
                self.blocks.pop();
                return Err(HostError { errno: Errno::NoMem, offset: Bytes::ZERO });
            }
            let whole = whole.expect("checked above");
            self.charge(id, whole, page);
            self.blocks[id.0].reserved.insert(0, whole);
        }
        Ok(id)
    }

    pub fn block_name(&self, id: RamBlockId) -> &str {
        &self.blocks[id.0].name
    }

    pub fn block_len(&self, id: RamBlockId) -> Bytes {
        Bytes(self.blocks[id.0].len)
    }

    pub fn block_kind(&self, id: RamBlockId) -> BackendKind {
        self.blocks[id.0].kind
    }

    pub fn discard_method(&self, id: RamBlockId) -> DiscardMethod {
        self.blocks[id.0].discard
    }

    /// Free bytes left in a pool (`u64::MAX` for unlimited).
    pub fn pool_free(&self, pool: PoolId) -> Bytes {
        Bytes(self.pools[pool.0].free())
    }

    /// Takes up to `bytes` from a pool without a RAM block, as a competitor for huge pages does.
    /// Returns how much it took.
    pub fn drain_pool(&mut self, pool: PoolId, bytes: Bytes) -> Bytes {
        let p = &mut self.pools[pool.0];
        let take = bytes.0.min(p.free());
        p.used += take;
        Bytes(take)
    }

    /// The populated runs of a block, ascending.
    pub fn populated_runs(&self, id: RamBlockId) -> Vec<(u64, u64)> {
        self.blocks[id.0].populated.iter().collect()
    }

    /// Total populated bytes of a block.
    pub fn populated_total(&self, id: RamBlockId) -> Bytes {
        Bytes(self.blocks[id.0].populated.total())
    }

    /// The byte range aligned outward to the block's page size, checked against its length.
    fn span(&self, id: RamBlockId, offset: Bytes, len: Bytes) -> (u64, u64) {
        let b = &self.blocks[id.0];
        let end = offset.0.checked_add(len.0).expect("range end overflows");
        assert!(end <= b.len, "range {:#x}+{:#x} beyond RAM block '{}' ({:#x})", offset.0, len.0, b.name, b.len);
        let start = offset.0 - offset.0 % b.page_size;
        let end = end.div_ceil(b.page_size) * b.page_size;
        (start, end.min(b.len.div_ceil(b.page_size) * b.page_size))
    }

    /// Populates the gaps of `[start, end)` in order until the pool runs dry; returns the
    /// offset of the first page that could not be populated.
    fn fill(&mut self, id: RamBlockId, start: u64, end: u64) -> Result<(), u64> {
        let gaps = self.blocks[id.0].populated.gaps(start, end);
        let page = self.blocks[id.0].page_size;
        for (gs, ge) in gaps {
            // In address order: reserved pages fault in without a new charge, the rest is
            // charged as it comes.
            let mut at = gs;
            for (rs, re) in self.blocks[id.0].reserved.within(gs, ge) {
                self.fill_charged(id, at, rs, page)?;
                self.blocks[id.0].reserved.remove(rs, re);
                self.blocks[id.0].populated.insert(rs, re);
                at = re;
            }
            self.fill_charged(id, at, ge, page)?;
        }
        Ok(())
    }

    fn fill_charged(&mut self, id: RamBlockId, s: u64, e: u64, page: u64) -> Result<(), u64> {
        if s >= e {
            return Ok(());
        }
        let want = e - s;
        let take = want.min(self.room(id, page));
        if take > 0 {
            self.blocks[id.0].populated.insert(s, s + take);
            self.charge(id, take, page);
        }
        if take < want {
            return Err(s + take);
        }
        Ok(())
    }

    /// Whole pages a block can still take: the least, over its draws, of what the draw's
    /// alternatives have left together.
    fn room(&self, id: RamBlockId, page: u64) -> u64 {
        let free = |p: &PoolId| {
            let f = self.pools[p.0].free();
            f - f % page
        };
        self.blocks[id.0].draws.iter().map(|alts| alts.iter().map(free).fold(0u64, u64::saturating_add)).min().unwrap_or(u64::MAX)
    }

    /// Charges `bytes` (whole pages, within `room`) to every draw, first alternative first.
    fn charge(&mut self, id: RamBlockId, bytes: u64, page: u64) {
        // Taken out and put back: the loop changes the pools and the block's charges.
        let draws = std::mem::take(&mut self.blocks[id.0].draws);
        for alts in &draws {
            let mut left = bytes;
            for &p in alts {
                let f = self.pools[p.0].free();
                let t = left.min(f - f % page);
                if t > 0 {
                    self.pools[p.0].used += t;
                    self.add_charged(id, p, t);
                    left -= t;
                }
            }
            assert_eq!(left, 0, "charged beyond the room of a draw");
        }
        self.blocks[id.0].draws = draws;
    }

    fn add_charged(&mut self, id: RamBlockId, pool: PoolId, bytes: u64) {
        let charged = &mut self.blocks[id.0].charged;
        match charged.iter_mut().find(|(p, _)| *p == pool) {
            Some((_, b)) => *b += bytes,
            None => charged.push((pool, bytes)),
        }
    }

    /// Gives `bytes` back to every draw, last alternative first (which node's page a discard
    /// frees is not modelled: only how many).
    fn release(&mut self, id: RamBlockId, bytes: u64) {
        let draws = std::mem::take(&mut self.blocks[id.0].draws);
        for alts in &draws {
            let mut left = bytes;
            for p in alts.iter().rev() {
                let Some(held) = self.blocks[id.0].charged.iter_mut().find(|(q, _)| q == p) else { continue };
                let t = left.min(held.1);
                held.1 -= t;
                self.pools[p.0].used -= t;
                left -= t;
            }
        }
        self.blocks[id.0].draws = draws;
    }

    /// The pool behind a limit of `memdev::Memory` (`Vm::realize` adds one pool per limit, in
    /// order).
    pub fn pool_of(limit: LimitId) -> PoolId {
        PoolId(limit.0)
    }
}

impl HostMemory for ModelMemory {
    fn populate(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), HostError> {
        let (s, e) = self.span(block, offset, len);
        self.fill(block, s, e).map_err(|at| HostError { errno: Errno::Fault, offset: Bytes(at) })
    }

    fn discard(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), HostError> {
        let (s, e) = self.span(block, offset, len);
        let b = &mut self.blocks[block.0];
        if b.discard.frees(b.kind) {
            // A hole punched in hugetlbfs also drops the range's reservation (region_del).
            let freed = b.populated.remove(s, e) + b.reserved.remove(s, e);
            self.release(block, freed);
        }
        Ok(())
    }

    fn load(&mut self, block: RamBlockId, offset: Bytes, len: Bytes, kind: PageKind) -> Result<(), Sigbus> {
        if kind == PageKind::Zero && !self.blocks[block.0].kind.read_allocates() {
            // A read of an absent private anonymous page maps the shared zero page.
            return Ok(());
        }
        let (s, e) = self.span(block, offset, len);
        self.fill(block, s, e).map_err(|at| Sigbus { offset: Bytes(at) })
    }

    /// UFFDIO_ZEROPAGE allocates as UFFDIO_COPY does on shared memory (a zeroed page-cache page);
    /// on private anonymous memory it maps the shared zero page, which has no capacity to run
    /// out of here, so `zero` changes nothing the model counts.
    fn place(&mut self, block: RamBlockId, offset: Bytes, len: Bytes, _zero: bool) -> Result<(), HostError> {
        let (s, e) = self.span(block, offset, len);
        let present = self.blocks[block.0].populated.first_covered(s, e);
        let stop = present.unwrap_or(e);
        if let Err(at) = self.fill(block, s, stop) {
            // On hugetlb a failed allocation reads EEXIST once the block maps any page (its page
            // table exists); the model takes "any page of the block populated" for that [INF].
            let b = &self.blocks[block.0];
            let errno = if b.kind.is_hugetlb() && !b.populated.is_empty() { Errno::ExistNoPage } else { Errno::NoMem };
            return Err(HostError { errno, offset: Bytes(at) });
        }
        match present {
            Some(at) => Err(HostError { errno: Errno::Exist, offset: Bytes(at) }),
            None => Ok(()),
        }
    }

    fn touch(&mut self, block: RamBlockId, offset: Bytes, len: Bytes) -> Result<(), Sigbus> {
        let (s, e) = self.span(block, offset, len);
        self.fill(block, s, e).map_err(|at| Sigbus { offset: Bytes(at) })
    }

    fn populated(&self, block: RamBlockId, offset: Bytes, len: Bytes) -> Bytes {
        let end = offset.0.checked_add(len.0).expect("range end overflows");
        Bytes(self.blocks[block.0].populated.covered(offset.0, end))
    }

    fn left(&self, block: RamBlockId) -> Option<Bytes> {
        let left = self.room(block, 1);
        (left != u64::MAX).then_some(Bytes(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hugetlb(cap: u64) -> (ModelMemory, RamBlockId) {
        let mut m = ModelMemory::new();
        let pool = m.add_pool(Capacity::Limited(Bytes::mib(cap)));
        let b = m.add_block("mem0", Backend::unlimited(BackendKind::Hugetlbfs), Bytes::gib(1), pool);
        (m, b)
    }

    #[test]
    fn populate_fails_with_efault_and_keeps_partial() {
        let (mut m, b) = hugetlb(64);
        let err = m.populate(b, Bytes::ZERO, Bytes::mib(256)).unwrap_err();
        assert_eq!(err, HostError { errno: Errno::Fault, offset: Bytes::mib(64) });
        assert_eq!(m.populated_total(b), Bytes::mib(64));
    }

    #[test]
    fn a_4k_load_on_hugetlb_populates_the_whole_huge_page() {
        let (mut m, b) = hugetlb(4);
        m.load(b, Bytes(4096), Bytes(4096), PageKind::Zero).unwrap();
        assert_eq!(m.populated_total(b), Bytes::mib(2));
        m.load(b, Bytes::mib(2), Bytes(4096), PageKind::Normal).unwrap();
        assert_eq!(m.load(b, Bytes::mib(4), Bytes(4096), PageKind::Normal), Err(Sigbus { offset: Bytes::mib(4) }));
    }

    #[test]
    fn zero_page_on_private_anonymous_allocates_nothing() {
        let mut m = ModelMemory::new();
        let pool = m.add_pool(Capacity::Limited(Bytes::ZERO));
        let b = m.add_block("pc.ram", Backend::unlimited(BackendKind::PrivateAnonymous), Bytes::mib(8), pool);
        assert_eq!(m.load(b, Bytes::ZERO, Bytes::mib(8), PageKind::Zero), Ok(()));
        assert_eq!(m.populated_total(b), Bytes::ZERO);
        assert_eq!(m.load(b, Bytes::ZERO, Bytes(4096), PageKind::Normal), Err(Sigbus { offset: Bytes::ZERO }));
    }

    #[test]
    fn place_reports_eexist_on_present_page_and_enomem_when_dry() {
        let (mut m, b) = hugetlb(8);
        m.populate(b, Bytes::mib(2), Bytes::mib(2)).unwrap();
        let e = m.place(b, Bytes::ZERO, Bytes::mib(4), false).unwrap_err();
        assert_eq!(e, HostError { errno: Errno::Exist, offset: Bytes::mib(2) });
        // The hole before the present page was placed.
        assert_eq!(m.populated(b, Bytes::ZERO, Bytes::mib(4)), Bytes::mib(4));
        m.discard(b, Bytes::ZERO, Bytes::gib(1)).unwrap();
        assert_eq!(m.populated_total(b), Bytes::ZERO);
        // Out of huge pages with others of the block mapped: hugetlb reports EEXIST.
        let e = m.place(b, Bytes::ZERO, Bytes::mib(16), false).unwrap_err();
        assert_eq!(e, HostError { errno: Errno::ExistNoPage, offset: Bytes::mib(8) });
        assert_eq!(e.errno.strerror(), "File exists");
        // With nothing of the block mapped, and on shmem always: ENOMEM.
        m.discard(b, Bytes::ZERO, Bytes::gib(1)).unwrap();
        m.drain_pool(PoolId(0), Bytes::mib(8));
        assert_eq!(m.place(b, Bytes::ZERO, Bytes::mib(2), false).unwrap_err().errno, Errno::NoMem);
        let mut shm = ModelMemory::new();
        let pool = shm.add_pool(Capacity::Limited(Bytes::mib(1)));
        let sb = shm.add_block("mem0", Backend::unlimited(BackendKind::Memfd), Bytes::mib(8), pool);
        assert_eq!(shm.place(sb, Bytes::ZERO, Bytes::mib(2), false).unwrap_err(), HostError { errno: Errno::NoMem, offset: Bytes::mib(1) });
    }

    #[test]
    fn dontneed_on_shared_memory_frees_nothing() {
        let mut m = ModelMemory::new();
        let pool = m.add_pool(Capacity::Unlimited);
        m.override_discard(DiscardMethod::Dontneed);
        let b = m.add_block("mem0", Backend::unlimited(BackendKind::Memfd), Bytes::mib(8), pool);
        m.populate(b, Bytes::ZERO, Bytes::mib(8)).unwrap();
        m.discard(b, Bytes::ZERO, Bytes::mib(8)).unwrap();
        assert_eq!(m.populated_total(b), Bytes::mib(8));
        assert_eq!(m.place(b, Bytes::ZERO, Bytes(4096), false).unwrap_err().errno, Errno::Exist);
    }

    #[test]
    fn a_competitor_drains_the_pool() {
        let (mut m, b) = hugetlb(8);
        assert_eq!(m.drain_pool(PoolId(0), Bytes::mib(6)), Bytes::mib(6));
        assert_eq!(m.touch(b, Bytes::ZERO, Bytes::mib(4)), Err(Sigbus { offset: Bytes::mib(2) }));
    }
}

#[cfg(test)]
mod draw_tests {
    use super::*;

    fn huge() -> Backend {
        Backend::unlimited(BackendKind::Hugetlbfs)
    }

    #[test]
    fn every_draw_must_have_room_and_a_page_takes_the_first_alternative_with_room() {
        let mut m = ModelMemory::new();
        let mount = m.add_pool(Capacity::Limited(Bytes::mib(8)));
        let (n0, n1) = (m.add_pool(Capacity::Limited(Bytes::mib(2))), m.add_pool(Capacity::Limited(Bytes::mib(4))));
        let b = m.add_block_drawing("mem0", huge(), Bytes::mib(64), vec![vec![mount], vec![n0, n1]], false).unwrap();
        // 6 MiB in the nodes, 8 MiB on the mount: the nodes bind.
        assert_eq!(m.populate(b, Bytes::ZERO, Bytes::mib(8)), Err(HostError { errno: Errno::Fault, offset: Bytes::mib(6) }));
        assert_eq!((m.pool_free(mount), m.pool_free(n0), m.pool_free(n1)), (Bytes::mib(2), Bytes::ZERO, Bytes::ZERO));
        // A discard gives back to every draw.
        m.discard(b, Bytes::ZERO, Bytes::mib(4)).unwrap();
        assert_eq!(m.pool_free(mount), Bytes::mib(6));
        assert_eq!(m.pool_free(n0).0 + m.pool_free(n1).0, Bytes::mib(4).0);
        assert_eq!(m.left(b), Some(Bytes::mib(4)));
    }

    #[test]
    fn a_reservation_charges_the_whole_block_at_mmap_and_a_punched_hole_gives_it_back() {
        let mut m = ModelMemory::new();
        let pool = m.add_pool(Capacity::Limited(Bytes::mib(8)));
        assert_eq!(m.add_block_drawing("big", huge(), Bytes::mib(10), vec![vec![pool]], true).unwrap_err().errno, Errno::NoMem);
        assert_eq!(m.pool_free(pool), Bytes::mib(8), "a failed mmap takes nothing");
        let b = m.add_block_drawing("mem0", huge(), Bytes::mib(8), vec![vec![pool]], true).unwrap();
        assert_eq!(m.pool_free(pool), Bytes::ZERO);
        // Reserved pages fault in without a new charge.
        m.touch(b, Bytes::ZERO, Bytes::mib(8)).unwrap();
        m.discard(b, Bytes::mib(4), Bytes::mib(4)).unwrap();
        assert_eq!(m.pool_free(pool), Bytes::mib(4));
        // The punched range has no reservation left: a competitor can take its pages.
        m.drain_pool(pool, Bytes::mib(4));
        assert_eq!(m.touch(b, Bytes::mib(4), Bytes::mib(2)), Err(Sigbus { offset: Bytes::mib(4) }));
    }
}
