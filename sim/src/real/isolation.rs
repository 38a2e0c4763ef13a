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

/// Moves this process into a mount namespace of its own (nothing propagates back to the host)
/// and mounts `fstype` ("tmpfs" or "hugetlbfs") with a `size=` quota over
/// [`private_mount_point`]. The host never sees the mount; the kernel removes it with the
/// namespace when the process ends. Needs root (CAP_SYS_ADMIN).
pub fn private_mount(fstype: &str, quota: Option<u64>, huge_page: Option<u64>) -> std::io::Result<PathBuf> {
    // SAFETY: the child calls this first thing, before it starts any thread; a new mount
    // namespace changes nothing that Rust code of this process relies on.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }.map_err(|e| with("unshare(CLONE_NEWNS)", e))?;
    rustix::mount::mount_change(Path::new("/"), MountPropagationFlags::REC | MountPropagationFlags::PRIVATE).map_err(|e| with("making / private", e))?;
    let mut opts = vec!["mode=0700".to_string()];
    if let Some(p) = huge_page {
        opts.push(format!("pagesize={p}"));
    }
    if let Some(s) = quota {
        opts.push(format!("size={s}"));
    }
    let data = std::ffi::CString::new(opts.join(",")).map_err(std::io::Error::other)?;
    let dir = private_mount_point();
    rustix::mount::mount(fstype, &dir, fstype, MountFlags::NOSUID | MountFlags::NODEV, Some(data.as_c_str())).map_err(|e| with(&format!("mount {fstype} on {}", dir.display()), e))?;
    Ok(dir)
}

fn with(what: &str, e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}
