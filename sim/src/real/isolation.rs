//! What keeps a real run from outliving itself on the host: a child that dies with the thread
//! that started it, and mounts that exist only in the child's own mount namespace, so they go
//! when it goes, however it goes (SIGBUS, SIGKILL, its parent's death).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::process::Signal;
use rustix::thread::UnshareFlags;

/// The child is killed when the thread that spawns it ends (`PR_SET_PDEATHSIG`), and ends at
/// once if that thread already ended before the call.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe system
    // calls (prctl, getppid, _exit); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        })
    }
}

/// Starts the child in a session of its own: a terminal's Ctrl-C (sent to the foreground
/// process group) does not reach it.
pub fn own_session(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        })
    }
}

/// Where the child mounts its memory: the temp dir, covered in the child's namespace only.
pub fn private_mount_point() -> PathBuf {
    std::env::temp_dir()
}

/// One private mount: "tmpfs" or "hugetlbfs", its `size=` quota and hugetlbfs `pagesize=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub fstype: String,
    pub quota: Option<u64>,
    pub huge_page: Option<u64>,
    /// A capacity of 0: tmpfs and hugetlbfs read `size=0` as no limit (shmem_parse_one,
    /// hugetlbfs_parse_param), so the mount gets a quota of one page and a filler file takes it
    /// before the run: every later allocation on the mount fails.
    pub used_up: bool,
}

/// Moves this process into a mount namespace of its own (nothing propagates back to the host),
/// covers [`private_mount_point`] with a small tmpfs, and mounts each of `mounts` with its
/// `size=` quota on a directory of it (`m0`, `m1`, ...). The host never sees them; the kernel
/// removes them with the namespace when the process ends. Needs root (CAP_SYS_ADMIN).
pub fn private_mounts(mounts: &[MountSpec]) -> std::io::Result<Vec<PathBuf>> {
    // SAFETY: the child calls this first thing, before it starts any thread; a new mount
    // namespace changes nothing that Rust code of this process relies on.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }.map_err(|e| with("unshare(CLONE_NEWNS)", e))?;
    rustix::mount::mount_change(Path::new("/"), MountPropagationFlags::REC | MountPropagationFlags::PRIVATE).map_err(|e| with("making / private", e))?;
    let base = private_mount_point();
    mount_one("tmpfs", &base, &["mode=0700".into(), "size=1M".into()])?;
    let mut dirs = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let dir = base.join(format!("m{i}"));
        std::fs::create_dir(&dir)?;
        let mut opts = vec!["mode=0700".to_string()];
        if let Some(p) = m.huge_page {
            opts.push(format!("pagesize={p}"));
        }
        if let Some(s) = m.quota {
            opts.push(format!("size={s}"));
        }
        mount_one(&m.fstype, &dir, &opts)?;
        if m.used_up {
            use_up(&dir, m.quota.unwrap_or(0))?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Takes the whole quota of a fresh mount with one file (fallocate allocates its pages: on
/// hugetlbfs a huge page of the pool). The file goes with the mount, with the namespace.
fn use_up(dir: &Path, quota: u64) -> std::io::Result<()> {
    let f = std::fs::File::create_new(dir.join("used-up"))?;
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, quota).map_err(|e| with(&format!("using up the {quota}-byte quota of {}", dir.display()), e))
}

fn mount_one(fstype: &str, dir: &Path, opts: &[String]) -> std::io::Result<()> {
    let data = std::ffi::CString::new(opts.join(",")).map_err(std::io::Error::other)?;
    rustix::mount::mount(fstype, dir, fstype, MountFlags::NOSUID | MountFlags::NODEV, Some(data.as_c_str())).map_err(|e| with(&format!("mount {fstype} on {}", dir.display()), e))
}

fn with(what: &str, e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}
