//! QEMU's migration stream format, the subset that carries RAM and virtio-mem state
//! (migration/savevm.c, migration/ram.c, migration/vmstate*.c): a streaming decoder that reads
//! file/exec streams QEMU writes, and an encoder for streams of the model's own.

pub mod decode;
pub mod encode;
pub mod late;

/// `QEMU_VM_FILE_MAGIC`.
pub const MAGIC: u32 = 0x5145_564d;
/// `QEMU_VM_FILE_VERSION`.
pub const VERSION: u32 = 3;

/// Section and record types (migration/savevm.h).
pub mod ty {
    pub const EOF: u8 = 0x00;
    pub const SECTION_START: u8 = 0x01;
    pub const SECTION_PART: u8 = 0x02;
    pub const SECTION_END: u8 = 0x03;
    pub const SECTION_FULL: u8 = 0x04;
    pub const SUBSECTION: u8 = 0x05;
    pub const VMDESCRIPTION: u8 = 0x06;
    pub const CONFIGURATION: u8 = 0x07;
    pub const COMMAND: u8 = 0x08;
    pub const SECTION_FOOTER: u8 = 0x7e;
}

/// RAM record flags in the low bits of the be64 address word (migration/ram.c).
pub mod ram {
    pub const ZERO: u64 = 0x02;
    pub const MEM_SIZE: u64 = 0x04;
    pub const PAGE: u64 = 0x08;
    pub const EOS: u64 = 0x10;
    pub const CONTINUE: u64 = 0x20;
    pub const XBZRLE: u64 = 0x40;
    pub const HOOK: u64 = 0x80;
    pub const MULTIFD_FLUSH: u64 = 0x200;
}

/// Migration commands (`enum qemu_vm_cmd`, migration/savevm.c).
pub fn command_name(cmd: u16) -> &'static str {
    match cmd {
        1 => "OPEN_RETURN_PATH",
        2 => "PING",
        3 => "POSTCOPY_ADVISE",
        4 => "POSTCOPY_LISTEN",
        5 => "POSTCOPY_RUN",
        6 => "POSTCOPY_RAM_DISCARD",
        7 => "PACKAGED",
        8 => "ENABLE_COLO",
        9 => "POSTCOPY_RESUME",
        10 => "RECV_BITMAP",
        11 => "SWITCHOVER_START",
        _ => "UNKNOWN",
    }
}

/// A name read from a stream, printable: control characters, quotes and backslashes escaped
/// (a corrupt name must not write raw bytes to a terminal).
pub fn escaped(s: &str) -> String {
    s.escape_debug().to_string()
}

/// Everything that can be wrong with a stream: where (byte offset) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("byte {offset}: the stream ends early: expected {expected}")]
    Truncated { offset: u64, expected: String },
    #[error("byte {offset}: expected {expected}, found {found}")]
    Unexpected { offset: u64, expected: String, found: String },
    #[error("byte {offset}: section '{}' is not one this decoder knows, and no VM description at the end of the stream describes it", escaped(.idstr))]
    UnknownSection { offset: u64, idstr: String },
    /// A section that QEMU sends once came again.
    #[error("byte {offset}: section '{}' (instance {instance}) comes a second time: {why}", escaped(.idstr))]
    Repeated { offset: u64, idstr: String, instance: u32, why: &'static str },
    /// Inside a section whose layout this decoder knows (the late `…/virtio-mem` section).
    #[error("byte {offset}: section '{}': {message}", escaped(.idstr))]
    InSection { offset: u64, idstr: String, message: String },
    #[error("byte {offset}: the VM description is not valid JSON: {message}")]
    BadJson { offset: u64, message: String },
    #[error("reading the stream: {0}")]
    Io(String),
}

impl WireError {
    /// The error with its byte offset moved by `by`: an error of a sub-decoder over one
    /// section's bytes, placed in the whole stream.
    pub fn shifted(self, by: u64) -> WireError {
        let mv = |o: u64| o.saturating_add(by);
        match self {
            WireError::Truncated { offset, expected } => WireError::Truncated { offset: mv(offset), expected },
            WireError::Unexpected { offset, expected, found } => WireError::Unexpected { offset: mv(offset), expected, found },
            WireError::UnknownSection { offset, idstr } => WireError::UnknownSection { offset: mv(offset), idstr },
            WireError::Repeated { offset, idstr, instance, why } => WireError::Repeated { offset: mv(offset), idstr, instance, why },
            WireError::InSection { offset, idstr, message } => WireError::InSection { offset: mv(offset), idstr, message },
            WireError::BadJson { offset, message } => WireError::BadJson { offset: mv(offset), message },
            WireError::Io(m) => WireError::Io(m),
        }
    }
}
