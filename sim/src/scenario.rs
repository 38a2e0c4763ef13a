//! The scenario file format (TOML): a source and a destination, their virtio-mem devices and
//! memory, the migration, the guest's actions, the variant, and the expected outcome.

use serde::{Deserialize, Serialize};
use toml::Spanned;
use vmemsim_model::{BackendKind, Bytes, Gpa, Variant};

/// A whole scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short title.
    pub name: String,
    /// What the scenario shows and where its facts come from.
    #[serde(default)]
    pub description: String,
    /// The seed the simulator derives its random streams from.
    #[serde(default)]
    pub seed: u64,
    /// The model variant under test (default: faithful QEMU 8.0+).
    #[serde(default)]
    pub variant: Variant,
    pub source: SideSpec,
    pub destination: DestinationSpec,
    #[serde(rename = "device", default)]
    pub devices: Vec<Spanned<DeviceSpec>>,
    #[serde(default)]
    pub migration: MigrationSpec,
    #[serde(default)]
    pub guest: GuestSpec,
    #[serde(default)]
    pub balloon: BalloonSpec,
    pub expect: Option<Spanned<Expect>>,
}

/// One side's machine and memory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideSpec {
    /// Machine type, e.g. `q35`, `pc-q35-7.1`.
    pub machine: Spanned<String>,
    /// Ordinary RAM (`-m`), private anonymous.
    #[serde(default)]
    pub main_ram: Bytes,
    /// The backend of the virtio-mem memdevs.
    pub backend: Spanned<BackendSpec>,
    /// NUMA nodes configured with `-numa` (0: none).
    #[serde(default)]
    pub numa_nodes: u32,
}

/// The destination: like a side, and every field may default to the source's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    pub machine: Option<Spanned<String>>,
    pub main_ram: Option<Bytes>,
    pub backend: Spanned<BackendSpec>,
    pub numa_nodes: Option<u32>,
    /// Overrides every device's `prealloc` on the destination.
    pub prealloc: Option<bool>,
}

/// A memory backend: kind, page size and capacity.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    pub kind: BackendKind,
    /// Page size; default 2M for hugetlb kinds, 4K otherwise.
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
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub id: String,
    /// PCI address, e.g. `0000:00:03.0`.
    pub pci: String,
    /// Memory backend id; default `mem<N>`.
    pub memdev: Option<String>,
    pub memaddr: Gpa,
    /// The memdev's size: the device's region.
    pub region: Bytes,
    /// `block-size`; default QEMU's.
    pub block_size: Option<Bytes>,
    /// `requested-size`.
    pub requested: Bytes,
    /// What the guest has plugged when migration starts: a size plugged from the lowest block
    /// up (default: the requested size) ...
    pub plugged: Option<Bytes>,
    /// ... or explicit runs of blocks, `[[first, count], ...]`.
    pub plugged_blocks: Option<Vec<[u64; 2]>>,
    #[serde(default)]
    pub prealloc: bool,
    #[serde(default)]
    pub node: u32,
    /// `x-early-migration`; default the machine type's.
    pub early_migration: Option<bool>,
    /// The memory backend's own `prealloc=on` (QEMU refuses it).
    #[serde(default)]
    pub memdev_prealloc: bool,
    /// Differences on the destination (a mismatched configuration).
    #[serde(default)]
    pub destination: DeviceOverrides,
}

/// Fields of a device that differ on the destination.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOverrides {
    pub memaddr: Option<Gpa>,
    pub region: Option<Bytes>,
    pub block_size: Option<Bytes>,
    pub node: Option<u32>,
    pub prealloc: Option<bool>,
    pub early_migration: Option<bool>,
    pub memdev_prealloc: Option<bool>,
}

/// How the migration runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    #[serde(default)]
    pub mode: ModeSpec,
    /// Postcopy only: the share of page bytes sent before `migrate-start-postcopy` (0-100).
    pub switch_percent: Option<u8>,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    #[default]
    Precopy,
    Postcopy,
}

/// A byte range of one device's region, by device id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    pub device: String,
    pub offset: Bytes,
    pub len: Bytes,
}

/// What the guest does.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// Ranges the guest wrote before migration (sent as normal pages).
    #[serde(default)]
    pub data: Vec<Spanned<RangeSpec>>,
    /// Ranges the guest writes on the destination after switchover.
    #[serde(default)]
    pub touch: Vec<Spanned<RangeSpec>>,
}

/// Free page hints from virtio-balloon.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonSpec {
    /// Hinted ranges: never sent; by default the guest touches them after switchover.
    #[serde(default)]
    pub hint: Vec<Spanned<HintSpec>>,
}

#[derive(Clone, Debug, Deserialize)]
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

/// What the scenario expects; `cargo test` and `vmemsim replay` check it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// completed, failed, crashed, postcopy-failed or runtime-crash.
    pub outcome: String,
    /// The stage as the outcome prints it, e.g. `RAM load`.
    pub stage: Option<String>,
    /// QEMU's stderr lines, with the `qemu-system-x86_64: ` prefix, exactly.
    pub stderr: Option<Vec<String>>,
    /// The RAM block and offset of a SIGBUS, e.g. `0000:00:03.0/mem0+0x4000000`.
    pub fault: Option<String>,
    /// The trace hash, as 16 hex digits.
    pub trace_hash: Option<String>,
}
