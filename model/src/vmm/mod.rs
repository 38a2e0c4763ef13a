//! Which VMM runs both sides: QEMU (a release of the history in [`crate::profile`]), Cloud
//! Hypervisor or Firecracker, each modelled from its own code (`other-vmms.md` and the files
//! each rule cites). A rule that differs by VMM lives in that VMM's module, never behind a test
//! of the name: [`cloud_hypervisor`] and [`firecracker`] answer requests by their
//! [`mem_state::DeviceRules`], [`other_migration`] fills their destinations, and
//! [`guest_driver`] is the Linux driver's side of every profile.

pub mod cloud_hypervisor;
pub mod firecracker;
pub mod guest_driver;
pub mod mem_state;
pub mod other_migration;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::qemu_version::QemuVersion;

/// A release tag `vMAJOR.MINOR[.PATCH]` of Cloud Hypervisor or Firecracker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Tag {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Tag {
        Tag { major, minor, patch }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)?;
        if self.patch != 0 || self.major < 10 {
            write!(f, ".{}", self.patch)?;
        }
        Ok(())
    }
}

/// One VMM at one release.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vmm {
    Qemu(QemuVersion),
    CloudHypervisor(Tag),
    Firecracker(Tag),
}

/// The releases of Cloud Hypervisor the model has read ([`cloud_hypervisor`] says what changes
/// between them).
pub const CLOUD_HYPERVISOR_TAGS: [Tag; 3] = [Tag::new(48, 0, 0), Tag::new(52, 0, 0), Tag::new(53, 0, 0)];
/// The releases of Firecracker with virtio-mem (since v1.14.0, tracking issue #5348).
pub const FIRECRACKER_TAGS: [Tag; 3] = [Tag::new(1, 14, 0), Tag::new(1, 15, 0), Tag::new(1, 16, 1)];

impl Vmm {
    /// The default: QEMU's default release.
    pub const DEFAULT: Vmm = Vmm::Qemu(QemuVersion::DEFAULT);

    /// The newest release of each VMM, as `diff` compares them by default.
    pub fn newest() -> [Vmm; 3] {
        [Vmm::DEFAULT, Vmm::CloudHypervisor(CLOUD_HYPERVISOR_TAGS[2]), Vmm::Firecracker(FIRECRACKER_TAGS[2])]
    }

    /// The family's name as the profile string starts.
    pub fn family(self) -> &'static str {
        match self {
            Vmm::Qemu(_) => "qemu",
            Vmm::CloudHypervisor(_) => "cloud-hypervisor",
            Vmm::Firecracker(_) => "firecracker",
        }
    }

    /// The request rules of a non-QEMU profile (QEMU's are [`crate::device::VirtioMem`]'s).
    pub fn device_rules(self) -> Option<Box<dyn mem_state::DeviceRules>> {
        match self {
            Vmm::Qemu(_) => None,
            Vmm::CloudHypervisor(tag) => Some(Box::new(cloud_hypervisor::CloudHypervisor { tag })),
            Vmm::Firecracker(tag) => Some(Box::new(firecracker::Firecracker { tag })),
        }
    }

    /// The QEMU release, for QEMU.
    pub fn qemu(self) -> Option<QemuVersion> {
        match self {
            Vmm::Qemu(v) => Some(v),
            _ => None,
        }
    }
}

impl Default for Vmm {
    fn default() -> Vmm {
        Vmm::DEFAULT
    }
}

impl fmt::Display for Vmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vmm::Qemu(v) => write!(f, "qemu-{v}"),
            Vmm::CloudHypervisor(t) => write!(f, "cloud-hypervisor-{t}"),
            Vmm::Firecracker(t) => write!(f, "firecracker-{t}"),
        }
    }
}

/// Why a profile string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmmError {
    #[error("'{0}' is not a VMM profile: write qemu-X.Y.Z (e.g. qemu-10.0.2), cloud-hypervisor-vX.Y (e.g. cloud-hypervisor-v53.0) or firecracker-vX.Y.Z (e.g. firecracker-v1.16.1)")]
    Syntax(String),
    #[error("{0}")]
    Qemu(#[from] crate::qemu_version::VersionError),
    #[error("'{given}' is not a release the model has read: {family} profiles are {known}")]
    UnknownTag { given: String, family: &'static str, known: String },
}

fn parse_tag(s: &str) -> Option<Tag> {
    let rest = s.strip_prefix('v')?;
    let mut parts = rest.split('.');
    let num = |p: Option<&str>| -> Option<u32> { p.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 6).and_then(|p| p.parse().ok()) };
    let major = num(parts.next())?;
    let minor = num(parts.next())?;
    let patch = match parts.next() {
        None => 0,
        p => num(p)?,
    };
    parts.next().is_none().then_some(Tag { major, minor, patch })
}

fn known(family: &'static str, tags: &[Tag], given: &str) -> Result<Tag, VmmError> {
    let unknown = || VmmError::UnknownTag { given: given.to_string(), family, known: tags.iter().map(|t| format!("{family}-{t}")).collect::<Vec<_>>().join(", ") };
    let tag = parse_tag(given).ok_or_else(unknown)?;
    tags.iter().copied().find(|t| *t == tag).ok_or_else(unknown)
}

impl FromStr for Vmm {
    type Err = VmmError;
    fn from_str(s: &str) -> Result<Vmm, VmmError> {
        if let Some(v) = s.strip_prefix("qemu-") {
            return Ok(Vmm::Qemu(v.parse()?));
        }
        if let Some(t) = s.strip_prefix("cloud-hypervisor-") {
            return Ok(Vmm::CloudHypervisor(known("cloud-hypervisor", &CLOUD_HYPERVISOR_TAGS, t)?));
        }
        if let Some(t) = s.strip_prefix("firecracker-") {
            return Ok(Vmm::Firecracker(known("firecracker", &FIRECRACKER_TAGS, t)?));
        }
        Err(VmmError::Syntax(s.to_string()))
    }
}

impl Serialize for Vmm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Vmm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Vmm, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_round_trip() {
        for name in ["qemu-10.0.2", "qemu-9.2.4", "cloud-hypervisor-v53.0", "cloud-hypervisor-v48.0", "firecracker-v1.16.1", "firecracker-v1.14.0"] {
            let v: Vmm = name.parse().unwrap();
            assert_eq!(v.to_string(), name);
        }
        assert_eq!(Vmm::default().to_string(), "qemu-10.0.2");
    }

    #[test]
    fn unknown_profiles_say_what_is_known() {
        let e = "cloud-hypervisor-v54.0".parse::<Vmm>().unwrap_err().to_string();
        assert!(e.contains("cloud-hypervisor-v53.0") && e.contains("'v54.0'"), "{e}");
        let e = "firecracker-1.16.1".parse::<Vmm>().unwrap_err().to_string();
        assert!(e.contains("firecracker-v1.16.1"), "{e}");
        assert!(matches!("kvmtool".parse::<Vmm>(), Err(VmmError::Syntax(_))));
        assert!(matches!("qemu-7.2.0".parse::<Vmm>(), Err(VmmError::Qemu(_))));
        assert!("firecracker-v1.16.1.2".parse::<Vmm>().is_err() && "cloud-hypervisor-v53.".parse::<Vmm>().is_err());
    }
}
