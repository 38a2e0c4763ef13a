//! A QEMU release, `major.minor.micro` as `qemu-system-x86_64 --version` prints it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A QEMU release. Ordered as releases are: 10.0.5 is after 10.0.2 and before 10.1.0.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// The release series whose history the model applies (`qemu-versions.md`: 8.0 brought early
/// migration and preallocation, d71920d425; the history is read up to 10.2).
pub const SERIES: [(u32, u32); 9] = [(8, 0), (8, 1), (8, 2), (9, 0), (9, 1), (9, 2), (10, 0), (10, 1), (10, 2)];

impl QemuVersion {
    /// The version the conformance suite provisions (Debian bookworm-backports) and the
    /// scenarios' default.
    pub const DEFAULT: QemuVersion = QemuVersion::new(10, 0, 2);

    pub const fn new(major: u32, minor: u32, micro: u32) -> QemuVersion {
        QemuVersion { major, minor, micro }
    }

    /// The release series, e.g. (10, 0) for 10.0.5.
    pub fn series(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl Default for QemuVersion {
    fn default() -> QemuVersion {
        QemuVersion::DEFAULT
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// Why a version string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("'{0}' is not a QEMU version: write major.minor.micro, e.g. \"10.0.2\"")]
    Syntax(String),
    #[error("QEMU {0} is outside the history the model applies: it knows the releases 8.0.0 to 10.2.x (older QEMUs are the variant \"pre-80\"; newer ones are not read yet)")]
    Unknown(QemuVersion),
}

impl FromStr for QemuVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<QemuVersion, VersionError> {
        let syntax = || VersionError::Syntax(s.to_string());
        let mut parts = s.split('.');
        let mut next = || -> Result<u32, VersionError> {
            let p = parts.next().ok_or_else(syntax)?;
            if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            p.parse().map_err(|_| syntax())
        };
        let v = QemuVersion::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(syntax());
        }
        if !SERIES.contains(&v.series()) {
            return Err(VersionError::Unknown(v));
        }
        Ok(v)
    }
}

impl Serialize for QemuVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QemuVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<QemuVersion, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_as_releases() {
        let v = |s: &str| s.parse::<QemuVersion>().unwrap();
        assert!(v("10.0.2") < v("10.0.5") && v("10.0.13") < v("10.1.0") && v("9.2.4") < v("10.0.0"));
        assert_eq!(v("10.0.2").to_string(), "10.0.2");
        assert_eq!(QemuVersion::default(), v("10.0.2"));
    }

    #[test]
    fn bad_versions_say_why() {
        for bad in ["10.0", "10", "10.0.2.1", "x.0.2", "10.0.-1", "", "10..2", "+10.0.2"] {
            assert_eq!(bad.parse::<QemuVersion>(), Err(VersionError::Syntax(bad.into())), "{bad}");
        }
        for far in ["7.2.0", "11.1.2", "10.3.0"] {
            let e = far.parse::<QemuVersion>().unwrap_err();
            assert!(matches!(e, VersionError::Unknown(_)) && e.to_string().contains("8.0.0 to 10.2.x"), "{far}: {e}");
        }
    }
}
