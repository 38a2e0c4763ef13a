//! `vmemsim import qemu`: a deployment's command line as a scenario.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vmemsim_model::QemuVersion;
use vmemsim_sim::import::{host, libvirt};
use vmemsim_sim::import::qemu::{import_qemu, HugeFact, Import, MountFact};
use vmemsim_sim::import::qemu_args::size;
use vmemsim_sim::report::SCHEMA;

use crate::format::{print_doc, Format};

/// What `vmemsim import qemu` was given.
pub struct QemuArgs {
    pub output: Option<PathBuf>,
    pub qemu: Option<QemuVersion>,
    pub dest_qemu: Option<QemuVersion>,
    pub cmdline: Option<PathBuf>,
    pub dest_cmdline: Option<PathBuf>,
    pub mounts: Vec<String>,
    pub dest_mounts: Vec<String>,
    pub dest_hugepages: Vec<String>,
    pub host: bool,
    pub postcopy: Option<String>,
    pub args: Vec<String>,
}

/// `PATH:FS[:FREE]`, FS `hugetlbfs` (2M pages), `hugetlbfs-1G`, `tmpfs` or `disk`.
fn mount(arg: &str, flag: &str) -> Result<MountFact, String> {
    let bad = |why: &str| format!("{flag} {arg}: {why} (write PATH:FS[:FREE], FS hugetlbfs, hugetlbfs-1G, tmpfs or disk)");
    let mut parts = arg.rsplitn(3, ':').collect::<Vec<_>>();
    parts.reverse();
    // PATH may hold no ':' itself; the last one or two fields are FS and FREE.
    let (path, fs, free) = match parts.as_slice() {
        [p, fs] => (*p, *fs, None),
        [p, fs, free] if ["hugetlbfs", "hugetlbfs-1G", "tmpfs", "disk"].contains(fs) => (*p, *fs, Some(*free)),
        [p, q, fs] => (&arg[..p.len() + 1 + q.len()], *fs, None),
        _ => return Err(bad("no file system")),
    };
    let (fs, page) = match fs {
        "hugetlbfs" => ("hugetlbfs", Some(2 << 20)),
        "hugetlbfs-1G" => ("hugetlbfs", Some(1 << 30)),
        "tmpfs" => ("tmpfs", None),
        "disk" => ("disk", None),
        _ => return Err(bad("unknown file system")),
    };
    if !path.starts_with('/') {
        return Err(bad("the path must be absolute"));
    }
    let free = free.map(|f| size(f, 1).map_err(|e| bad(&e))).transpose()?;
    Ok(MountFact { path: path.trim_end_matches('/').to_string(), fs: fs.into(), page_size: page, free })
}

/// `SIZE:FREE[:NODE]`, e.g. `2M:768M` or `2M:512M:1`.
fn hugepages(arg: &str) -> Result<HugeFact, String> {
    let bad = |why: String| format!("--dest-hugepages {arg}: {why} (write PAGE:FREE[:NODE], e.g. 2M:768M or 2M:512M:1)");
    let f: Vec<&str> = arg.split(':').collect();
    let (page, free, node) = match f.as_slice() {
        [p, fr] => (*p, *fr, None),
        [p, fr, n] => (*p, *fr, Some(n.parse::<u32>().map_err(|_| bad(format!("'{n}' is not a node number")))?)),
        _ => return Err(bad("expected two or three fields".into())),
    };
    Ok(HugeFact { page_size: size(page, 1).map_err(bad)?, node, free: size(free, 1).map_err(bad)? })
}

fn words(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // A libvirt log or a shell script: backslash-newline continues a line.
    let joined = text.replace("\\\n", " ");
    let words = shell_words::split(&joined).map_err(|e| format!("{}: {e}", path.display()))?;
    // Skip environment assignments before the program (libvirt logs start with LC_ALL=C ...).
    Ok(words.into_iter().skip_while(|w| !w.starts_with('-') && w.contains('=')).collect())
}

/// The domain XML files of `vmemsim import libvirt`.
pub struct Domains {
    pub source: PathBuf,
    pub destination: Option<PathBuf>,
}

pub fn qemu(a: QemuArgs, format: Format) -> Result<ExitCode, String> {
    run(a, None, format)
}

pub fn libvirt(a: QemuArgs, d: Domains, format: Format) -> Result<ExitCode, String> {
    run(a, Some(d), format)
}

/// `import`'s document: the scenario's text, where it went, and where each fact came from.
#[derive(serde::Serialize)]
struct ImportDoc {
    schema: &'static str,
    command: &'static str,
    /// `qemu` or `libvirt`.
    from: &'static str,
    /// The file written; `null`: the scenario is only in `scenario`.
    output: Option<String>,
    /// The scenario, as TOML.
    scenario: String,
    /// Where each fact came from (the file's header lines).
    facts: Vec<String>,
    exit_code: u8,
}

fn run(a: QemuArgs, domains: Option<Domains>, format: Format) -> Result<ExitCode, String> {
    let (source, destination) = match &domains {
        Some(_) => (Vec::new(), None),
        None => {
            let source = match (&a.cmdline, a.args.is_empty()) {
                (Some(_), false) => return Err("give the source's command line after -- or with --cmdline FILE, not both".into()),
                (Some(f), true) => words(f)?,
                (None, false) => a.args.clone(),
                (None, true) => return Err("give the source's QEMU command line after --, or --cmdline FILE".into()),
            };
            (source, a.dest_cmdline.as_deref().map(words).transpose()?)
        }
    };
    let mut i = Import { source, destination, source_qemu: a.qemu, destination_qemu: a.dest_qemu, postcopy: a.postcopy.clone(), ..Import::default() };
    for m in &a.mounts {
        i.source_mounts.push(mount(m, "--mount")?);
    }
    for m in &a.dest_mounts {
        i.destination_mounts.push(mount(m, "--dest-mount")?);
    }
    for h in &a.dest_hugepages {
        i.destination_hugepages.push(hugepages(h)?);
    }
    if a.host {
        let here = host::mounts(true)?;
        let per_node = i.source.iter().any(|w| w.contains("host-nodes")) || domains.as_ref().is_some_and(|d| std::fs::read_to_string(&d.source).is_ok_and(|x| x.contains("nodemask") || x.contains("numatune")));
        let huge = host::hugepages(per_node);
        i.said.push(format!(
            "--host: this host is the destination: mounts and what their quotas have left from /proc/self/mounts and statvfs, free huge pages from {}",
            if per_node { "/sys/devices/system/node/node*/hugepages" } else { "/sys/kernel/mm/hugepages" }
        ));
        i.said.push("--host: the source's memory files are taken to be on the same file systems as here".into());
        // Given flags win over what the host says.
        for m in &here {
            if !i.destination_mounts.iter().any(|d| d.path == m.path) {
                i.destination_mounts.push(m.clone());
            }
            if !i.source_mounts.iter().any(|d| d.path == m.path) {
                i.source_mounts.push(MountFact { free: None, ..m.clone() });
            }
        }
        if i.destination_hugepages.is_empty() {
            i.destination_hugepages = huge;
        }
    }
    if let Some(d) = &domains {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let (args, notes) = libvirt::command_line(&read(&d.source)?, &i.source_mounts).map_err(|e| format!("{}: {e}", d.source.display()))?;
        i.said.push(format!("translated from {} as libvirt's QEMU driver writes a domain's memory (qemuBuildMemoryBackendProps, qemuBuildMemoryDeviceProps)", d.source.display()));
        i.said.extend(notes.iter().map(|n| format!("{}: {n}", d.source.display())));
        i.source = args;
        if let Some(dp) = &d.destination {
            let mounts = if i.destination_mounts.is_empty() { i.source_mounts.clone() } else { i.destination_mounts.clone() };
            let (dargs, dnotes) = libvirt::command_line(&read(dp)?, &mounts).map_err(|e| format!("{}: {e}", dp.display()))?;
            i.said.extend(dnotes.iter().map(|n| format!("{}: {n}", dp.display())));
            i.destination = Some(dargs);
        }
    }
    let text = import_qemu(&i)?;
    if let Some(p) = &a.output {
        std::fs::write(p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if format.json() {
        let from = if domains.is_some() { "libvirt" } else { "qemu" };
        let output = a.output.as_ref().map(|p| p.display().to_string());
        print_doc(&ImportDoc { schema: SCHEMA, command: "import", from, output, scenario: text, facts: i.said.clone(), exit_code: 0 });
    } else {
        match &a.output {
            Some(p) => eprintln!("wrote {}: run it with `vmemsim run {}`", p.display(), p.display()),
            None => out_raw!("{text}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
