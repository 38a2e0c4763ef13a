//! `vmemsim cleanup`: repairs what ended runs left on the host. A real run of this version
//! leaves nothing but, if it was killed with SIGKILL, its huge page increment in the ledger
//! (taken back here, and by the next run). The host mounts and folders are what the
//! conformance suite's QEMUs use and what older versions of vmemsim left.

use std::path::{Path, PathBuf};

use rustix::mount::UnmountFlags;

use super::pool;

/// What a cleanup did, one line per repair.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
}

/// A pid in a leftover's name (`vmemsim-<what>-<pid>-<n>`), if the name is one of ours.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("vmemsim-")?;
    let mut parts = rest.rsplitn(3, '-');
    let _n: u64 = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

fn running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Mount points on the host, from this process's mountinfo (field 5, octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape(p))).collect()
}

/// `/proc/self/mountinfo`'s and `/proc/self/mounts`' octal escapes (`\\040` for a space) decoded.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Destination children whose parent is gone (re-parented to init): older versions did not
/// make them die with their parent.
fn orphaned_destinations() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for item in dir.flatten() {
        let Some(pid) = item.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmdline.split(|b| *b == 0).any(|a| a == b"__real-destination") {
            continue;
        }
        let ppid = super::ledger::stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok());
        if ppid == Some(1) {
            pids.push(pid);
        }
    }
    pids
}

/// Repairs everything it can and says what it did; errors are reported as lines too, so one
/// stuck leftover does not hide the others.
pub fn cleanup() -> Report {
    let mut r = Report::default();
    for pid in orphaned_destinations() {
        match rustix::process::Pid::from_raw(pid as i32).map(|p| rustix::process::kill_process(p, rustix::process::Signal::KILL)) {
            Some(Ok(())) => r.lines.push(format!("killed the orphaned destination process {pid}")),
            Some(Err(e)) => r.lines.push(format!("could not kill the orphaned destination process {pid}: {e}")),
            None => {}
        }
    }
    let tmp = std::env::temp_dir();
    for m in mount_points().into_iter().filter(|m| m.parent() == Some(tmp.as_path())) {
        let Some(pid) = m.file_name().and_then(|n| n.to_str()).and_then(owner_pid) else { continue };
        if running(pid) {
            continue;
        }
        match rustix::mount::unmount(&m, UnmountFlags::DETACH) {
            Ok(()) => r.lines.push(format!("unmounted {} (left by process {pid})", m.display())),
            Err(e) => r.lines.push(format!("could not unmount {}: {e}", m.display())),
        }
    }
    if let Ok(dir) = std::fs::read_dir(&tmp) {
        let mounted = mount_points();
        for item in dir.flatten() {
            let path = item.path();
            let Some(pid) = path.file_name().and_then(|n| n.to_str()).and_then(owner_pid) else { continue };
            if running(pid) || mounted.contains(&path) || !path.is_dir() {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => r.lines.push(format!("removed {} (left by process {pid})", path.display())),
                Err(e) => r.lines.push(format!("could not remove {}: {e}", path.display())),
            }
        }
    }
    match pool::repair() {
        Ok(lines) => r.lines.extend(lines),
        Err(e) => r.lines.push(format!("could not read the huge page ledger: {e}")),
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_carry_an_owner() {
        assert_eq!(owner_pid("vmemsim-tmpfs-1234-0"), Some(1234));
        assert_eq!(owner_pid("vmemsim-files-77-12"), Some(77));
        assert_eq!(owner_pid("vmemsim-tmpfs-x-0"), None);
        assert_eq!(owner_pid("other-tmpfs-1234-0"), None);
        assert_eq!(owner_pid("vmemsim-1234-0"), None);
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
    }
}
