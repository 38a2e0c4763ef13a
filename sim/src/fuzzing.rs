//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), shared with the regression replay
//! (`tests/fuzz_regressions.rs`) so a saved crash runs through exactly the code that found it.
//! Each takes arbitrary bytes and must return without a panic, a hang or an unbounded allocation:
//! every malformed input is an error, and errors are dropped here.

use std::path::Path;

use vmemsim_model::wire::decode::{find_vmdesc, Decoder, Event};
use vmemsim_model::{Backend, BackendKind, Bytes, Capacity};

use crate::stream;

/// Largest number of blocks per device that [`scenario`] runs: the engine's cost follows runs,
/// not blocks, but the early section's bitmap and the properties' checks follow blocks.
pub const MAX_BLOCKS: u64 = 1 << 20;

/// Bytes the preflight target reads before the stream: backend kind, flags, capacity (4 bytes).
pub const PREFLIGHT_HEADER: usize = 6;

/// Machine types the preflight target may force over the stream's own (`--machine`).
const MACHINES: [&str; 4] = ["pc-q35-7.2", "pc-q35-8.0", "pc-i440fx-9.2", "q35"];

/// Every event of a stream, as `vmemsim analyze` reads it (`stream::read_events`: the VM
/// description found first, then the decoder to the end); `None` when the stream is malformed.
fn events(data: &[u8]) -> Option<Vec<Event>> {
    let vmdesc = find_vmdesc(&mut std::io::Cursor::new(data)).ok()?;
    let mut d = Decoder::new(std::io::Cursor::new(data), vmdesc);
    let mut out = Vec::new();
    loop {
        match d.next_event() {
            Ok(Some(e)) => out.push(e),
            Ok(None) => return Some(out),
            Err(_) => return None,
        }
    }
}

/// `vmemsim analyze` and `analyze --summary` on the bytes as a stream. True when the bytes were
/// a whole stream and both outputs were made.
pub fn decode(data: &[u8]) -> bool {
    let Some(events) = events(data) else { return false };
    let json = stream::analyze_json(&events);
    let text = stream::pretty(&json);
    assert!(text.starts_with('{'), "analyze prints a JSON object");
    let _ = stream::summary(&events);
    true
}

/// The backend, prealloc and machine that the first [`PREFLIGHT_HEADER`] bytes choose: byte 0
/// the kind; byte 1 bit 0 prealloc, bit 1 an unlimited capacity, bits 2-4 a forced machine type
/// (0-3) or the stream's own (4-7); bytes 2-5 the capacity in 4 KiB pages (little-endian).
pub fn preflight_backend(header: &[u8; PREFLIGHT_HEADER]) -> (Backend, bool, Option<&'static str>) {
    let kind = BackendKind::ALL[header[0] as usize % BackendKind::ALL.len()];
    let flags = header[1];
    let pages = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as u64;
    let capacity = if flags & 2 != 0 { Capacity::Unlimited } else { Capacity::Limited(Bytes(pages * 4096)) };
    let machine = MACHINES.get(((flags >> 2) & 7) as usize).copied();
    (Backend { kind, page_size: kind.default_page_size(), capacity }, flags & 1 != 0, machine)
}

/// `vmemsim preflight` on the bytes after the header, with the backend the header chooses.
/// True when it predicted an outcome (false for a malformed stream or one it cannot judge).
pub fn preflight(data: &[u8]) -> bool {
    let Some((header, rest)) = data.split_first_chunk::<PREFLIGHT_HEADER>() else { return false };
    let (backend, prealloc, machine) = preflight_backend(header);
    let Some(events) = events(rest) else { return false };
    let Ok(p) = stream::preflight(&events, backend, prealloc, machine) else { return false };
    assert!(p.report.contains("destination: machine"), "the report names the destination");
    let _ = p.outcome.stderr();
    true
}

/// `vmemsim run` on the bytes as a scenario file: parse, build, and, when every device has at
/// most [`MAX_BLOCKS`] blocks, run the model twice (the same trace both times) and compare with
/// the scenario's `[expect]`. True when the model ran.
pub fn scenario(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let Ok(loaded) = crate::load::parse(Path::new("fuzz.toml"), text) else { return false };
    let Ok(built) = crate::build::build(&loaded) else { return false };
    let small = built.source.devices.iter().all(|d| d.region_size().0 / d.block_size().0.max(1) <= MAX_BLOCKS)
        && built.destination.devices.iter().all(|d| d.region_size.0 / d.block_size.map_or(Bytes::mib(2), |b| b).0.max(1) <= MAX_BLOCKS);
    if !small {
        return false;
    }
    let sim = crate::run::run_built(&built);
    assert_eq!(sim.trace_hash, sim.rehash(&built), "the trace hash is the hash of the trace");
    assert_eq!(sim.lines(&built).len(), sim.trace.len(), "every step renders as one line");
    assert_eq!(crate::run::run_built(&built).trace_hash, sim.trace_hash, "a scenario run twice gives the same trace");
    let _ = crate::run::check_expectations(&loaded, &sim);
    true
}

/// The mounts the import target knows: a hugetlbfs, a tmpfs and the root's disk.
fn import_mounts(free: Option<u64>) -> Vec<crate::import::qemu::MountFact> {
    use crate::import::qemu::MountFact;
    let m = |path: &str, fs: &str, page: Option<u64>| MountFact { path: path.into(), fs: fs.into(), page_size: page, free: if fs == "disk" { None } else { free } };
    vec![m("/dev/hugepages", "hugetlbfs", Some(2 << 20)), m("/dev/hugepages1G", "hugetlbfs", Some(1 << 30)), m("/dev/shm", "tmpfs", None), m("", "disk", None)]
}

/// `vmemsim import` on the bytes: a first byte `l` makes the rest a libvirt domain XML, any
/// other a QEMU command line (split at whitespace). What it writes must be a scenario file
/// that parses; when it also builds, it runs as [`scenario`] does. True when it wrote one.
pub fn import(data: &[u8]) -> bool {
    use crate::import::qemu::{import_qemu, Import};
    let Some((&kind, rest)) = data.split_first() else { return false };
    let Ok(text) = std::str::from_utf8(rest) else { return false };
    let source = if kind == b'l' {
        match crate::import::libvirt::command_line(text, &import_mounts(None)) {
            Ok((args, _)) => args,
            Err(_) => return false,
        }
    } else {
        text.split_whitespace().map(str::to_string).collect()
    };
    let i = Import { source, source_mounts: import_mounts(None), destination_mounts: import_mounts(Some(1 << 30)), ..Import::default() };
    let Ok(out) = import_qemu(&i) else { return false };
    if let Err(e) = crate::load::parse(Path::new("imported.toml"), &out) {
        panic!("the importer wrote a scenario the loader refuses: {e}\n{out}");
    }
    scenario(out.as_bytes());
    true
}
