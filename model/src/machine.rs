//! Machine types and the compat defaults that matter for virtio-mem migration.

use std::fmt;

use crate::error::ModelError;
use crate::profile::QemuProfile;

/// A versioned x86 machine type, e.g. `pc-q35-7.1`, by its canonical name: the aliases `q35` and
/// `pc` name the QEMU version's own machine, and QEMU sends the canonical name in the stream's
/// configuration section (`configuration_pre_save`: `MACHINE_GET_CLASS(current_machine)->name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MachineType {
    name: String,
    version: (u32, u32),
}

impl MachineType {
    /// `-machine NAME` on the default QEMU (10.0.2).
    pub fn parse(name: &str) -> Result<MachineType, ModelError> {
        MachineType::parse_for(name, &QemuProfile::default())
    }

    /// `-machine NAME` on the QEMU of `qemu`: the machine types its `-machine help` lists
    /// (`DEFINE_Q35_MACHINE`, `DEFINE_I440FX_MACHINE`; the alias is set on the newest).
    pub fn parse_for(name: &str, qemu: &QemuProfile) -> Result<MachineType, ModelError> {
        let v = |(maj, min): (u32, u32)| format!("{maj}.{min}");
        let unknown = || qemu.unknown_machine(name);
        let (family, rest) = match name {
            "q35" => return Ok(MachineType { name: format!("pc-q35-{}", v(qemu.newest_machine)), version: qemu.newest_machine }),
            "pc" => return Ok(MachineType { name: format!("pc-i440fx-{}", v(qemu.newest_machine)), version: qemu.newest_machine }),
            _ => match (name.strip_prefix("pc-q35-"), name.strip_prefix("pc-i440fx-")) {
                (Some(r), _) => ("q35", r),
                (_, Some(r)) => ("i440fx", r),
                _ => return Err(unknown()),
            },
        };
        let number = |p: &str| -> Result<u32, ModelError> {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
            p.parse().map_err(|_| unknown())
        };
        // pc-q35-4.0.1 is the one machine with a micro version (hw/i386/pc_q35.c).
        let rest = if family == "q35" && rest == "4.0.1" { "4.0" } else { rest };
        let (maj, min) = rest.split_once('.').ok_or_else(unknown)?;
        let version = (number(maj)?, number(min)?);
        if version < qemu.oldest_machine || version > qemu.newest_machine || !released(version) {
            return Err(unknown());
        }
        Ok(MachineType { name: name.to_string(), version })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// q35 (`pc-q35-*`) rather than i440fx (`pc-i440fx-*`).
    pub fn is_q35(&self) -> bool {
        self.name.starts_with("pc-q35-")
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

/// Whether QEMU released machines of this version: x.0 to x.2 from 4.0 on (4.x to 10.x had
/// three releases a year); 2.4 to 2.12 and 3.0, 3.1 before (`-machine help` of 10.0.2).
fn released((maj, min): (u32, u32)) -> bool {
    match maj {
        2 => (4..=12).contains(&min),
        3 => min <= 1,
        _ => min <= 2,
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
    fn aliases_name_the_versions_own_machine() {
        // `-machine help` of 10.0.2: "q35 ... (alias of pc-q35-10.0)", "pc ... (alias of pc-i440fx-10.0)".
        assert_eq!(MachineType::parse("q35").unwrap().name(), "pc-q35-10.0");
        assert_eq!(MachineType::parse("pc").unwrap().name(), "pc-i440fx-10.0");
        let q102 = QemuProfile::of("10.2.2".parse().unwrap());
        assert_eq!(MachineType::parse_for("q35", &q102).unwrap().name(), "pc-q35-10.2");
        assert!(MachineType::parse_for("pc-q35-10.2", &q102).is_ok());
        assert!(MachineType::parse("pc-q35-4.0.1").is_ok());
    }

    #[test]
    fn machines_three_years_old_are_deprecated() {
        let (q100, q102) = (QemuProfile::default(), QemuProfile::of("10.2.2".parse().unwrap()));
        let m = |n: &str| MachineType::parse_for(n, &q100).unwrap();
        // `-machine help` of 10.0.2 and 10.2.2 (built here).
        assert!(q100.deprecates(&m("pc-q35-7.0")) && !q100.deprecates(&m("pc-q35-7.1")));
        assert!(q102.deprecates(&m("pc-q35-7.2")) && !q102.deprecates(&m("pc-q35-8.0")));
        assert!(!QemuProfile::of("9.0.0".parse().unwrap()).deprecates(&m("pc-q35-2.4")));
    }

    #[test]
    fn unknown_machines_are_refused_with_what_the_version_offers() {
        for bad in ["virt", "pc-q35-", "pc-q35-x.1", "pc-q35-1.7", "pc-q35-2.3", "pc-q35-99.0", "pc-q35-10.2", "pc-q35-9.3", "pc-q35-+9.2", "pc-i440fx-4.0.1"] {
            let e = MachineType::parse(bad).unwrap_err();
            assert!(matches!(&e, ModelError::UnknownMachine { name, .. } if name == bad), "{bad}");
            assert_eq!(e.to_string(), format!("unsupported machine type: \"{bad}\""));
            assert!(e.hint().unwrap().contains("QEMU 10.0.2 offers q35 = pc-q35-10.0"), "{e}");
        }
    }
}
