//! What `vmemsim prealloc` measures on: the memory kinds (with their page and virtio-mem block
//! sizes and the region each is measured on) and the plugged layouts of a region.

use serde::Serialize;
use vmemsim_model::Bytes;

use super::pool::PoolDir;

/// A kind of memory a VMM backs guest RAM with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    #[serde(rename = "hugetlb-2m")]
    Hugetlb2m,
    #[serde(rename = "hugetlb-1g")]
    Hugetlb1g,
    #[serde(rename = "tmpfs")]
    Tmpfs,
    #[serde(rename = "memfd")]
    Memfd,
    #[serde(rename = "anon")]
    Anon,
}

impl Kind {
    /// Every kind, in the order of the table.
    pub const ALL: [Kind; 5] = [Kind::Hugetlb2m, Kind::Hugetlb1g, Kind::Tmpfs, Kind::Memfd, Kind::Anon];

    /// The name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hugetlb2m => "hugetlb-2m",
            Kind::Hugetlb1g => "hugetlb-1g",
            Kind::Tmpfs => "tmpfs",
            Kind::Memfd => "memfd",
            Kind::Anon => "anon",
        }
    }

    /// The name for people.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Hugetlb2m => "hugetlb 2 MiB",
            Kind::Hugetlb1g => "hugetlb 1 GiB",
            Kind::Tmpfs => "tmpfs 4 KiB",
            Kind::Memfd => "memfd 4 KiB",
            Kind::Anon => "anonymous 4 KiB",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The accepted names, for error messages.
    pub fn names() -> String {
        Kind::ALL.map(Kind::name).join(", ")
    }

    pub fn page_size(self) -> Bytes {
        match self {
            Kind::Hugetlb2m => Bytes::mib(2),
            Kind::Hugetlb1g => Bytes::gib(1),
            _ => Bytes(4 << 10),
        }
    }

    pub fn is_hugetlb(self) -> bool {
        matches!(self, Kind::Hugetlb2m | Kind::Hugetlb1g)
    }

    /// QEMU's default virtio-mem block size: the THP size (2 MiB here) or the page size if larger
    /// (`virtio_mem_default_block_size`).
    pub fn block_size(self) -> Bytes {
        self.page_size().max(Bytes::mib(2))
    }

    /// The region measured when `--size` is not given: 1 GiB (a few hundred ms per strategy on
    /// 4 KiB memory here, whose first-touch faults cost about 1 µs each), and 4 GiB for 1 GiB
    /// pages, so that a region holds four blocks and a fragmented layout has separate runs.
    pub fn default_region(self) -> Bytes {
        match self {
            Kind::Hugetlb1g => Bytes::gib(4),
            _ => Bytes::gib(1),
        }
    }

    /// The kernel's pool of this kind's huge pages.
    pub fn pool(self) -> Option<PoolDir> {
        self.is_hugetlb().then(|| PoolDir::for_page_size(self.page_size().0))
    }

    /// Why this host cannot have this kind at all, if it cannot.
    pub fn missing(self) -> Option<String> {
        let pool = self.pool()?;
        let dir = std::path::Path::new("/sys/kernel/mm/hugepages").join(&pool.0);
        (!dir.exists()).then(|| format!("this kernel has no {} huge pages (no {})", self.page_size(), dir.display()))
    }

    /// The region for `size` (or the default), checked: whole blocks, at least two of them.
    pub fn region(self, size: Option<Bytes>) -> Result<Bytes, String> {
        let region = size.unwrap_or(self.default_region());
        let block = self.block_size();
        if !region.is_multiple_of(block) || region.0 < block.0.saturating_mul(2) {
            return Err(format!("{} is not a region for {}: it must be whole {block} blocks, at least two ({})", region, self.name(), Bytes(block.0.saturating_mul(2))));
        }
        Ok(region)
    }
}

/// Where the plugged blocks of a region lie.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// The first blocks, one run.
    Contiguous,
    /// Spread evenly over the region: at 50 % every other block, each its own run.
    Fragmented,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Contiguous, Layout::Fragmented];

    pub fn name(self) -> &'static str {
        match self {
            Layout::Contiguous => "contiguous",
            Layout::Fragmented => "fragmented",
        }
    }

    pub fn parse(s: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == s)
    }

    /// The plugged runs (byte offset, length) of `percent` % of a region of `blocks` blocks of
    /// `block` bytes: at least one block.
    pub fn runs(self, blocks: u64, percent: u8, block: u64) -> Vec<(usize, usize)> {
        let plugged = (blocks * u64::from(percent) / 100).clamp(1, blocks);
        let chosen: Vec<u64> = match self {
            Layout::Contiguous => (0..plugged).collect(),
            // Block i is plugged when the count of plugged blocks up to it steps up.
            Layout::Fragmented => (0..blocks).filter(|i| (i + 1) * plugged / blocks > i * plugged / blocks).collect(),
        };
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for b in chosen {
            let off = (b * block) as usize;
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == off => r.1 += block as usize,
                _ => runs.push((off, block as usize)),
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_plug_the_asked_share_in_the_asked_shape() {
        let mib = 2 << 20;
        assert_eq!(Layout::Contiguous.runs(8, 50, mib), vec![(0, 4 * mib as usize)]);
        let frag = Layout::Fragmented.runs(8, 50, mib);
        assert_eq!(frag.len(), 4, "{frag:?}");
        assert!(frag.iter().all(|r| r.1 == mib as usize));
        assert_eq!(Layout::Fragmented.runs(8, 100, mib), vec![(0, 8 * mib as usize)]);
        assert_eq!(Layout::Fragmented.runs(4, 1, mib).iter().map(|r| r.1).sum::<usize>(), mib as usize, "at least one block");
        assert_eq!(Layout::Fragmented.runs(10, 30, mib).iter().map(|r| r.1).sum::<usize>(), 3 * mib as usize);
    }

    #[test]
    fn regions_are_whole_blocks() {
        assert_eq!(Kind::Hugetlb1g.region(None), Ok(Bytes::gib(4)));
        assert!(Kind::Hugetlb1g.region(Some(Bytes::mib(64))).unwrap_err().contains("whole 1 GiB blocks"));
        assert!(Kind::Memfd.region(Some(Bytes::mib(3))).is_err());
        assert_eq!(Kind::Memfd.region(Some(Bytes::mib(4))), Ok(Bytes::mib(4)));
    }
}
