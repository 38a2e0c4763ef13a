//! Unit-carrying newtypes: byte counts, guest-physical addresses, block indices and counts.
//!
//! Arithmetic is checked: an overflow returns `None` (or a [`UnitError`] when parsing user
//! input), never wraps. QEMU shipped a bitmap-index bug ("virtio-mem: Fix the bitmap index of
//! the section offset", Dec 2022) that dividing by the wrong unit caused; these types refuse it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors from parsing a size or address written by a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The text is not a number with an optional unit suffix.
    #[error("'{0}' is not a size: write a number with an optional suffix K, M, G or T (binary units, e.g. 2M, 8100M, 30G) or a hex number (0x200000)")]
    NotASize(String),
    /// The value does not fit in 64 bits.
    #[error("'{0}' does not fit in 64 bits")]
    Overflow(String),
}

/// A number of bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

/// A guest-physical address.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Gpa(pub u64);

/// The index of a virtio-mem block within its device's region.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockIndex(pub u64);

/// A number of virtio-mem blocks.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockCount(pub u64);

impl Bytes {
    pub const ZERO: Bytes = Bytes(0);
    pub const KIB: Bytes = Bytes(1 << 10);
    pub const MIB: Bytes = Bytes(1 << 20);
    pub const GIB: Bytes = Bytes(1 << 30);
    pub const TIB: Bytes = Bytes(1 << 40);

    pub const fn mib(n: u64) -> Bytes {
        Bytes(n << 20)
    }
    pub const fn gib(n: u64) -> Bytes {
        Bytes(n << 30)
    }
    pub fn get(self) -> u64 {
        self.0
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn checked_add(self, o: Bytes) -> Option<Bytes> {
        self.0.checked_add(o.0).map(Bytes)
    }
    pub fn checked_sub(self, o: Bytes) -> Option<Bytes> {
        self.0.checked_sub(o.0).map(Bytes)
    }
    pub fn checked_mul(self, n: u64) -> Option<Bytes> {
        self.0.checked_mul(n).map(Bytes)
    }
    /// True if `self` is a multiple of `align` (`QEMU_IS_ALIGNED`). `align` must not be zero.
    pub fn is_multiple_of(self, align: Bytes) -> bool {
        assert!(align.0 != 0, "alignment of zero bytes");
        self.0 % align.0 == 0
    }
    pub fn is_power_of_two(self) -> bool {
        self.0.is_power_of_two()
    }
    /// `QEMU_ALIGN_UP`, `None` on overflow.
    pub fn align_up(self, align: Bytes) -> Option<Bytes> {
        assert!(align.0 != 0, "alignment of zero bytes");
        let rem = self.0 % align.0;
        if rem == 0 {
            Some(self)
        } else {
            self.0.checked_add(align.0 - rem).map(Bytes)
        }
    }
    /// `QEMU_ALIGN_DOWN`.
    pub fn align_down(self, align: Bytes) -> Bytes {
        assert!(align.0 != 0, "alignment of zero bytes");
        Bytes(self.0 - self.0 % align.0)
    }
    /// How many whole blocks of `block` bytes fit in `self`.
    pub fn blocks(self, block: Bytes) -> BlockCount {
        assert!(block.0 != 0, "block size of zero bytes");
        BlockCount(self.0 / block.0)
    }
}

impl BlockIndex {
    /// The byte offset of this block in its region, `None` on overflow.
    pub fn offset(self, block_size: Bytes) -> Option<Bytes> {
        self.0.checked_mul(block_size.0).map(Bytes)
    }
}

impl BlockCount {
    /// The bytes these blocks cover, `None` on overflow.
    pub fn bytes(self, block_size: Bytes) -> Option<Bytes> {
        self.0.checked_mul(block_size.0).map(Bytes)
    }
}

impl Gpa {
    pub fn checked_add(self, len: Bytes) -> Option<Gpa> {
        self.0.checked_add(len.0).map(Gpa)
    }
    /// The distance from `base` up to `self`, `None` if `self` lies below `base`.
    pub fn offset_from(self, base: Gpa) -> Option<Bytes> {
        self.0.checked_sub(base.0).map(Bytes)
    }
}

/// Parses sizes as QEMU's command line does: a decimal number with an optional binary suffix
/// (K, M, G, T, optionally followed by "iB" or "B"), or a hex number with a `0x` prefix.
impl FromStr for Bytes {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Bytes, UnitError> {
        let t = s.trim();
        let bad = || UnitError::NotASize(s.to_string());
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            return u64::from_str_radix(hex, 16).map(Bytes).map_err(|_| bad());
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        if num.is_empty() {
            return Err(bad());
        }
        let n: u64 = num.parse().map_err(|_| UnitError::Overflow(s.to_string()))?;
        let suffix = suffix.trim();
        let unit = suffix.trim_end_matches("iB").trim_end_matches('B');
        let shift = match unit {
            "" => 0,
            "K" | "k" => 10,
            "M" | "m" => 20,
            "G" | "g" => 30,
            "T" | "t" => 40,
            _ => return Err(bad()),
        };
        if !suffix.is_empty() && unit.is_empty() && suffix != "B" {
            return Err(bad());
        }
        n.checked_mul(1u64 << shift).map(Bytes).ok_or_else(|| UnitError::Overflow(s.to_string()))
    }
}

impl FromStr for Gpa {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Gpa, UnitError> {
        s.parse::<Bytes>().map(|b| Gpa(b.0))
    }
}

/// Prints the largest binary unit that divides the value exactly (`2 MiB`, `8100 MiB`), else hex.
impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
        if self.0 == 0 {
            return write!(f, "0 B");
        }
        for (shift, name) in UNITS {
            if self.0 % (1u64 << shift) == 0 {
                return write!(f, "{} {}", self.0 >> shift, name);
            }
        }
        write!(f, "{:#x} B", self.0)
    }
}

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for BlockIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.0)
    }
}

impl fmt::Display for BlockCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} blocks", self.0)
    }
}

/// Sizes in scenario files may be written as a string ("2M") or a plain integer of bytes.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        match SizeRepr::deserialize(d)? {
            SizeRepr::Int(n) => Ok(Bytes(n)),
            SizeRepr::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Writes the form the parser reads back: `2M`, `30G`, or plain bytes.
impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
        let text = UNITS
            .iter()
            .find(|(shift, _)| self.0 != 0 && self.0 % (1u64 << shift) == 0)
            .map_or_else(|| self.0.to_string(), |(shift, u)| format!("{}{u}", self.0 >> shift));
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Gpa {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Gpa, D::Error> {
        Bytes::deserialize(d).map(|b| Gpa(b.0))
    }
}

impl Serialize for Gpa {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:#x}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_style_sizes() {
        assert_eq!("2M".parse::<Bytes>(), Ok(Bytes::mib(2)));
        assert_eq!("8100M".parse::<Bytes>(), Ok(Bytes::mib(8100)));
        assert_eq!("30G".parse::<Bytes>(), Ok(Bytes::gib(30)));
        assert_eq!("16TiB".parse::<Bytes>(), Ok(Bytes(16 << 40)));
        assert_eq!("0x140000000".parse::<Bytes>(), Ok(Bytes(0x1_4000_0000)));
        assert_eq!("4096".parse::<Bytes>(), Ok(Bytes(4096)));
        assert_eq!("4096B".parse::<Bytes>(), Ok(Bytes(4096)));
        assert!(matches!("2X".parse::<Bytes>(), Err(UnitError::NotASize(_))));
        assert!(matches!("M".parse::<Bytes>(), Err(UnitError::NotASize(_))));
        assert!(matches!("99999999999T".parse::<Bytes>(), Err(UnitError::Overflow(_))));
    }

    #[test]
    fn serialized_sizes_parse_back() {
        #[derive(Serialize, Deserialize)]
        struct W {
            b: Bytes,
            g: Gpa,
        }
        for v in [0, 1, 4096, 4097, 2 << 20, 8100 << 20, 3 << 40, u64::MAX] {
            let text = toml::to_string(&W { b: Bytes(v), g: Gpa(v) }).unwrap();
            let back: W = toml::from_str(&text).unwrap();
            assert_eq!((back.b, back.g), (Bytes(v), Gpa(v)), "{text}");
        }
    }

    #[test]
    fn display_picks_exact_unit() {
        assert_eq!(Bytes::mib(8100).to_string(), "8100 MiB");
        assert_eq!(Bytes::gib(30).to_string(), "30 GiB");
        assert_eq!(Bytes(4097).to_string(), "0x1001 B");
    }

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(Bytes(u64::MAX).checked_add(Bytes(1)), None);
        assert_eq!(BlockCount(u64::MAX).bytes(Bytes::MIB), None);
        assert_eq!(Gpa(5).offset_from(Gpa(6)), None);
        assert_eq!(Bytes(3).align_up(Bytes(2)), Some(Bytes(4)));
        assert_eq!(Bytes(u64::MAX).align_up(Bytes(2)), None);
    }
}
