//! The scenario file format (TOML): a source and a destination, their virtio-mem devices and
//! memory, the migration, the guest's and the manager's actions, faults, the variant, and the
//! expected outcome. Generated scenarios and shrunk findings are written in the same format.

use serde::{Deserialize, Serialize};
use toml::Spanned;
use vmemsim_model::vmm::Vmm;
use vmemsim_model::{BackendKind, Bytes, Gpa, QemuVersion, Variant};

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short title.
    pub name: String,
    /// What the scenario shows and where its facts come from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The seed of the run's random streams (channel jitter); generated scenarios keep the
    /// seed they were generated from.
    #[serde(default)]
    pub seed: u64,
    /// The model variant under test (default: faithful QEMU 8.0+).
    #[serde(default, skip_serializing_if = "is_default")]
    pub variant: Variant,
    /// The VMM of both sides: `qemu-X.Y.Z` (the default, QEMU 10.0.2; the same as
    /// `source.qemu`), `cloud-hypervisor-vX.Y` or `firecracker-vX.Y.Z`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmm: Option<Spanned<Vmm>>,
    pub source: SideSpec,
    pub destination: DestinationSpec,
    #[serde(rename = "device", default)]
    pub devices: Vec<Spanned<DeviceSpec>>,
    #[serde(default)]
    pub migration: MigrationSpec,
    #[serde(default, skip_serializing_if = "GuestSpec::is_empty")]
    pub guest: GuestSpec,
    #[serde(default, skip_serializing_if = "ManagerSpec::is_empty")]
    pub manager: ManagerSpec,
    #[serde(default, skip_serializing_if = "BalloonSpec::is_empty")]
    pub balloon: BalloonSpec,
    #[serde(default, skip_serializing_if = "FaultSpec::is_empty")]
    pub faults: FaultSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Spanned<Expect>>,
}

/// One side's machine and memory.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SideSpec {
    /// The QEMU release, e.g. `10.0.2` (default: 10.0.2, the one the conformance suite runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu: Option<QemuVersion>,
    /// Machine type, e.g. `q35`, `pc-q35-7.1`; the aliases name the QEMU release's own.
    pub machine: Spanned<String>,
    /// Ordinary RAM (`-m`): private anonymous, or on `main_memdev`.
    #[serde(default)]
    pub main_ram: Bytes,
    /// The one backend of every virtio-mem memdev (the older form; or `[[source.memdev]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<Spanned<BackendSpec>>,
    /// NUMA nodes configured with `-numa` (0: none).
    #[serde(default, skip_serializing_if = "is_default")]
    pub numa_nodes: u32,
    /// `-machine memory-backend=<id>`: main RAM on one of the memdevs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_memdev: Option<Spanned<String>>,
    /// `-object memory-backend-*`, one per memdev.
    #[serde(rename = "memdev", default, skip_serializing_if = "Vec::is_empty")]
    pub memdevs: Vec<Spanned<MemdevSpec>>,
    /// Mounts the memdevs' files live on, with their `size=` quotas.
    #[serde(rename = "mount", default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Spanned<MountSpec>>,
    /// Free huge pages per page size (and per NUMA node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hugepages: Vec<Spanned<HugePagesSpec>>,
    /// The cgroup's hugetlb limits, per page size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_hugetlb: Vec<Spanned<CgroupHugetlbSpec>>,
}

/// The per-memdev form of a side's memory, as either side writes it.
#[derive(Copy, Clone, Debug)]
pub struct MemoryView<'a> {
    pub main_memdev: Option<&'a Spanned<String>>,
    pub memdevs: &'a [Spanned<MemdevSpec>],
    pub mounts: &'a [Spanned<MountSpec>],
    pub hugepages: &'a [Spanned<HugePagesSpec>],
    pub cgroup_hugetlb: &'a [Spanned<CgroupHugetlbSpec>],
}

macro_rules! memory_view {
    ($t:ty) => {
        impl $t {
            /// The per-memdev fields of this side.
            pub fn memory(&self) -> MemoryView<'_> {
                MemoryView {
                    main_memdev: self.main_memdev.as_ref(),
                    memdevs: &self.memdevs,
                    mounts: &self.mounts,
                    hugepages: &self.hugepages,
                    cgroup_hugetlb: &self.cgroup_hugetlb,
                }
            }
        }
    };
}
memory_view!(SideSpec);
memory_view!(DestinationSpec);

impl MemoryView<'_> {
    pub fn is_empty(&self) -> bool {
        self.main_memdev.is_none() && self.memdevs.is_empty() && self.mounts.is_empty() && self.hugepages.is_empty() && self.cgroup_hugetlb.is_empty()
    }
}

/// QEMU's memory backend object types.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum BackendType {
    #[serde(rename = "memory-backend-ram")]
    Ram,
    #[serde(rename = "memory-backend-memfd")]
    Memfd,
    #[serde(rename = "memory-backend-file")]
    File,
}

impl BackendType {
    pub fn name(self) -> &'static str {
        match self {
            BackendType::Ram => "memory-backend-ram",
            BackendType::Memfd => "memory-backend-memfd",
            BackendType::File => "memory-backend-file",
        }
    }
}

/// One `-object memory-backend-*,id=...`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemdevSpec {
    pub id: String,
    /// The object type: `memory-backend-ram`, `-memfd` or `-file`.
    #[serde(rename = "type")]
    pub backend: BackendType,
    /// `mem-path` of a file backend: a file (or directory) under one of the side's mounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_path: Option<String>,
    /// `share`; default QEMU's (off for ram and file, on for memfd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<bool>,
    /// `hugetlb` of a memfd backend.
    #[serde(default, skip_serializing_if = "is_default")]
    pub hugetlb: bool,
    /// `hugetlbsize` of a memfd backend (default 2M).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hugetlbsize: Option<Bytes>,
    /// `reserve`; default on (QEMU's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve: Option<bool>,
    /// The backend's own `prealloc` (virtio-mem refuses it; the device's `prealloc` is the one).
    #[serde(default, skip_serializing_if = "is_default")]
    pub prealloc: bool,
    /// `host-nodes` (with `policy`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_nodes: Vec<u32>,
    /// `policy`: default, preferred, bind or interleave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
    /// The `-object` option as the command line writes it (QEMU echoes it in errors);
    /// default: composed from the fields above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicySpec {
    Default,
    Preferred,
    Bind,
    Interleave,
}

/// A mount on the host.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    pub path: String,
    pub fs: MountFsSpec,
    /// hugetlbfs `pagesize=` (default 2M).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<Bytes>,
    /// What the `size=` quota has left for the VM ("unlimited" or absent: no quota).
    #[serde(default, skip_serializing_if = "is_default")]
    pub size: CapacitySpec,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountFsSpec {
    Hugetlbfs,
    Tmpfs,
    /// A disk file system.
    Disk,
}

/// Free huge pages of one size, system-wide or on one node.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HugePagesSpec {
    pub page_size: Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// Bytes of free huge pages.
    pub free: Bytes,
}

/// A cgroup's `hugetlb.<size>.max`, less what the cgroup already uses.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CgroupHugetlbSpec {
    pub page_size: Bytes,
    /// What the limit has left.
    pub left: Bytes,
}

/// The destination: like a side, and every field may default to the source's.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    /// Default: the source's release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu: Option<QemuVersion>,
    /// Default: the source's machine type as the source resolved it (a manager passes the
    /// canonical name, e.g. `pc-q35-10.0`, to the destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_ram: Option<Bytes>,
    /// The older form's one backend; or the per-memdev form (each list absent there is the
    /// source's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<Spanned<BackendSpec>>,
    /// `-machine memory-backend=<id>`: main RAM on one of the memdevs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_memdev: Option<Spanned<String>>,
    /// `-object memory-backend-*`, one per memdev.
    #[serde(rename = "memdev", default, skip_serializing_if = "Vec::is_empty")]
    pub memdevs: Vec<Spanned<MemdevSpec>>,
    /// Mounts the memdevs' files live on, with their `size=` quotas.
    #[serde(rename = "mount", default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Spanned<MountSpec>>,
    /// Free huge pages per page size (and per NUMA node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hugepages: Vec<Spanned<HugePagesSpec>>,
    /// The cgroup's hugetlb limits, per page size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_hugetlb: Vec<Spanned<CgroupHugetlbSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_nodes: Option<u32>,
    /// Overrides every device's `prealloc` on the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prealloc: Option<bool>,
    /// How the real adapter preallocates (qemu, per-block, parallel, fallocate); the model's
    /// outcome does not depend on it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub prealloc_strategy: crate::real::prealloc::Strategy,
}

/// A memory backend: kind, page size and capacity.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// Page size; default 2M for hugetlb kinds, 4K otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<Bytes>,
    /// "unlimited" (default) or a size: the huge page pool, or the mount's `size=` quota.
    #[serde(default)]
    pub capacity: CapacitySpec,
}

/// A capacity as written: `"unlimited"` or a size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CapacitySpec {
    #[default]
    Unlimited,
    Limited(Bytes),
}

impl<'de> Deserialize<'de> for CapacitySpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CapacitySpec, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Int(n) => Ok(CapacitySpec::Limited(Bytes(n))),
            Repr::Text(s) if s == "unlimited" => Ok(CapacitySpec::Unlimited),
            Repr::Text(s) => s
                .parse()
                .map(CapacitySpec::Limited)
                .map_err(|e| serde::de::Error::custom(format!("{e}, or \"unlimited\""))),
        }
    }
}

impl Serialize for CapacitySpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CapacitySpec::Unlimited => s.serialize_str("unlimited"),
            CapacitySpec::Limited(b) => b.serialize(s),
        }
    }
}

/// One virtio-mem device as the source has it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub id: String,
    /// PCI address, e.g. `0000:00:03.0`; default: the root-bus slot QEMU assigns in `[[device]]`
    /// order after the machine's default VGA and NIC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci: Option<String>,
    /// Memory backend id; default `mem<N>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memdev: Option<String>,
    /// Default: where QEMU places it (`memory_device_get_free_addr`, first fit in device memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memaddr: Option<Gpa>,
    /// The memdev's size: the device's region.
    pub region: Bytes,
    /// `block-size`; default QEMU's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<Bytes>,
    /// `requested-size`.
    pub requested: Bytes,
    /// What the guest has plugged when migration starts: a size plugged from the lowest block
    /// up (default: the requested size) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugged: Option<Bytes>,
    /// ... or explicit runs of blocks, `[[first, count], ...]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugged_blocks: Option<Vec<[u64; 2]>>,
    #[serde(default)]
    pub prealloc: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub node: u32,
    /// `x-early-migration`; default the machine type's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_migration: Option<bool>,
    /// The memory backend's own `prealloc=on` (QEMU refuses it).
    #[serde(default, skip_serializing_if = "is_default")]
    pub memdev_prealloc: bool,
    /// Differences on the destination (a mismatched configuration).
    #[serde(default, skip_serializing_if = "DeviceOverrides::is_empty")]
    pub destination: DeviceOverrides,
}

/// Fields of a device that differ on the destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memaddr: Option<Gpa>,
    /// `requested-size` on the destination's command line (the stream's value replaces it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<Bytes>,
    /// The destination's `memdev` for this device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memdev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prealloc: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_migration: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memdev_prealloc: Option<bool>,
}

impl DeviceOverrides {
    pub fn is_empty(&self) -> bool {
        *self == DeviceOverrides::default()
    }
}

/// How the migration runs.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    #[serde(default)]
    pub mode: ModeSpec,
    /// Postcopy only: when the manager sends `migrate-start-postcopy`: `"at-once"` (with
    /// `migrate`), a virtual time after `migrate` (`"250ms"`, `"1s"`), or a share of the page
    /// bytes (`"40%"`). Default `"50%"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_postcopy: Option<StartSpec>,
    /// The older spelling of `start_postcopy = "P%"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_percent: Option<u8>,
    /// The channel's bandwidth per virtual second (default 1G): it sets the virtual time at
    /// which each item arrives, and so where the guest's actions fall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bytes>,
}

/// When `migrate-start-postcopy` is sent, as written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StartSpec {
    AtOnce,
    /// Virtual microseconds after `migrate`.
    AfterUs(u64),
    /// A share of the page bytes, 0 to 100.
    Share(u8),
}

impl std::str::FromStr for StartSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<StartSpec, String> {
        let bad = || format!("'{s}' is not a time to start postcopy: write \"at-once\", a time such as \"250ms\" or \"1s\", or a share of the pages such as \"40%\"");
        let digits = |n: &str| -> Result<u64, String> {
            if n.is_empty() || n.len() > 12 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse().map_err(|_| bad())
        };
        if s == "at-once" {
            Ok(StartSpec::AtOnce)
        } else if let Some(p) = s.strip_suffix('%') {
            let p = digits(p)?;
            u8::try_from(p).ok().filter(|p| *p <= 100).map(StartSpec::Share).ok_or_else(|| format!("{s} is not a share of the pages (0% to 100%)"))
        } else if let Some(ms) = s.strip_suffix("ms") {
            Ok(StartSpec::AfterUs(digits(ms)? * 1_000))
        } else if let Some(secs) = s.strip_suffix('s') {
            Ok(StartSpec::AfterUs(digits(secs)? * 1_000_000))
        } else {
            Err(bad())
        }
    }
}

impl std::fmt::Display for StartSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartSpec::AtOnce => f.write_str("at-once"),
            StartSpec::AfterUs(us) if us % 1_000_000 == 0 => write!(f, "{}s", us / 1_000_000),
            StartSpec::AfterUs(us) => write!(f, "{}ms", us / 1_000),
            StartSpec::Share(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for StartSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StartSpec, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for StartSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    #[default]
    Precopy,
    Postcopy,
}

/// A byte range of one device's region, by device id.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    pub device: String,
    pub offset: Bytes,
    pub len: Bytes,
}

/// What the guest does.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// Ranges the guest wrote before migration (sent as normal pages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<Spanned<RangeSpec>>,
    /// Ranges the guest writes on the destination after switchover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touch: Vec<Spanned<RangeSpec>>,
    /// Requests the guest driver sends at a virtual time: on the source while it runs there
    /// (BUSY during migration), on the destination after switchover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action: Vec<Spanned<ActionSpec>>,
    /// The guest writes memory as soon as it plugs it on the destination after the restore,
    /// as a Linux guest with `init_on_free=1` does (pages are zeroed when onlined).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init_on_free: bool,
}

impl GuestSpec {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.touch.is_empty() && self.action.is_empty()
    }
}

/// One guest request.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// Virtual microseconds after migration starts.
    pub at_us: u64,
    pub device: String,
    pub op: OpSpec,
    /// First block (plug, unplug, state).
    #[serde(default, skip_serializing_if = "is_default")]
    pub block: u64,
    /// Number of blocks (plug, unplug, state), at most 65535.
    #[serde(default, skip_serializing_if = "is_default")]
    pub count: u16,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpSpec {
    Plug,
    Unplug,
    UnplugAll,
    State,
}

/// What the management software does.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerSpec {
    /// `qom-set <device> requested-size` at a virtual time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resize: Vec<Spanned<ResizeSpec>>,
}

impl ManagerSpec {
    pub fn is_empty(&self) -> bool {
        self.resize.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeSpec {
    pub at_us: u64,
    pub device: String,
    pub requested: Bytes,
}

/// Free page hints from virtio-balloon.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonSpec {
    /// Hinted ranges: never sent; by default the guest touches them after switchover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hint: Vec<Spanned<HintSpec>>,
}

impl BalloonSpec {
    pub fn is_empty(&self) -> bool {
        self.hint.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HintSpec {
    pub device: String,
    pub offset: Bytes,
    pub len: Bytes,
    /// Whether the guest reuses the hinted pages after switchover (default true).
    #[serde(default = "yes")]
    pub touch_after: bool,
}

fn yes() -> bool {
    true
}

/// Faults beyond the configuration itself.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// A competitor takes memory from the destination's pool at a point of the migration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drain: Vec<Spanned<DrainSpec>>,
    /// The migration is cancelled at this virtual time and retried to a second destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_at_us: Option<u64>,
    /// A faulty source: postcopy without POSTCOPY_RAM_DISCARD for the pages not yet sent.
    #[serde(default, skip_serializing_if = "is_default")]
    pub skip_ram_discard: bool,
}

impl FaultSpec {
    pub fn is_empty(&self) -> bool {
        self.drain.is_empty() && self.cancel_at_us.is_none() && !self.skip_ram_discard
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DrainSpec {
    pub at: DrainPoint,
    pub bytes: Bytes,
}

/// Where the competitor strikes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainPoint {
    /// Right after the last early section (after virtio-mem's preallocation and discard).
    AfterEarly,
    /// At POSTCOPY_LISTEN.
    Listen,
    /// When the stream ends, before the guest runs on the destination.
    End,
}

/// What the scenario expects; `cargo test` and `vmemsim replay` check it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// completed, failed, crashed, postcopy-failed or runtime-crash.
    pub outcome: String,
    /// The stage as the outcome prints it, e.g. `RAM load`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// QEMU's stderr lines, with the `qemu-system-x86_64: ` prefix, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Vec<String>>,
    /// The RAM block and offset of a SIGBUS, e.g. `0000:00:03.0/mem0+0x4000000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The trace hash, as 16 hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_hash: Option<String>,
    /// The properties the run violates (a finding's replay); empty: none may be violated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violates: Vec<String>,
    /// The verdict over both sides: safe, recoverable, vm-lost or latent-crash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The source's final `MigrationStatus` (QEMU 10.0.2), e.g. `postcopy-paused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_status: Option<String>,
}
