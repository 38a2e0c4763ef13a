//! Named deviations from QEMU 8.0+ that the framework must be able to catch. The faithful
//! model is the default; each variant says where it comes from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// QEMU 8.0+ as in d71920d425 and the current hw/virtio/virtio-mem.c.
    #[default]
    Faithful,
    /// QEMU before 8.0 (before 3b95a71b22 and d71920d425): the bitmap travels late, after RAM,
    /// so the destination cannot preallocate plugged blocks before RAM load.
    #[serde(rename = "pre-80")]
    Pre80,
    /// d71920d425 without its discard in `virtio_mem_post_load_early`: under postcopy the
    /// preallocated pages stay present at LISTEN and UFFDIO_COPY fails with EEXIST.
    NoDiscardAfterPrealloc,
    /// MADV_DONTNEED instead of PUNCH_HOLE/REMOVE on shared memory (Firecracker's
    /// `discard_range` TODO): the page stays in the page cache, so nothing is freed.
    DontneedOnShared,
    /// Preallocating the whole region instead of the plugged blocks (what backend
    /// `prealloc=on` would do; ce1761f0f9 refuses it): wastes memory, fails on enough memory.
    PreallocWholeRegion,
    /// Preallocating after RAM load has started (the early section arrives after the first
    /// RAM pages): a short destination can die of SIGBUS before the graceful check.
    PreallocAfterRamLoad,
    /// Plug and unplug allowed during migration (Cloud Hypervisor's device has no BUSY rule):
    /// the bitmap changes after it was sent.
    PlugDuringMigration,
    /// No rollback of a failed plug (Cloud Hypervisor and Firecracker set the bitmap before a
    /// later step fails): the bitmap and the plugged size disagree afterwards.
    NoRollback,
}

impl Variant {
    pub const ALL: [Variant; 8] = [
        Variant::Faithful,
        Variant::Pre80,
        Variant::NoDiscardAfterPrealloc,
        Variant::DontneedOnShared,
        Variant::PreallocWholeRegion,
        Variant::PreallocAfterRamLoad,
        Variant::PlugDuringMigration,
        Variant::NoRollback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Faithful => "faithful",
            Variant::Pre80 => "pre-80",
            Variant::NoDiscardAfterPrealloc => "no-discard-after-prealloc",
            Variant::DontneedOnShared => "dontneed-on-shared",
            Variant::PreallocWholeRegion => "prealloc-whole-region",
            Variant::PreallocAfterRamLoad => "prealloc-after-ram-load",
            Variant::PlugDuringMigration => "plug-during-migration",
            Variant::NoRollback => "no-rollback",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> Result<Variant, String> {
        Variant::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
            format!("unknown variant '{s}': known variants are {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_cli_names_agree() {
        #[derive(Serialize, Deserialize)]
        struct W {
            v: Variant,
        }
        for v in Variant::ALL {
            let text = toml::to_string(&W { v }).unwrap();
            assert_eq!(text.trim(), format!("v = \"{}\"", v.name()));
            assert_eq!(v.name().parse::<Variant>(), Ok(v));
        }
    }
}
