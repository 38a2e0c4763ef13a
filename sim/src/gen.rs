//! The scenario generator: a seed becomes a scenario. Swarm testing: each seed enables a random
//! subset of the fault kinds, each at a random intensity. Every choice draws from the stream
//! of the actor it concerns, so adding a fault kind does not change the others' draws.

use std::fmt;

use toml::Spanned;
use vmemsim_model::{BackendKind, Bytes, Gpa, QemuVersion, Variant};

use crate::rng::{Actor, Stream};
use crate::scenario::{
    ActionSpec, BackendSpec, BalloonSpec, CapacitySpec, DestinationSpec, DeviceOverrides, DeviceSpec, DrainPoint,
    DrainSpec, FaultSpec, GuestSpec, HintSpec, ManagerSpec, MigrationSpec, ModeSpec, OpSpec, RangeSpec, ResizeSpec,
    Scenario, SideSpec,
};

/// The fault kinds of the swarm.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Destination capacity exactly enough, one block short, many short, or zero.
    ShortCapacity,
    /// Free page hints exclude guest pages that the guest touches after switchover.
    FreePageHints,
    /// Postcopy, with the switch at any point (0 % sends no pages first; 100 % no discards).
    Postcopy,
    /// A competitor drains the destination's pool after the early section, at LISTEN or at the end.
    Drain,
    /// The guest plugs and unplugs while the migration runs.
    GuestDuringMigration,
    /// The manager changes requested-size while the migration runs.
    ResizeDuringMigration,
    /// Source and destination disagree on a device property.
    Mismatch,
    /// An old machine type (7.1 or 7.2).
    OldMachine,
    /// prealloc=off on the destination.
    PreallocOff,
    /// The migration is cancelled and retried to a second destination.
    CancelRetry,
    /// After migration, the manager grows requested-size and the guest plugs more on the
    /// destination (a plug whose preallocation may fail).
    PlugAfterMigration,
}

impl FaultKind {
    pub const ALL: [FaultKind; 11] = [
        FaultKind::ShortCapacity,
        FaultKind::FreePageHints,
        FaultKind::Postcopy,
        FaultKind::Drain,
        FaultKind::GuestDuringMigration,
        FaultKind::ResizeDuringMigration,
        FaultKind::Mismatch,
        FaultKind::OldMachine,
        FaultKind::PreallocOff,
        FaultKind::CancelRetry,
        FaultKind::PlugAfterMigration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ShortCapacity => "short-capacity",
            FaultKind::FreePageHints => "free-page-hints",
            FaultKind::Postcopy => "postcopy",
            FaultKind::Drain => "drain",
            FaultKind::GuestDuringMigration => "guest-during-migration",
            FaultKind::ResizeDuringMigration => "resize-during-migration",
            FaultKind::Mismatch => "mismatch",
            FaultKind::OldMachine => "old-machine",
            FaultKind::PreallocOff => "prealloc-off",
            FaultKind::CancelRetry => "cancel-retry",
            FaultKind::PlugAfterMigration => "plug-after-migration",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fault kinds a seed enables (each with probability 1/2).
pub fn swarm(seed: u64) -> Vec<FaultKind> {
    let mut s = Stream::new(seed, Actor::Swarm);
    FaultKind::ALL.into_iter().filter(|_| s.chance(50)).collect()
}

fn spanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

const KINDS: [BackendKind; 7] = BackendKind::ALL;

struct Dev {
    block: u64,
    nblocks: u64,
    /// Plugged runs as (first, count).
    runs: Vec<(u64, u64)>,
}

impl Dev {
    fn plugged_blocks(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }
    /// A random 4K-aligned range inside one plugged run.
    fn range_in_plugged(&self, s: &mut Stream) -> (u64, u64) {
        let (first, count) = self.runs[s.below(self.runs.len() as u64) as usize];
        let start = first * self.block;
        let len_max = count * self.block;
        let pages = len_max / 4096;
        let off = s.below(pages) * 4096;
        let len = (s.between(1, (pages - off / 4096).min(4096))) * 4096;
        (start + off, len)
    }
}

/// Generates the scenario of `seed` for `variant`.
pub fn generate(seed: u64, variant: Variant) -> Scenario {
    generate_on(seed, variant, QemuVersion::DEFAULT)
}

/// [`generate`] for a QEMU release on both sides (the default release is left unwritten, so
/// its scenarios read as before).
pub fn generate_on(seed: u64, variant: Variant, qemu: QemuVersion) -> Scenario {
    let mut s = generate_default(seed, variant);
    if qemu != QemuVersion::DEFAULT {
        s.source.qemu = Some(qemu);
        // A machine newer than the release becomes the release's own.
        if vmemsim_model::MachineType::parse_for(s.source.machine.get_ref(), &vmemsim_model::QemuProfile::of(qemu)).is_err() {
            s.source.machine = spanned("q35".to_string());
        }
    }
    s
}

fn generate_default(seed: u64, variant: Variant) -> Scenario {
    let faults = swarm(seed);
    let on = |k: FaultKind| faults.contains(&k);
    let mut cfg = Stream::new(seed, Actor::Config);

    // Machine and memory.
    let mut ms = Stream::new(seed, Actor::Machine);
    let machine = if on(FaultKind::OldMachine) { ms.pick(&["pc-q35-7.1", "pc-q35-7.2", "pc-i440fx-7.1"]) } else { ms.pick(&["q35", "pc-q35-8.0", "pc-q35-9.2", "pc-q35-10.0"]) };
    let postcopy = on(FaultKind::Postcopy);
    let kind = loop {
        let k = cfg.pick(&KINDS);
        if !postcopy || k.supports_postcopy() {
            break k;
        }
    };
    let page = kind.default_page_size().0;
    let blocks: Vec<u64> = [2u64 << 20, 4 << 20, 32 << 20, 128 << 20].into_iter().filter(|b| *b >= page).collect();

    // Devices and what the guest plugged.
    let ndev = cfg.between(1, 3) as usize;
    let mut devs = Vec::new();
    let mut specs = Vec::new();
    let mut addr: u64 = 0x1_4000_0000;
    let prealloc_off = on(FaultKind::PreallocOff);
    for i in 0..ndev {
        let block = cfg.pick(&blocks);
        let nblocks = cfg.between(8, 1024);
        let mut runs = Vec::new();
        if cfg.chance(50) {
            runs.push((0, cfg.between(1, nblocks)));
        } else {
            let mut at = cfg.below(nblocks / 2);
            while at < nblocks && runs.len() < 8 {
                let n = cfg.between(1, ((nblocks - at) / 2).max(1));
                runs.push((at, n));
                at += n + cfg.between(1, 16);
            }
        }
        let dev = Dev { block, nblocks, runs };
        let plugged = dev.plugged_blocks();
        // Every plugged block lies inside the usable region, min(region, requested + 256 MiB).
        let end = dev.runs.iter().map(|&(f, c)| f + c).max().unwrap_or(0);
        let extent_blocks = (256u64 << 20) / block;
        let lowest = plugged.max(end.saturating_sub(extent_blocks));
        let requested = cfg.between(lowest, nblocks) * block;
        let region = nblocks * block;
        addr = addr.div_ceil(block) * block;
        let contiguous = dev.runs.len() == 1 && dev.runs[0].0 == 0;
        specs.push(DeviceSpec {
            id: format!("vmem{i}"),
            pci: Some(format!("0000:00:{:02x}.0", 3 + i)),
            memdev: None,
            memaddr: Some(Gpa(addr)),
            region: Bytes(region),
            block_size: Some(Bytes(block)),
            requested: Bytes(requested),
            plugged: contiguous.then_some(Bytes(plugged * block)),
            plugged_blocks: (!contiguous).then(|| dev.runs.iter().map(|&(f, c)| [f, c]).collect()),
            prealloc: !prealloc_off || cfg.chance(30),
            node: 0,
            early_migration: None,
            memdev_prealloc: false,
            destination: DeviceOverrides::default(),
        });
        addr += region;
        devs.push(dev);
    }
    let need: u64 = devs.iter().map(|d| d.plugged_blocks() * d.block).sum();
    let min_block = devs.iter().map(|d| d.block).min().expect("at least one device");

    // Destination capacity.
    let mut cs = Stream::new(seed, Actor::Capacity);
    let capacity = if on(FaultKind::ShortCapacity) {
        match cs.below(4) {
            0 => CapacitySpec::Limited(Bytes(need)),
            1 => CapacitySpec::Limited(Bytes(need.saturating_sub(min_block))),
            2 => CapacitySpec::Limited(Bytes(need / (cs.between(2, 8)) / page * page)),
            _ => CapacitySpec::Limited(Bytes::ZERO),
        }
    } else if cs.chance(50) {
        CapacitySpec::Unlimited
    } else {
        CapacitySpec::Limited(Bytes(need + cs.between(0, 64) * page))
    };

    // Migration.
    let mut ps = Stream::new(seed, Actor::Postcopy);
    let migration = MigrationSpec {
        mode: if postcopy { ModeSpec::Postcopy } else { ModeSpec::Precopy },
        start_postcopy: None,
        switch_percent: postcopy.then(|| match ps.below(4) {
            0 => 0,
            1 => 100,
            _ => ps.between(1, 99) as u8,
        }),
        bandwidth: None,
    };
    // Virtual duration of the stream at 1 GiB/s, to place actions inside it.
    let main_ram: u64 = 64 << 20;
    let duration_us = ((need + main_ram) as u128 * 1_000_000 / (1u128 << 30)) as u64 + 100;

    // Guest: data before migration, touches after switchover, requests during migration.
    let mut gs = Stream::new(seed, Actor::Guest);
    let mut guest = GuestSpec::default();
    for (i, d) in devs.iter().enumerate() {
        if d.runs.is_empty() {
            continue;
        }
        for _ in 0..gs.below(3) {
            let (o, l) = d.range_in_plugged(&mut gs);
            guest.data.push(spanned(RangeSpec { device: format!("vmem{i}"), offset: Bytes(o), len: Bytes(l) }));
        }
        for _ in 0..gs.below(3) {
            let (o, l) = d.range_in_plugged(&mut gs);
            guest.touch.push(spanned(RangeSpec { device: format!("vmem{i}"), offset: Bytes(o), len: Bytes(l) }));
        }
    }
    let request = |s: &mut Stream, devs: &[Dev], at_us: u64| {
        let i = s.below(devs.len() as u64) as usize;
        let d = &devs[i];
        let (op, block, count) = match s.below(4) {
            0 if !d.runs.is_empty() => {
                let (f, c) = d.runs[s.below(d.runs.len() as u64) as usize];
                (OpSpec::Unplug, f, s.between(1, c) as u16)
            }
            1 => (OpSpec::UnplugAll, 0, 0),
            2 => (OpSpec::State, s.below(d.nblocks), s.between(1, 8) as u16),
            _ => (OpSpec::Plug, s.below(d.nblocks), s.between(1, 8) as u16),
        };
        spanned(ActionSpec { at_us, device: format!("vmem{i}"), op, block, count })
    };
    if on(FaultKind::GuestDuringMigration) {
        for _ in 0..gs.between(1, 4) {
            let at = gs.below(duration_us);
            guest.action.push(request(&mut gs, &devs, at));
        }
    }
    let mut manager = ManagerSpec::default();
    let mut mg = Stream::new(seed, Actor::Manager);
    if on(FaultKind::ResizeDuringMigration) {
        let i = mg.below(ndev as u64) as usize;
        let d = &devs[i];
        manager.resize.push(spanned(ResizeSpec { at_us: mg.below(duration_us), device: format!("vmem{i}"), requested: Bytes(mg.between(0, d.nblocks) * d.block) }));
    }
    if on(FaultKind::PlugAfterMigration) {
        let i = mg.below(ndev as u64) as usize;
        let d = &devs[i];
        let after = duration_us * 10 + 1_000_000;
        manager.resize.push(spanned(ResizeSpec { at_us: after, device: format!("vmem{i}"), requested: Bytes(d.nblocks * d.block) }));
        let unplugged_first = (0..d.nblocks).find(|b| !d.runs.iter().any(|&(f, c)| *b >= f && *b < f + c));
        if let Some(b) = unplugged_first {
            guest.action.push(spanned(ActionSpec { at_us: after + 1, device: format!("vmem{i}"), op: OpSpec::Plug, block: b, count: 1 }));
        }
        // Half the time the guest writes what it plugs (init_on_free=1). The manager stream's
        // last draw: earlier draws are unchanged.
        guest.init_on_free = mg.chance(50);
    }

    // Balloon hints (the guest reuses them after switchover).
    let mut balloon = BalloonSpec::default();
    let mut bs = Stream::new(seed, Actor::Balloon);
    if on(FaultKind::FreePageHints) {
        for (i, d) in devs.iter().enumerate() {
            if d.runs.is_empty() || !bs.chance(70) {
                continue;
            }
            for _ in 0..bs.between(1, 3) {
                let (o, l) = d.range_in_plugged(&mut bs);
                balloon.hint.push(spanned(HintSpec { device: format!("vmem{i}"), offset: Bytes(o), len: Bytes(l), touch_after: true }));
            }
        }
    }

    // Faults outside the configuration.
    let mut faults_spec = FaultSpec::default();
    let mut comp = Stream::new(seed, Actor::Competitor);
    if on(FaultKind::Drain) {
        let at = comp.pick(&[DrainPoint::AfterEarly, DrainPoint::Listen, DrainPoint::End]);
        faults_spec.drain.push(spanned(DrainSpec { at, bytes: Bytes(comp.between(1, 64) * page) }));
    }
    // A faulty source that skips the discard commands (one postcopy run in four).
    faults_spec.skip_ram_discard = postcopy && ps.chance(25);
    let mut cancel = Stream::new(seed, Actor::Cancel);
    if on(FaultKind::CancelRetry) {
        let at = cancel.below(duration_us);
        faults_spec.cancel_at_us = Some(at);
        guest.action.push(request(&mut cancel, &devs, at + 1));
    }

    // A mismatched destination.
    let mut mm = Stream::new(seed, Actor::Mismatch);
    let mut numa = None;
    if on(FaultKind::Mismatch) {
        let i = mm.below(ndev as u64) as usize;
        let (bs, memaddr, prealloc) = (specs[i].block_size.expect("set above"), specs[i].memaddr.expect("set above"), specs[i].prealloc);
        let o = &mut specs[i].destination;
        match mm.below(5) {
            0 => o.block_size = Some(Bytes(bs.0 * 2)),
            1 => o.memaddr = Some(Gpa(memaddr.0 + (1 << 30))),
            2 => {
                o.node = Some(1);
                numa = Some(2);
            }
            3 => o.prealloc = Some(!prealloc),
            _ => o.early_migration = Some(false),
        }
    }

    Scenario {
        name: format!("generated: seed {seed}"),
        description: format!("faults: {}", faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")),
        seed,
        variant,
        vmm: None,
        source: SideSpec {
            qemu: None,
            machine: spanned(machine.to_string()),
            main_ram: Bytes(main_ram),
            backend: Some(spanned(BackendSpec { kind, page_size: None, capacity: CapacitySpec::Unlimited })),
            numa_nodes: 0,
            main_memdev: None,
            memdevs: Vec::new(),
            mounts: Vec::new(),
            hugepages: Vec::new(),
            cgroup_hugetlb: Vec::new(),
        },
        destination: DestinationSpec {
            qemu: None,
            machine: None,
            main_ram: None,
            backend: Some(spanned(BackendSpec { kind, page_size: None, capacity })),
            main_memdev: None,
            memdevs: Vec::new(),
            mounts: Vec::new(),
            hugepages: Vec::new(),
            cgroup_hugetlb: Vec::new(),
            numa_nodes: numa,
            prealloc: None,
            prealloc_strategy: Default::default(),
        },
        devices: specs.into_iter().map(spanned).collect(),
        migration,
        guest,
        manager,
        balloon,
        faults: faults_spec,
        expect: None,
    }
}
