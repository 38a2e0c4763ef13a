//! Machine types and the compat defaults that matter for virtio-mem migration.

use std::fmt;

use crate::error::ModelError;

/// The newest machine version the model knows (the QEMU 10.0 measured in real-qemu.md).
pub const LATEST: (u32, u32) = (10, 0);

/// A versioned x86 machine type, e.g. `pc-q35-7.1`; the aliases `q35` and `pc` mean the latest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MachineType {
    name: String,
    version: (u32, u32),
}

impl MachineType {
    pub fn parse(name: &str) -> Result<MachineType, ModelError> {
        let unknown = || ModelError::UnknownMachine(name.to_string());
        let version = match name {
            "q35" | "pc" => LATEST,
            _ => {
                let v = name
                    .strip_prefix("pc-q35-")
                    .or_else(|| name.strip_prefix("pc-i440fx-"))
                    .ok_or_else(unknown)?;
                let (maj, min) = v.split_once('.').ok_or_else(unknown)?;
                let version = (maj.parse().map_err(|_| unknown())?, min.parse().map_err(|_| unknown())?);
                if version < (2, 0) || version > LATEST {
                    return Err(unknown());
                }
                version
            }
        };
        Ok(MachineType { name: name.to_string(), version })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// The default of virtio-mem's `x-early-migration`: `hw_compat_7_2` (hw/core/machine.c)
    /// sets it false for every machine up to 7.2; true from 8.0 on.
    pub fn early_migration_default(&self) -> bool {
        self.version >= (8, 0)
    }

    /// Whether the migration sends MIG_CMD_SWITCHOVER_START: the `send-switchover-start`
    /// property, which `hw_compat_9_2` turns off (qemu_savevm_maybe_send_switchover_start).
    pub fn sends_switchover_start(&self) -> bool {
        self.version >= (10, 0)
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_defaults_follow_real_qemu() {
        // real-qemu.md: false on pc-q35-7.1, pc-q35-7.2, pc-i440fx-7.1; true on 8.0 and later.
        for old in ["pc-q35-7.1", "pc-q35-7.2", "pc-i440fx-7.1"] {
            assert!(!MachineType::parse(old).unwrap().early_migration_default(), "{old}");
        }
        for new in ["pc-q35-8.0", "pc-i440fx-8.0", "q35", "pc", "pc-q35-10.0"] {
            assert!(MachineType::parse(new).unwrap().early_migration_default(), "{new}");
        }
        assert!(!MachineType::parse("pc-q35-9.2").unwrap().sends_switchover_start());
        assert!(MachineType::parse("q35").unwrap().sends_switchover_start());
    }

    #[test]
    fn unknown_machines_are_refused() {
        for bad in ["virt", "pc-q35-", "pc-q35-x.1", "pc-q35-1.7", "pc-q35-99.0"] {
            assert_eq!(MachineType::parse(bad), Err(ModelError::UnknownMachine(bad.into())));
        }
    }
}
