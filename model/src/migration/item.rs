//! What travels in a migration stream, at the granularity the model needs: commands, sections
//! and runs of RAM pages (migration/savevm.c, migration/ram.c).

use std::fmt;

use crate::plug_map::PlugMap;
use crate::host::PageKind;
use crate::units::{Bytes, Gpa};

/// The sanity fields of `VirtIOMEMMigSanityChecks` (hw/virtio/virtio-mem.c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanityFields {
    pub addr: Gpa,
    pub region_size: Bytes,
    pub block_size: Bytes,
    pub node: u32,
}

/// The plug state a virtio-mem section carries: early on new machines, late on old ones. The
/// plug map is shared, not copied, between the source, the stream and the destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlugState {
    pub sanity: SanityFields,
    pub size: Bytes,
    pub plug: std::sync::Arc<PlugMap>,
}

/// `vmstate_virtio_mem_device_early`: a FULL section sent in `qemu_savevm_state_setup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarlySection {
    pub idstr: String,
    pub state: PlugState,
}

/// `vmstate_virtio_mem_device` inside the `…/virtio-mem` section: sent with the device state
/// at completion (precopy) or in the postcopy package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateSection {
    pub idstr: String,
    pub usable_region_size: Bytes,
    pub requested_size: Bytes,
    /// Present only when `x-early-migration` is off (`virtio_mem_vmstate_field_exists`).
    pub plug: Option<PlugState>,
}

/// One item of the stream, in the order the source writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Magic, version and the configuration section with the machine type.
    Header { machine: String },
    /// MIG_CMD_OPEN_RETURN_PATH.
    OpenReturnPath,
    /// MIG_CMD_PING.
    Ping(u32),
    /// MIG_CMD_POSTCOPY_ADVISE.
    PostcopyAdvise,
    /// START section of "ram": the RAM block list (names and lengths), no page data.
    RamSetup { blocks: Vec<(String, Bytes)> },
    /// FULL section `…/virtio-mem-device-early`.
    Early(Box<EarlySection>),
    /// A run of pages of one RAM block (index into the RAM setup list), all of one kind.
    Ram { block: usize, offset: Bytes, len: Bytes, kind: PageKind },
    /// MIG_CMD_SWITCHOVER_START (10.0+ machine types).
    SwitchoverStart,
    /// MIG_CMD_POSTCOPY_RAM_DISCARD: ranges of one RAM block the destination must drop.
    RamDiscard { block: usize, ranges: Vec<(Bytes, Bytes)> },
    /// MIG_CMD_POSTCOPY_LISTEN (first item of the postcopy package).
    Listen,
    /// FULL section `…/virtio-mem` with the late device state.
    Late(Box<LateSection>),
    /// MIG_CMD_POSTCOPY_RUN (last item of the package): the guest runs on the destination.
    Run,
    /// QEMU_VM_EOF.
    Eof,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Header { machine } => write!(f, "HEADER machine={machine}"),
            Item::OpenReturnPath => write!(f, "CMD OPEN_RETURN_PATH"),
            Item::Ping(n) => write!(f, "CMD PING {n}"),
            Item::PostcopyAdvise => write!(f, "CMD POSTCOPY_ADVISE"),
            Item::RamSetup { blocks } => {
                write!(f, "START ram")?;
                for (name, len) in blocks {
                    write!(f, " {name}={:#x}", len.0)?;
                }
                Ok(())
            }
            Item::Early(e) => write!(
                f,
                "FULL {} size={:#x} plugged_blocks={}",
                e.idstr,
                e.state.size.0,
                e.state.plug.plugged_blocks().0
            ),
            Item::Ram { block, offset, len, kind } => {
                let k = match kind {
                    PageKind::Normal => "PAGE",
                    PageKind::Zero => "ZERO",
                };
                write!(f, "RAM block#{block} {:#x}+{:#x} {k}", offset.0, len.0)
            }
            Item::SwitchoverStart => write!(f, "CMD SWITCHOVER_START"),
            Item::RamDiscard { block, ranges } => {
                write!(f, "CMD POSTCOPY_RAM_DISCARD block#{block}")?;
                for (o, l) in ranges {
                    write!(f, " {:#x}+{:#x}", o.0, l.0)?;
                }
                Ok(())
            }
            Item::Listen => write!(f, "CMD POSTCOPY_LISTEN"),
            Item::Late(l) => write!(
                f,
                "FULL {} usable={:#x} requested={:#x}{}",
                l.idstr,
                l.usable_region_size.0,
                l.requested_size.0,
                match &l.plug {
                    Some(p) => format!(" size={:#x} plugged_blocks={}", p.size.0, p.plug.plugged_blocks().0),
                    None => String::new(),
                }
            ),
            Item::Run => write!(f, "CMD POSTCOPY_RUN"),
            Item::Eof => write!(f, "EOF"),
        }
    }
}
