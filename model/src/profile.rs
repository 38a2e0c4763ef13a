//! What a QEMU version does differently: the commits of QEMU's history after 8.0 that change an
//! outcome the model can express (`qemu-versions.md`), each with the release that first has it
//! and the stable releases it was backported to. A rule that differs by version reads its
//! answer from the [`QemuProfile`] built here, never from a version test of its own.

use crate::qemu_version::QemuVersion;

/// One commit of QEMU's history.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub commit: &'static str,
    pub title: &'static str,
    /// The first release series that has it (its .0 release).
    pub first: (u32, u32),
    /// Stable releases that took it as a backport: that release and the later ones of its series.
    pub backports: &'static [QemuVersion],
}

impl Change {
    /// Whether `v` contains the commit.
    pub fn applies_to(&self, v: QemuVersion) -> bool {
        v.series() >= self.first || self.backports.iter().any(|b| b.series() == v.series() && v.micro >= b.micro)
    }
}

/// migration/migration.c `postcopy_start` → `migration_switchover_start`: the source passes
/// through `device` at every switchover, postcopy included (active → device → postcopy-active).
pub const ALWAYS_DEVICE_STATE: Change =
    Change { commit: "48814111366b", title: "migration: Always set DEVICE state", first: (10, 0), backports: &[] };

/// migration/migration.c `qmp_migrate_cancel`: refused while `migration_in_postcopy()` with
/// "Postcopy migration in progress, cannot cancel." (read in 10.0.2's source and run there; the
/// patch is "[PATCH v3 5/9] migration: Reject qmp_migrate_cancel after postcopy", Feb 2025,
/// merged for 10.0; the hash is the reference table's).
pub const CANCEL_REFUSED_IN_POSTCOPY: Change =
    Change { commit: "646119088f", title: "migration: Reject qmp_migrate_cancel after postcopy", first: (10, 0), backports: &[] };

/// migration/migration.c `postcopy_start` `fail:`: moves any state but CANCELLING to FAILED
/// (before: POSTCOPY_ACTIVE → FAILED only, which never matches once 48814111366b left the state
/// in DEVICE there). Backported as da22a22323 (10.0.5) and 109f336448 (10.1.1).
pub const POSTCOPY_START_FAILURE_FAILS: Change = Change {
    commit: "725a9e5f78",
    title: "migration: Fix state transition in postcopy_start() error handling",
    first: (10, 2),
    backports: &[QemuVersion::new(10, 0, 5), QemuVersion::new(10, 1, 1)],
};

/// migration/migration.c `postcopy_start`, `migration_detect_error`: the source rests in
/// `postcopy-device` until the destination answers the PING (0x42) inside the package, and a
/// file error there fails the migration instead of pausing it.
pub const POSTCOPY_DEVICE_STATE: Change =
    Change { commit: "7b842fe354", title: "migration: Introduce POSTCOPY_DEVICE state", first: (10, 2), backports: &[] };

/// migration/vmstate.c `vmstate_load_state`, migration/savevm.c: load errors travel as one
/// Error object, so the destination prints one joined line instead of one line per level
/// ("load of migration failed: Cannot allocate memory: error while loading state for instance
/// 0x0 of device '...': post load hook failed for: virtio-mem-device-early, version_id: 1,
/// minimum_version: 1, ret: -12"), and a failed postcopy placement no longer prints "error
/// while loading state section id 1(ram)". Arun Menon's series (v15 "[PATCH 25/26]
/// migration: Add error-parameterized function variants in VMSD struct", Sep 2025; the hash
/// is not read); both texts observed on a 10.2.2 built here. Other load errors of 10.2 are not
/// observed: the model keeps 10.0's lines there [INF].
pub const LOAD_ERRORS_AS_ONE: Change =
    Change { commit: "(series) migration: propagate errors with Error objects", title: "migration: Add error-parameterized function variants in VMSD struct", first: (10, 2), backports: &[] };

/// include/hw/boards.h `MACHINE_VER_DEPRECATION`: versioned machines more than 3 years (nine
/// releases) older than the QEMU are deprecated and warn at start-up. Observed: 10.0.2 warns
/// for pc-q35-7.0 and not 7.1, 10.2.2 for 7.2 and not 8.0 [INF: introduced for 9.1; older
/// releases are modelled without the warning].
pub const AUTOMATIC_MACHINE_DEPRECATION: Change =
    Change { commit: "(series) hw: add macros for deprecation & removal of versioned machines", title: "automatic deprecation of versioned machines", first: (9, 1), backports: &[] };

/// Every change the model applies, for listings.
pub const CHANGES: [Change; 6] = [ALWAYS_DEVICE_STATE, CANCEL_REFUSED_IN_POSTCOPY, POSTCOPY_START_FAILURE_FAILS, POSTCOPY_DEVICE_STATE, LOAD_ERRORS_AS_ONE, AUTOMATIC_MACHINE_DEPRECATION];

/// The answers of one QEMU version to every rule that differs by version.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct QemuProfile {
    pub version: QemuVersion,
    /// [`ALWAYS_DEVICE_STATE`].
    pub device_at_postcopy_switchover: bool,
    /// [`CANCEL_REFUSED_IN_POSTCOPY`].
    pub cancel_refused_in_postcopy: bool,
    /// Whether a failure inside `postcopy_start` moves the source to FAILED (and
    /// `migration_iteration_finish` restarts the guest): before [`ALWAYS_DEVICE_STATE`] the state
    /// was already POSTCOPY_ACTIVE there, so the old cmpxchg matched (725a9e5f78's message: the
    /// commit "moved the actual state transition that leads to POSTCOPY_ACTIVE" to just before
    /// a successful return); from it until
    /// [`POSTCOPY_START_FAILURE_FAILS`] the source stays in `device`.
    pub postcopy_start_failure_fails: bool,
    /// [`POSTCOPY_DEVICE_STATE`].
    pub postcopy_device: bool,
    /// [`LOAD_ERRORS_AS_ONE`].
    pub load_errors_as_one: bool,
    /// The machine versions `-machine help` lists (hw/i386/pc_q35.c, pc_piix.c): from the oldest
    /// still offered to the version's own, which the aliases `q35` and `pc` name.
    pub oldest_machine: (u32, u32),
    pub newest_machine: (u32, u32),
}

impl QemuProfile {
    pub fn of(version: QemuVersion) -> QemuProfile {
        let device = ALWAYS_DEVICE_STATE.applies_to(version);
        QemuProfile {
            version,
            device_at_postcopy_switchover: device,
            cancel_refused_in_postcopy: CANCEL_REFUSED_IN_POSTCOPY.applies_to(version),
            postcopy_start_failure_fails: !device || POSTCOPY_START_FAILURE_FAILS.applies_to(version),
            postcopy_device: POSTCOPY_DEVICE_STATE.applies_to(version),
            load_errors_as_one: LOAD_ERRORS_AS_ONE.applies_to(version),
            oldest_machine: oldest_machine(version),
            newest_machine: version.series(),
        }
    }
}

impl QemuProfile {
    /// Whether `m` warns as deprecated at start-up ([`AUTOMATIC_MACHINE_DEPRECATION`]): three
    /// releases a year, so more than nine releases older than this QEMU.
    pub fn deprecates(&self, m: &crate::machine::MachineType) -> bool {
        let index = |(maj, min): (u32, u32)| maj * 3 + min;
        AUTOMATIC_MACHINE_DEPRECATION.applies_to(self.version) && index(m.version()) + 9 <= index(self.version.series())
    }

    /// The newest release the model knows (its machines are the newest it can name).
    pub fn newest() -> QemuProfile {
        let (major, minor) = *crate::qemu_version::SERIES.last().expect("the model knows releases");
        QemuProfile::of(QemuVersion::new(major, minor, 0))
    }

    /// Whether `-machine help` lists the machine.
    pub fn offers(&self, m: &crate::machine::MachineType) -> bool {
        (self.oldest_machine..=self.newest_machine).contains(&m.version())
    }

    /// `select_machine`'s refusal of `name`.
    pub fn unknown_machine(&self, name: &str) -> crate::error::ModelError {
        let v = |(maj, min): (u32, u32)| format!("{maj}.{min}");
        crate::error::ModelError::UnknownMachine { name: name.to_string(), qemu: self.version, oldest: v(self.oldest_machine), newest: v(self.newest_machine) }
    }
}

impl Default for QemuProfile {
    fn default() -> QemuProfile {
        QemuProfile::of(QemuVersion::DEFAULT)
    }
}

/// The oldest x86 machine version a release offers: 2.4 in 10.0 (`-machine help` of 10.0.2
/// lists pc-q35-2.4 and pc-i440fx-2.4 as deprecated, nothing older); pc-i440fx-2.0 to 2.3
/// were removed for 9.1 ("hw/i386: Remove deprecated pc-i440fx-2.0 -> 2.3 machines", merged
/// June 2024), so 2.0 before [INF: older removals are not read]; `-machine help` of a 10.2.2
/// built here starts at pc-q35-5.0 and pc-i440fx-5.0 [10.1's list is not read: INF 2.4].
fn oldest_machine(v: QemuVersion) -> (u32, u32) {
    if v.series() >= (10, 2) {
        (5, 0)
    } else if v.series() >= (9, 1) {
        (2, 4)
    } else {
        (2, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> QemuProfile {
        QemuProfile::of(s.parse().unwrap())
    }

    #[test]
    fn backports_apply_from_their_stable_release_on() {
        assert!(!POSTCOPY_START_FAILURE_FAILS.applies_to("10.0.4".parse().unwrap()));
        assert!(POSTCOPY_START_FAILURE_FAILS.applies_to("10.0.5".parse().unwrap()));
        assert!(POSTCOPY_START_FAILURE_FAILS.applies_to("10.0.13".parse().unwrap()));
        assert!(!POSTCOPY_START_FAILURE_FAILS.applies_to("10.1.0".parse().unwrap()));
        assert!(POSTCOPY_START_FAILURE_FAILS.applies_to("10.1.1".parse().unwrap()));
        assert!(POSTCOPY_START_FAILURE_FAILS.applies_to("10.2.0".parse().unwrap()));
    }

    #[test]
    fn the_device_window_exists_from_10_0_0_until_the_fix() {
        assert!(p("9.2.0").postcopy_start_failure_fails);
        assert!(!p("10.0.2").postcopy_start_failure_fails);
        assert!(p("10.0.5").postcopy_start_failure_fails);
        assert!(!p("10.1.0").postcopy_start_failure_fails);
        assert!(p("10.2.2").postcopy_start_failure_fails && p("10.2.2").postcopy_device);
        assert!(!p("10.1.1").postcopy_device);
        assert_eq!(p("10.2.0").newest_machine, (10, 2));
        assert_eq!((p("10.2.2").oldest_machine, p("10.0.2").oldest_machine, p("9.0.0").oldest_machine), ((5, 0), (2, 4), (2, 0)));
    }
}
