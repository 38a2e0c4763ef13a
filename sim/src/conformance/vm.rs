//! Source and destination QEMUs for a scenario, the file migration between them, and the
//! destination's outcome.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vmemsim_model::migration::outcome::Stage;
use vmemsim_model::migration::source_fate::{Reply, SourceFate};
use vmemsim_model::{Outcome, QemuVersion};

use super::qmp::Qmp;
use crate::build::Built;
use crate::real::isolation::die_with_parent;
use crate::real::mounts::TempDir;
use crate::real::pool::HugePool;

/// The provisioned lab: kernel, initramfs (scripts/qemu-lab), and the QEMU that runs.
#[derive(Clone, Debug)]
pub struct Lab {
    pub dir: PathBuf,
    /// `qemu-system-x86_64` from PATH, or the binary `VMEMSIM_QEMU` names (e.g. a build of
    /// another release in a scratch folder).
    pub qemu: PathBuf,
    /// Its release, from `--version`: the model predicts for this release on both sides.
    pub version: QemuVersion,
}

impl Lab {
    /// Runs `scripts/qemu-lab` (provisioning once, then cached) and returns the lab.
    pub fn provision(script: &Path, dir: &Path) -> Result<Lab, String> {
        let out = Command::new(script).arg(dir).output().map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim()));
        }
        let qemu = std::env::var_os("VMEMSIM_QEMU").map_or_else(|| PathBuf::from("qemu-system-x86_64"), PathBuf::from);
        let version = qemu_version(&qemu)?;
        Ok(Lab { dir: dir.to_path_buf(), qemu, version })
    }
}

/// `qemu-system-x86_64 --version`: "QEMU emulator version 10.0.2 (Debian ...)".
fn qemu_version(qemu: &Path) -> Result<QemuVersion, String> {
    let out = Command::new(qemu).arg("--version").output().map_err(|e| format!("{} --version: {e}", qemu.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().skip_while(|w| *w != "version").nth(1).ok_or_else(|| format!("{} --version printed no version: {text}", qemu.display()))?;
    word.parse().map_err(|e| format!("{}: {e}", qemu.display()))
}

/// When the harness sends `migrate-start-postcopy`, from the scenario: at once or after its
/// time; a share of the pages has no wall-clock time.
pub fn live_mode(s: &crate::scenario::Scenario) -> Result<LiveMode, String> {
    use crate::scenario::{ModeSpec, StartSpec};
    if s.migration.mode == ModeSpec::Precopy {
        return Ok(LiveMode::Precopy);
    }
    match (s.migration.start_postcopy, s.migration.switch_percent) {
        (Some(StartSpec::AtOnce), _) | (None, Some(0)) => Ok(LiveMode::Postcopy { start_after: Duration::ZERO }),
        (Some(StartSpec::AfterUs(us)), _) => Ok(LiveMode::Postcopy { start_after: Duration::from_micros(us) }),
        _ => Err("the QEMU harness starts postcopy at once or after a time (start_postcopy = \"at-once\" or \"1s\"), not after a share of the pages".into()),
    }
}

/// One virtio-mem device on the QEMU command line.
#[derive(Clone, Debug)]
pub struct DeviceShape {
    pub region: u64,
    pub requested: u64,
    pub block: u64,
    pub dest_prealloc: bool,
    /// The device's PCI slot and function on the root bus, from the scenario's address.
    pub slot: String,
    /// Which of the destination's mounts (`Shape::dest_mounts`) its file lives on.
    pub mount: usize,
}

/// What a scenario becomes on the QEMU command line: virtio-mem devices on files of one tmpfs.
#[derive(Clone, Debug)]
pub struct Shape {
    pub machine: String,
    pub main_ram: u64,
    pub devices: Vec<DeviceShape>,
    /// The destination's quota in all (the huge pages a hugetlbfs destination needs).
    pub dest_quota: u64,
    /// The destination's mounts, each with its `size=` quota: one shared by every device (the
    /// one-backend form), or as the scenario's `[[destination.mount]]`s place the memdevs.
    pub dest_mounts: Vec<u64>,
    /// The destination's files live on a hugetlbfs mount (2 MiB pages, `reserve=off`) instead
    /// of tmpfs; the source always uses tmpfs (real-qemu.md: both gave identical outcomes).
    pub dest_hugetlb: bool,
    /// After a completed restore, the first device's requested size is set to this (the
    /// scenario's last `[[manager.resize]]`) and the restored guest's driver plugs on its own.
    pub grow: Option<u64>,
}

/// Whether a built scenario runs on a real QEMU here; `Err` says why not.
pub fn shape(b: &Built) -> Result<Shape, String> {
    if !b.plan.hints.is_empty() || !b.drains.is_empty() {
        return Err("the QEMU harness runs migrations without simulated events".into());
    }
    // A resize of the first device after the restore, and the plugs that answer it, are what a
    // real guest's driver does by itself.
    if b.resizes.iter().any(|r| r.1 != 0) || b.actions.iter().any(|a| a.1 != 0 || !matches!(a.2, vmemsim_model::Request::Plug { .. })) || (b.resizes.is_empty() && !b.actions.is_empty()) {
        return Err("the QEMU harness grows the first device after the restore; other requests are not run".into());
    }
    let grow = b.resizes.last().map(|r| r.2 .0);
    use vmemsim_model::BackendKind;
    let (dest_hugetlb, dest_mounts, device_mount) = match (b.source_memory.single_backend(), b.destination.memory.single_backend()) {
        (Some(src_backend), Some(dst_backend)) => {
            if src_backend.kind != BackendKind::TmpfsFile {
                return Err("the QEMU harness runs the source on tmpfs-file".into());
            }
            let hugetlb = match (dst_backend.kind, dst_backend.page_size) {
                (BackendKind::TmpfsFile, _) => false,
                (BackendKind::Hugetlbfs, p) if p == vmemsim_model::Bytes::mib(2) => true,
                (k, p) => return Err(format!("the QEMU harness runs destinations on tmpfs-file or 2 MiB hugetlbfs, not {} with {p} pages", k.name())),
            };
            let cap = dst_backend.capacity.limit().ok_or("the destination needs a tmpfs quota")?;
            (hugetlb, vec![cap.0], vec![0; b.destination.devices.len()])
        }
        _ => per_memdev_mounts(b)?,
    };
    let mut devices = Vec::new();
    for (s, d) in b.source.devices.iter().zip(&b.destination.devices) {
        if s.size() != s.requested_size() || s.plugged_runs().len() > 1 {
            return Err("Linux's driver plugs the requested size from the lowest block: the scenario must plug exactly that".into());
        }
        // "0000:00:03.0" → addr=0x03.0 on the root bus (QEMU's idstr starts with this address).
        let slot = match s.pci().split(':').collect::<Vec<_>>().as_slice() {
            ["0000", "00", dev_fn] => dev_fn.split_once('.').map(|(d, f)| format!("0x{d}.{f}")).ok_or("a PCI address like 0000:00:03.0")?,
            _ => return Err(format!("the QEMU harness puts devices on the root bus, not at {}", s.pci())),
        };
        let mount = device_mount[devices.len()];
        devices.push(DeviceShape { region: s.region_size().0, requested: s.requested_size().0, block: s.block_size().0, dest_prealloc: d.prealloc, slot, mount });
    }
    Ok(Shape {
        machine: b.source.machine.name().to_string(),
        main_ram: b.source.blocks.iter().find(|x| x.device.is_none()).map_or(0, |x| x.len.0),
        devices,
        dest_quota: dest_mounts.iter().sum(),
        dest_mounts,
        dest_hugetlb,
        grow,
    })
}

/// The per-memdev form as the harness runs it: every source memdev a shared file on tmpfs,
/// every destination memdev a shared file on a tmpfs (or 2 MiB hugetlbfs, `reserve=off`) mount
/// with a quota; returns (hugetlbfs, quota per mount, mount per device).
fn per_memdev_mounts(b: &Built) -> Result<(bool, Vec<u64>, Vec<usize>), String> {
    use vmemsim_model::{BackendKind, LimitKind};
    let (src, dst) = (&b.source_memory, &b.destination.memory);
    if src.main.is_some() || dst.main.is_some() {
        return Err("the QEMU harness runs main RAM as ordinary RAM".into());
    }
    if dst.limits.iter().any(|l| !matches!(l.kind, LimitKind::Mount { .. })) {
        return Err("the QEMU harness limits the destination by mount quotas only".into());
    }
    for d in &b.source.devices {
        let m = src.memdev(&d.config().config.memdev).ok_or("every device has a memdev")?;
        if m.kind != BackendKind::TmpfsFile || m.private {
            return Err("the QEMU harness runs the source's memdevs as shared files on tmpfs".into());
        }
    }
    let mut used: Vec<vmemsim_model::LimitId> = Vec::new();
    let mut quotas = Vec::new();
    let mut per_device = Vec::new();
    let mut hugetlb = None;
    for d in &b.destination.devices {
        let m = dst.memdev(&d.memdev).ok_or("every device has a memdev")?;
        let h = match (m.kind, m.page_size) {
            (BackendKind::TmpfsFile, _) => false,
            (BackendKind::Hugetlbfs, p) if p == vmemsim_model::Bytes::mib(2) && !m.reserve => true,
            _ => return Err("the QEMU harness runs the destination's memdevs as shared files on tmpfs or 2 MiB hugetlbfs with reserve=off".into()),
        };
        if m.private || *hugetlb.get_or_insert(h) != h {
            return Err("the QEMU harness runs the destination's memdevs shared, all on tmpfs or all on hugetlbfs".into());
        }
        let mount = m.mount.ok_or("a file memdev has a mount")?;
        let quota = dst.limits[mount.0].capacity.limit().ok_or("the QEMU harness needs a size= quota on every destination mount")?;
        let i = match used.iter().position(|u| *u == mount) {
            Some(i) => i,
            None => {
                used.push(mount);
                quotas.push(quota.0);
                used.len() - 1
            }
        };
        per_device.push(i);
    }
    Ok((hugetlb.unwrap_or(false), quotas, per_device))
}

/// The file system a QEMU's memory files live on, with its quota.
#[derive(Clone, Debug)]
struct MemFs {
    hugetlb: bool,
    quota: u64,
    /// One quota per mount (the destination's mounts); the source has one.
    quotas: Vec<u64>,
}

impl MemFs {
    fn of_destination(sh: &Shape) -> MemFs {
        MemFs { hugetlb: sh.dest_hugetlb, quota: sh.dest_quota, quotas: sh.dest_mounts.clone() }
    }

    fn of_source(sh: &Shape) -> MemFs {
        let quota = sh.devices.iter().map(|d| d.requested).sum::<u64>() + (64 << 20);
        MemFs { hugetlb: false, quota, quotas: vec![quota] }
    }
}

/// The file system the suite mounts for one side's memory files and its `size=` quota:
/// ("hugetlbfs" or "tmpfs", bytes).
pub fn memory_mount(sh: &Shape, dest: bool) -> (&'static str, u64) {
    let fs = if dest { MemFs::of_destination(sh) } else { MemFs::of_source(sh) };
    (if fs.hugetlb { "hugetlbfs" } else { "tmpfs" }, fs.quota)
}

/// The QEMU arguments (after the program) the suite starts one side with: memory files in
/// `mem_dir`, the lab's kernel and initrd, serial and QMP in `dir` under `name`.
pub fn command_line(sh: &Shape, dest: bool, mem_dirs: &[PathBuf], lab_dir: &Path, dir: &Path, name: &str, incoming: Option<&Path>) -> Vec<String> {
    let regions: u64 = sh.devices.iter().map(|d| d.region).sum();
    let mut c: Vec<String> = Vec::new();
    let mut args = |a: &[&str]| c.extend(a.iter().map(|s| s.to_string()));
    args(&["-machine", &sh.machine, "-accel", "tcg", "-cpu", "qemu64", "-smp", "1"]);
    args(&["-m", &format!("{}M,maxmem={}M", sh.main_ram >> 20, (sh.main_ram + regions + (1 << 30)) >> 20)]);
    for (i, d) in sh.devices.iter().enumerate() {
        let prealloc = dest && d.dest_prealloc;
        // Without reserve=off a shared hugetlbfs mapping reserves all its pages at start-up
        // (real-qemu.md: "unable to map backing store for guest RAM").
        let reserve = if dest && sh.dest_hugetlb { ",reserve=off" } else { "" };
        let mem_dir = &mem_dirs[if dest { d.mount } else { 0 }];
        args(&["-object", &format!("memory-backend-file,id=mem{i},mem-path={}/vmem{i},size={}M,share=on{reserve}", mem_dir.display(), d.region >> 20)]);
        args(&[
            "-device",
            &format!(
                "virtio-mem-pci,id=vmem{i},memdev=mem{i},addr={},requested-size={}M,block-size={}M,prealloc={}",
                d.slot,
                d.requested >> 20,
                d.block >> 20,
                if prealloc { "on" } else { "off" }
            ),
        ]);
    }
    let path = |p: PathBuf| p.display().to_string();
    args(&["-kernel", &path(lab_dir.join("vmlinuz")), "-initrd", &path(lab_dir.join("initrd.gz"))]);
    args(&["-append", "console=ttyS0 memhp_default_state=online quiet", "-display", "none", "-monitor", "none", "-nodefaults"]);
    args(&["-serial", &format!("file:{}", dir.join(format!("{name}.serial")).display())]);
    args(&["-qmp", &format!("unix:{},server=on,wait=off", dir.join(format!("{name}.qmp")).display())]);
    if let Some(state) = incoming {
        if state == Path::new("defer") {
            args(&["-incoming", "defer"]);
        } else {
            args(&["-incoming", &format!("file:{}", state.display())]);
        }
    }
    c
}

/// Starts QEMU with its memory files on `fs`, mounted in a mount namespace of QEMU's own (by
/// util-linux's `unshare`, then a shell that mounts and execs QEMU, same pid): the mount is
/// never seen on the host and goes with QEMU. QEMU dies with the thread that started it.
fn qemu(lab: &Lab, sh: &Shape, fs: MemFs, dest: bool, dir: &Path, name: &str, incoming: Option<&Path>) -> Result<Child, String> {
    // One directory per mount: `<name>.mem` for the first (as before), `<name>.mem<i>` after.
    let mem_dirs: Vec<PathBuf> = (0..fs.quotas.len()).map(|i| dir.join(if i == 0 { format!("{name}.mem") } else { format!("{name}.mem{i}") })).collect();
    for d in &mem_dirs {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let fstype = if fs.hugetlb { "hugetlbfs" } else { "tmpfs" };
    let mut c = Command::new("unshare");
    let script = "fs=$1; n=$2; shift 2; while [ \"$n\" -gt 0 ]; do mount -t \"$fs\" -o \"$1\" none \"$2\" || exit 1; shift 2; n=$((n-1)); done; exec \"$@\"";
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", fstype]).arg(mem_dirs.len().to_string());
    for (q, d) in fs.quotas.iter().zip(&mem_dirs) {
        let opts = if fs.hugetlb { format!("pagesize=2M,size={q}") } else { format!("size={q}") };
        c.arg(opts).arg(d);
    }
    c.arg(&lab.qemu);
    c.args(command_line(sh, dest, &mem_dirs, &lab.dir, dir, name, incoming));
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    die_with_parent(&mut c);
    c.spawn().map_err(|e| format!("unshare ... qemu-system-x86_64: {e}"))
}

/// Boots the source, waits until the guest plugged the requested size, stops it and migrates
/// it to a state file. Returns the file and the seconds it took.
pub fn source_state(lab: &Lab, sh: &Shape, dir: &Path) -> Result<(PathBuf, f64), String> {
    let start = Instant::now();
    let mut child = qemu(lab, sh, MemFs::of_source(sh), false, dir, "src", None)?;
    let result = (|| {
        let mut q = Qmp::connect(&dir.join("src.qmp"), Duration::from_secs(20))?;
        for (i, d) in sh.devices.iter().enumerate() {
            loop {
                let size = q.execute("qom-get", json!({"path": format!("vmem{i}"), "property": "size"}))?;
                if size.as_u64() == Some(d.requested) {
                    break;
                }
                if start.elapsed() > Duration::from_secs(120) {
                    return Err(format!("the guest plugged {size} of {} on vmem{i} in 120 s", d.requested));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        q.execute("stop", json!({}))?;
        let state = dir.join("state.mig");
        q.execute("migrate", json!({"uri": format!("file:{}", state.display())}))?;
        loop {
            let st = q.execute("query-migrate", json!({}))?;
            match st.get("status").and_then(|s| s.as_str()) {
                Some("completed") => break,
                Some("failed") => return Err(format!("migration failed: {st}")),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let _ = q.execute("quit", json!({}));
        Ok(state)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.map(|s| (s, start.elapsed().as_secs_f64()))
}

/// `quit`, and SIGKILL if QEMU has not exited 5 s later: a paused postcopy destination whose
/// vCPU waits in a userfault for a page that never comes does not finish quitting (seen here:
/// the main thread waits for the vCPU).
fn quit_or_kill(q: &mut Qmp, child: &mut Child) {
    let _ = q.execute("quit", json!({}));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// QEMU's stderr lines of an ended process, without the `qemu-system-x86_64: ` prefix.
fn stderr_lines(child: &mut Child) -> Vec<String> {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    err.lines().filter_map(|l| l.strip_prefix("qemu-system-x86_64: ")).map(str::to_string).collect()
}

/// The outcome of a destination that exited: killed by SIGBUS, or failed (exit status 1). QEMU
/// names no fault site, so the site is left empty.
fn exited(status: std::process::ExitStatus, child: &mut Child) -> Outcome {
    let lines = stderr_lines(child);
    if status.signal() == Some(libc::SIGBUS) {
        Outcome::Crashed { stage: Stage::RamLoad, site: vmemsim_model::migration::outcome::FaultSite { block: String::new(), offset: vmemsim_model::Bytes(0) }, lines }
    } else {
        Outcome::Failed { stage: Stage::Startup, lines }
    }
}

/// After a completed restore with room to spare: `cont`, grow the first device by 128 MiB and
/// wait until the guest plugged it — the restored guest sees the device.
fn grow_after_restore(q: &mut Qmp, sh: &Shape) -> Result<(), String> {
    let d = &sh.devices[0];
    let grown = (d.requested + (128 << 20)).min(d.region);
    q.execute("cont", json!({}))?;
    q.execute("qom-set", json!({"path": "vmem0", "property": "requested-size", "value": grown}))?;
    let start = Instant::now();
    loop {
        let size = q.execute("qom-get", json!({"path": "vmem0", "property": "size"}))?;
        if size.as_u64() == Some(grown) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("after the restore the guest plugged {size} of {grown} in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The scenario's growth after the restore: `cont`, set the requested size, and give the
/// guest 15 s to plug; QEMU must keep running whether the plug succeeds or is refused.
fn grow_as_asked(q: &mut Qmp, to: u64) -> Result<u64, String> {
    q.execute("cont", json!({}))?;
    q.execute("qom-set", json!({"path": "vmem0", "property": "requested-size", "value": to}))?;
    let start = Instant::now();
    loop {
        let size = q.execute("qom-get", json!({"path": "vmem0", "property": "size"}))?.as_u64().unwrap_or_default();
        if size == to || start.elapsed() > Duration::from_secs(15) {
            return Ok(size);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Restores the state file on a destination with the scenario's prealloc and tmpfs quota.
/// A completed restore is grown as the scenario asks, or, with 128 MiB to spare, by 128 MiB
/// (see `grow_after_restore`).
pub fn destination(lab: &Lab, sh: &Shape, state: &Path, dir: &Path) -> Result<Outcome, String> {
    // Huge pages behind the hugetlbfs quota (the pool is grown only as needed, and restored).
    let _pool = if sh.dest_hugetlb { Some(HugePool::ensure_free(sh.dest_quota.div_ceil(2 << 20)).map_err(|e| format!("huge pages: {e}"))?) } else { None };
    let mut child = qemu(lab, sh, MemFs::of_destination(sh), true, dir, "dst", Some(state))?;
    let start = Instant::now();
    let outcome = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break exited(status, &mut child);
        }
        // Still running: a completed restore leaves QEMU running (or paused) with the state loaded.
        if let Ok(mut q) = Qmp::connect(&dir.join("dst.qmp"), Duration::from_millis(200)) {
            if let Ok(st) = q.execute("query-migrate", json!({})) {
                if st.get("status").and_then(|s| s.as_str()) == Some("completed") {
                    let plugged: u64 = sh.devices.iter().map(|d| d.requested).sum();
                    if let Some(to) = sh.grow {
                        let size = grow_as_asked(&mut q, to)?;
                        eprintln!("grown after the restore: requested {to}, the guest plugged {size}");
                    } else if sh.dest_quota >= plugged + (128 << 20) && sh.devices[0].requested < sh.devices[0].region {
                        grow_after_restore(&mut q, sh)?;
                    }
                    quit_or_kill(&mut q, &mut child);
                    break Outcome::Completed { lines: stderr_lines(&mut child) };
                }
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the destination neither exited nor completed within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Ok(outcome)
}

/// The differences between the model's and QEMU's outcome: the class, and QEMU's lines.
pub fn compare(model: &Outcome, qemu: &Outcome) -> Vec<String> {
    let mut d = Vec::new();
    let class = |o: &Outcome| o.class();
    if class(model) != class(qemu) {
        d.push(format!("class: model {}, QEMU {}", model.class(), qemu.class()));
    }
    let (m, q): (Vec<String>, Vec<String>) = (model.lines().iter().map(|l| without_pointers(l)).collect(), qemu.lines().iter().map(|l| without_pointers(l)).collect());
    if m != q {
        d.push(format!("stderr: model {:?}, QEMU {:?}", model.lines(), qemu.lines()));
    }
    d
}

/// A line with the host pointers QEMU prints (`%p` after `addr=`, `host: `, `from: `) masked:
/// they differ from run to run, and the model names a RAM block and offset there.
pub fn without_pointers(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some((at, key)) = ["addr=", "host: ", "from: "].iter().filter_map(|k| rest.find(k).map(|i| (i, *k))).min() {
        out.push_str(&rest[..at + key.len()]);
        out.push_str("<pointer>");
        rest = &rest[at + key.len()..];
        rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

/// A private work folder for one run.
pub fn workdir() -> Result<TempDir, String> {
    TempDir::new("qemu").map_err(|e| e.to_string())
}

/// How a live migration is run: precopy, or postcopy-ram on both sides with
/// `migrate-start-postcopy` this long after `migrate`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LiveMode {
    Precopy,
    Postcopy { start_after: Duration },
}

/// What the source QEMU ended in, as the model's [`SourceFate`] says it: its final status, its
/// runstate, and the answers to `migrate_cancel` and then `cont`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSeen {
    pub status: String,
    pub runstate: String,
    pub error: Option<String>,
    pub cancel: Reply,
    pub cont: Reply,
}

impl SourceSeen {
    /// The differences from the model's source, by field.
    pub fn compare(&self, model: &SourceFate) -> Vec<String> {
        let mut d = Vec::new();
        if self.status != model.status.name() {
            d.push(format!("source status: model {}, QEMU {}", model.status.name(), self.status));
        }
        if self.runstate != model.runstate.name() {
            d.push(format!("source runstate: model {}, QEMU {}", model.runstate.name(), self.runstate));
        }
        if self.cancel != model.cancel {
            d.push(format!("migrate_cancel: model {}, QEMU {}", model.cancel, self.cancel));
        }
        if self.cont != model.cont {
            d.push(format!("cont: model {}, QEMU {}", model.cont, self.cont));
        }
        d
    }
}

/// The source's states a migration rests in (QEMU 10.0.2, migration_iteration_finish).
const RESTING: [&str; 4] = ["completed", "failed", "postcopy-paused", "cancelled"];

/// Waits until the source rests (at most 20 s), then asks it as an operator would.
fn source_end(q: &mut Qmp) -> Result<SourceSeen, String> {
    let start = Instant::now();
    let info = loop {
        let info = q.execute("query-migrate", json!({}))?;
        let status = info.get("status").and_then(|s| s.as_str()).unwrap_or_default().to_string();
        if RESTING.contains(&status.as_str()) {
            break info;
        }
        if start.elapsed() > Duration::from_secs(20) {
            return Err(format!("the source did not come to rest in 20 s: status {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_string);
    let runstate = text(&q.execute("query-status", json!({}))?, "status").unwrap_or_default();
    let cancel = q.reply("migrate_cancel", json!({}))?;
    let cont = q.reply("cont", json!({}))?;
    Ok(SourceSeen { status: text(&info, "status").unwrap_or_default(), runstate, error: text(&info, "error-desc"), cancel, cont })
}

/// A live migration between two QEMUs over a Unix socket, precopy or postcopy: boots a fresh
/// source, starts the destination with `-incoming defer`, and returns the destination's outcome
/// and where the source ended.
pub fn live(lab: &Lab, sh: &Shape, mode: LiveMode, dir: &Path) -> Result<(Outcome, SourceSeen), String> {
    let postcopy = mode != LiveMode::Precopy;
    let mut src = qemu(lab, sh, MemFs::of_source(sh), false, dir, "lsrc", None)?;
    let _pool = if sh.dest_hugetlb { Some(HugePool::ensure_free(sh.dest_quota.div_ceil(2 << 20)).map_err(|e| format!("huge pages: {e}"))?) } else { None };
    let defer = PathBuf::from("defer");
    let mut dst = qemu(lab, sh, MemFs::of_destination(sh), true, dir, "ldst", Some(&defer))?;
    let result = (|| {
        let start = Instant::now();
        let mut qs = Qmp::connect(&dir.join("lsrc.qmp"), Duration::from_secs(20))?;
        for (i, d) in sh.devices.iter().enumerate() {
            while qs.execute("qom-get", json!({"path": format!("vmem{i}"), "property": "size"}))?.as_u64() != Some(d.requested) {
                if start.elapsed() > Duration::from_secs(120) {
                    return Err("the guest did not plug the requested size in 120 s".into());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let mut qd = Qmp::connect(&dir.join("ldst.qmp"), Duration::from_secs(20))?;
        let caps = json!({"capabilities": [{"capability": "postcopy-ram", "state": postcopy}]});
        qs.execute("migrate-set-capabilities", caps.clone())?;
        qd.execute("migrate-set-capabilities", caps)?;
        let sock = dir.join("migrate.sock");
        let uri = format!("unix:{}", sock.display());
        qd.execute("migrate-incoming", json!({"uri": uri}))?;
        qs.execute("migrate", json!({"uri": uri}))?;
        if let LiveMode::Postcopy { start_after } = mode {
            // Wait the scenario's time, or until the destination has already ended.
            let until = std::time::Instant::now() + start_after;
            while std::time::Instant::now() < until && dst.try_wait().map_err(|e| e.to_string())?.is_none() {
                std::thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(std::time::Instant::now())));
            }
            // After a late start the migration may have failed already: QEMU refuses then.
            let _ = qs.reply("migrate-start-postcopy", json!({}))?;
        }
        // Wait for the destination to exit or to complete.
        let outcome = loop {
            if let Some(status) = dst.try_wait().map_err(|e| e.to_string())? {
                break exited(status, &mut dst);
            }
            let st = qd.execute("query-migrate", json!({})).unwrap_or_default();
            match st.get("status").and_then(|s| s.as_str()) {
                Some("completed") => {
                    quit_or_kill(&mut qd, &mut dst);
                    break Outcome::Completed { lines: stderr_lines(&mut dst) };
                }
                // A placement failed after RUN: the destination pauses and lives on
                // (postcopy_pause_incoming); its stderr is read once it is gone.
                Some("postcopy-paused") => {
                    quit_or_kill(&mut qd, &mut dst);
                    break Outcome::PostcopyFailed { stage: Stage::PostcopyPlacement, lines: stderr_lines(&mut dst) };
                }
                _ => {}
            }
            if start.elapsed() > Duration::from_secs(180) {
                return Err("the live migration did not end in 180 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let source = source_end(&mut qs)?;
        let _ = qs.execute("quit", json!({}));
        Ok((outcome, source))
    })();
    let _ = src.kill();
    let _ = src.wait();
    let _ = dst.kill();
    let _ = dst.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::without_pointers;

    #[test]
    fn pointers_are_masked_where_qemu_prints_them() {
        let qemu = "uffd_zero_page() failed: addr=0x7fa259ffe000 length=4096 mode=0 errno=12";
        let model = "uffd_zero_page() failed: addr=0000:00:04.0/mem1+0x2000000 length=4096 mode=0 errno=12";
        assert_eq!(without_pointers(qemu), without_pointers(model));
        assert_ne!(without_pointers(qemu), without_pointers(&model.replace("errno=12", "errno=17")));
        assert_eq!(without_pointers("copy host: 0x1 from: 0x2 (size: 4096)"), "copy host: <pointer> from: <pointer> (size: 4096)");
        assert_eq!(without_pointers("no pointer here"), "no pointer here");
    }
}

/// The scenario `vmemsim import qemu` writes from the command lines this suite starts QEMU
/// with (source and destination), with the mounts the suite gives them: the same case, from
/// the operator's side. `postcopy` is the live harness's start time.
pub fn imported(lab: &Lab, sh: &Shape, postcopy: Option<&str>) -> Result<crate::load::Loaded, String> {
    use crate::import::qemu::{import_qemu, Import, MountFact};
    let work = Path::new("/run/vmemsim-lab");
    let src_dirs = vec![work.join("src.mem")];
    let dst_dirs: Vec<PathBuf> = (0..sh.dest_mounts.len()).map(|i| work.join(format!("dst.mem{i}"))).collect();
    let (src_fs, _) = memory_mount(sh, false);
    let (dst_fs, _) = memory_mount(sh, true);
    let fact = |dir: &Path, fs: &str, free: Option<u64>| MountFact {
        path: dir.display().to_string(),
        fs: fs.to_string(),
        page_size: (fs == "hugetlbfs").then_some(2 << 20),
        free,
    };
    let program = |args: Vec<String>| std::iter::once(lab.qemu.display().to_string()).chain(args).collect::<Vec<_>>();
    let i = Import {
        source: program(command_line(sh, false, &src_dirs, &lab.dir, work, "src", None)),
        destination: Some(program(command_line(sh, true, &dst_dirs, &lab.dir, work, "dst", Some(Path::new("defer"))))),
        source_qemu: Some(lab.version),
        source_mounts: vec![fact(&src_dirs[0], src_fs, None)],
        destination_mounts: dst_dirs.iter().zip(&sh.dest_mounts).map(|(d, q)| fact(d, dst_fs, Some(*q))).collect(),
        postcopy: postcopy.map(str::to_string),
        ..Import::default()
    };
    let text = import_qemu(&i)?;
    crate::load::parse(Path::new("<imported>"), &text).map_err(|e| format!("{e}\n{text}"))
}
