//! The `vmemsim` command line: parses arguments, calls the simulator, prints.

/// mimalloc: a campaign allocates and frees small objects on every run (scenarios, devices,
/// streams); glibc's malloc took a third of a one-thread campaign's time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that ends the process quietly when stdout is closed (`vmemsim ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// `print!` with the same care.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod around_cmd;
mod campaign_cmd;
mod diff_cmd;
mod format;
mod import_cmd;
mod merge_cmd;
mod prealloc_cmd;
mod profile_campaign_cmd;
mod real_cmd;
mod run_cmd;
mod stream_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use format::Format;
use vmemsim_model::vmm::Vmm;
use vmemsim_model::Variant;
use vmemsim_sim::campaign::{Options, Shard};

#[derive(Parser)]
#[command(name = "vmemsim", version, about = "Deterministic simulation of QEMU virtio-mem plug state and migration ordering")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `human` (the default) or `json`: one document of the `vmemsim/1` schema on stdout
    /// (schema/vmemsim-1.schema.json), errors included.
    #[arg(long, global = true, value_enum, default_value = "human")]
    format: Format,
}

/// What both importers take besides their input.
#[derive(clap::Args)]
struct ImportFlags {
    /// Write the scenario here (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The source's QEMU release (default 10.0.2).
    #[arg(long)]
    qemu: Option<vmemsim_model::QemuVersion>,
    /// The destination's QEMU release (default: the source's).
    #[arg(long)]
    dest_qemu: Option<vmemsim_model::QemuVersion>,
    /// A mount of the source: PATH:FS[:FREE] (FS hugetlbfs, hugetlbfs-1G, tmpfs, disk).
    #[arg(long = "mount")]
    mounts: Vec<String>,
    /// A mount of the destination with what its quota has left: PATH:FS:FREE.
    #[arg(long = "dest-mount")]
    dest_mounts: Vec<String>,
    /// Free huge pages on the destination: PAGE:FREE[:NODE], e.g. 2M:768M.
    #[arg(long = "dest-hugepages")]
    dest_hugepages: Vec<String>,
    /// This host is the destination: read its mounts, quotas and free huge pages.
    #[arg(long)]
    host: bool,
    /// A postcopy migration, migrate-start-postcopy at this time ("at-once", "1s", "40%").
    #[arg(long)]
    postcopy: Option<String>,
}

impl ImportFlags {
    fn into_args(self, cmdline: Option<PathBuf>, dest_cmdline: Option<PathBuf>, args: Vec<String>) -> import_cmd::QemuArgs {
        let ImportFlags { output, qemu, dest_qemu, mounts, dest_mounts, dest_hugepages, host, postcopy } = self;
        import_cmd::QemuArgs { output, qemu, dest_qemu, cmdline, dest_cmdline, mounts, dest_mounts, dest_hugepages, host, postcopy, args }
    }
}

#[derive(Subcommand)]
enum ImportFrom {
    /// `vmemsim import qemu [OPTIONS] -- <qemu-system-x86_64 arguments>`: the source's command
    /// line (and the destination's with --dest-cmdline) as a commented scenario.
    Qemu {
        #[command(flatten)]
        flags: ImportFlags,
        /// Read the source's command line from a file (shell words; a libvirt log line works).
        #[arg(long)]
        cmdline: Option<PathBuf>,
        /// The destination's command line, from a file (default: the source's).
        #[arg(long)]
        dest_cmdline: Option<PathBuf>,
        /// The source's qemu-system-x86_64 arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// `vmemsim import libvirt DOMAIN.xml`: a libvirt domain (as `virsh dumpxml` prints it),
    /// translated as libvirt's QEMU driver writes its memory, as a commented scenario.
    Libvirt {
        /// The source's domain XML.
        domain: PathBuf,
        /// The destination's domain XML (default: the source's).
        #[arg(long)]
        dest_xml: Option<PathBuf>,
        #[command(flatten)]
        flags: ImportFlags,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file on the model and print the destination's outcome.
    Run {
        /// The scenario (TOML).
        file: PathBuf,
        /// Also print every step of the migration.
        #[arg(long)]
        trace: bool,
        /// `model` (default), or `real`: also run the destination on real memory in a child
        /// process and compare (exit status 1 when they differ).
        #[arg(long, default_value = "model")]
        backend: BackendArg,
    },
    /// Judge a scenario: print the verdict over both sides; exit 0 when safe, 1 when not, 2 when
    /// the file is wrong.
    Check { file: PathBuf },
    /// Rerun scenarios and check each one's expected outcome, trace hash and violated
    /// properties; exit 0 when all met theirs, 1 when one did not, 2 when a file is wrong.
    Replay {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        trace: bool,
        /// Also write the results as one JUnit XML file (a test case per scenario).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write the run's result into each file's [expect] (showing the difference first),
        /// keeping the rest of the file as it is.
        #[arg(long)]
        accept: bool,
    },
    /// Run many generated scenarios, shrink what they find, and save it under scenarios/found/.
    Campaign {
        /// How many seeds (before sharding). Without --runs and --time: 10000.
        #[arg(long)]
        runs: Option<u64>,
        /// The first seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Worker threads (default: all cores). Results do not depend on it.
        #[arg(long)]
        threads: Option<usize>,
        /// Run only seed indices i modulo n, e.g. 0/4; the union of all shards is one run.
        #[arg(long, value_parser = campaign_cmd::parse_shard, default_value = "0/1")]
        shard: Shard,
        /// The model variant under test.
        #[arg(long, value_parser = campaign_cmd::parse_variant, default_value = "faithful")]
        variant: Variant,
        /// The QEMU release on both sides of every generated scenario.
        #[arg(long, default_value = "10.0.2")]
        qemu: vmemsim_model::QemuVersion,
        /// Stop after this long (e.g. 30s, 2m).
        #[arg(long, value_parser = campaign_cmd::parse_duration)]
        time: Option<Duration>,
        /// Where findings are written (default scenarios/found; with --vmm
        /// scenarios/profiles/<vmm family>).
        #[arg(long)]
        found_dir: Option<PathBuf>,
        /// Time budget for shrinking each finding.
        #[arg(long, value_parser = campaign_cmd::parse_duration, default_value = "10s")]
        shrink_time: Duration,
        /// Report findings without shrinking or writing them.
        #[arg(long)]
        no_shrink: bool,
        /// Shrink the first seed of each QEMU hazard and write it under this folder (a faithful
        /// campaign only), e.g. scenarios/hazards.
        #[arg(long)]
        save_hazards: Option<PathBuf>,
        /// Stop at the first finding (the same one whatever the thread count).
        #[arg(long)]
        stop_on_finding: bool,
        /// Print each seed's generated scenario as TOML (a file `vmemsim run` takes), with its
        /// result as comments, instead of the tables; at most 100 runs.
        #[arg(long)]
        show: bool,
        /// Also write the result as JUnit XML: a test case per property (failing with its
        /// seeds when violated).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Perturb this scenario (capacities, timings, fault kinds, postcopy start) and report
        /// where its verdict flips; --runs is the budget of variants (default 500).
        #[arg(long, conflicts_with_all = ["shard", "time", "save_hazards", "stop_on_finding", "junit", "no_shrink", "threads", "variant", "qemu", "found_dir", "shrink_time", "guided"])]
        around: Option<PathBuf>,
        /// Steer the swarm toward the coverage points the campaign rarely reaches (epochs of
        /// 1,000 runs; the seeds it runs are plain seeds, each reproducible alone).
        #[arg(long, conflicts_with_all = ["shard", "show"])]
        guided: bool,
        /// Run on a Cloud Hypervisor or Firecracker profile (e.g. cloud-hypervisor-v53.0): its
        /// tables and VMM-neutral properties; findings go to scenarios/profiles/<vmm>/ unless
        /// --found-dir is given.
        #[arg(long, conflicts_with_all = ["around", "guided", "shard", "variant", "qemu", "save_hazards", "stop_on_finding", "show", "junit"])]
        vmm: Option<Vmm>,
        /// With --around: the variant to print with --show.
        #[arg(long, requires = "around")]
        variant_index: Option<usize>,
    },
    /// Print what a migration stream holds, as analyze-migration.py does (`-` reads stdin).
    Analyze {
        file: PathBuf,
        /// A summary for people instead of the JSON.
        #[arg(long)]
        summary: bool,
    },
    /// Predict what a destination with this backend would do with a stream; exit 0 only when
    /// the restore is safe.
    Preflight {
        file: PathBuf,
        /// The destination's memory backend kind (e.g. hugetlbfs, tmpfs-file, memfd), shared by
        /// every device; or --destination.
        #[arg(long)]
        backend: Option<String>,
        /// Its capacity: the pool or quota, or "unlimited".
        #[arg(long)]
        capacity: Option<String>,
        /// The destination as a scenario describes it (e.g. one `vmemsim import` wrote): its
        /// memdevs, mounts, huge pages and devices' prealloc.
        #[arg(long, conflicts_with_all = ["backend", "capacity"])]
        destination: Option<PathBuf>,
        /// With --destination: read the limits from this host (mount quotas, free huge pages).
        #[arg(long, requires = "destination")]
        host: bool,
        /// The destination devices' prealloc (default on; with --destination, the scenario's).
        #[arg(long, value_parser = ["on", "off"])]
        prealloc: Option<String>,
        /// The destination's machine type (default: the stream's).
        #[arg(long)]
        machine: Option<String>,
        /// The destination's QEMU release.
        #[arg(long, default_value = "10.0.2")]
        qemu: vmemsim_model::QemuVersion,
    },
    /// Write the precopy stream the model's source sends for a scenario (QEMU's file format).
    Encode {
        scenario: PathBuf,
        /// Where to write the stream (`-`: stdout).
        output: PathBuf,
    },
    /// Write a scenario from a deployment: its QEMU command line.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// The destination process of `run --backend real` (internal).
    #[command(name = "__real-destination", hide = true)]
    RealDestination {
        /// FS:QUOTA:PAGE:LIMIT, once per mount.
        #[arg(long)]
        mount: Vec<String>,
        #[arg(long)]
        files: bool,
    },
    /// A real run's competitor (internal): takes memory on the destination's mount and holds it.
    #[command(name = "__competitor", hide = true)]
    Competitor {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        page: u64,
        #[arg(long)]
        bytes: u64,
        #[arg(long)]
        name: String,
    },
    /// The guardian of a real run (internal): repairs the huge page pool if its parent dies.
    #[command(name = "__guard", hide = true)]
    Guard { pid: u32, start: u64 },
    /// Measure the preallocation strategies on this host's memory and recommend one per kind.
    Prealloc(prealloc_cmd::PreallocArgs),
    /// Repair what interrupted or killed runs left on this host (huge pages, mounts, folders,
    /// processes), and say what was repaired.
    Cleanup,
    /// The same scenarios on several VMM profiles (QEMU releases, Cloud Hypervisor, Firecracker):
    /// outcomes and verdicts side by side; exit 1 when the profiles' verdicts differ or one breaks a
    /// VMM-neutral property.
    Diff {
        /// Scenario files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Profiles, comma-separated (default: qemu-10.0.2,cloud-hypervisor-v53.0,firecracker-v1.16.1).
        #[arg(long)]
        vmm: Option<String>,
    },
    /// Combine the `--format json` documents of a campaign's shards (`--shard i/n`, all n of
    /// them, same --runs, --seed, --variant, --qemu) into the report one run of it prints.
    Merge {
        /// The shards' documents, in any order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
enum BackendArg {
    Model,
    Real,
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Run { .. } => "run",
        Command::Check { .. } => "check",
        Command::Replay { .. } => "replay",
        Command::Campaign { .. } => "campaign",
        Command::Analyze { .. } => "analyze",
        Command::Preflight { .. } => "preflight",
        Command::Encode { .. } => "encode",
        Command::Import { .. } => "import",
        Command::RealDestination { .. } => "__real-destination",
        Command::Guard { .. } => "__guard",
        Command::Competitor { .. } => "__competitor",
        Command::Cleanup => "cleanup",
        Command::Merge { .. } => "merge",
        Command::Diff { .. } => "diff",
        Command::Prealloc(_) => "prealloc",
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if format::requested(&args).json() && e.use_stderr() => {
            let command = args.iter().skip(1).find(|a| !a.starts_with('-') && *a != "json" && *a != "human").map_or("vmemsim", String::as_str);
            format::print_error(Format::Json, command, e.render().to_string().trim_end());
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let format = cli.format;
    let name = command_name(&cli.command);
    let result = match cli.command {
        Command::Run { file, trace, backend: BackendArg::Model } => run_cmd::run(&file, trace, format),
        Command::Run { file, trace: _, backend: BackendArg::Real } => real_cmd::run(&file, format),
        Command::Analyze { file, summary } => stream_cmd::analyze(&file, summary, format),
        Command::Preflight { file, backend, capacity, destination, host, prealloc, machine, qemu } => {
            let dest = stream_cmd::Dest { backend, capacity, destination, host, prealloc: prealloc.map(|p| p == "on") };
            stream_cmd::preflight(&file, dest, machine.as_deref(), qemu, format)
        }
        Command::Encode { scenario, output } => stream_cmd::encode(&scenario, &output, format),
        Command::Import { from: ImportFrom::Qemu { flags, cmdline, dest_cmdline, args } } => import_cmd::qemu(flags.into_args(cmdline, dest_cmdline, args), format),
        Command::Import { from: ImportFrom::Libvirt { domain, dest_xml, flags } } => {
            import_cmd::libvirt(flags.into_args(None, None, Vec::new()), import_cmd::Domains { source: domain, destination: dest_xml }, format)
        }
        Command::RealDestination { mount, files } => {
            use vmemsim_sim::real::child::{destination_main, Setup};
            let mounts: Result<Vec<_>, String> = mount.iter().map(|m| Setup::parse_mount(m)).collect();
            return match mounts {
                Ok(mounts) => ExitCode::from(destination_main(Setup { mounts, files }) as u8),
                Err(e) => {
                    println!("error {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Competitor { dir, page, bytes, name } => {
            return ExitCode::from(vmemsim_sim::real::competitor::competitor_main(&dir, page, bytes, &name) as u8);
        }
        Command::Guard { pid, start } => {
            return ExitCode::from(vmemsim_sim::real::guardian::guardian_main(vmemsim_sim::real::ledger::Owner { pid, start }) as u8);
        }
        Command::Cleanup => real_cmd::cleanup(format),
        Command::Merge { files } => merge_cmd::run(files, format),
        Command::Diff { files, vmm } => diff_cmd::run(&files, vmm.as_deref(), format),
        Command::Prealloc(args) => prealloc_cmd::run(args, format.json()),
        Command::Replay { files, trace, junit, accept } => run_cmd::replay(run_cmd::ReplayArgs { files, trace, junit, accept }, format),
        Command::Check { file } => run_cmd::check(&file, format),
        Command::Campaign { around: Some(file), runs, seed, variant_index, show, .. } => {
            let runs = usize::try_from(runs.unwrap_or(500)).unwrap_or(usize::MAX);
            around_cmd::run(around_cmd::Args { file, seed, runs, variant_index, show, format })
        }
        Command::Campaign { vmm: Some(vmm), runs, seed, threads, time, found_dir, shrink_time, no_shrink, .. } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let runs = if runs.is_none() && time.is_none() { Some(10_000) } else { runs };
            if vmm.qemu().is_some() {
                Err("--vmm names a Cloud Hypervisor or Firecracker profile; a QEMU campaign takes --qemu".to_string())
            } else {
                profile_campaign_cmd::run(profile_campaign_cmd::Args { vmm, seed, runs, threads, time, found_dir, shrink_time, shrink: !no_shrink, format })
            }
        }
        Command::Campaign { runs, seed, threads, shard, variant, qemu, time, found_dir, shrink_time, no_shrink, save_hazards, stop_on_finding, show, junit, around: None, variant_index: _, guided, .. } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let runs = if runs.is_none() && time.is_none() { Some(10_000) } else { runs };
            let options = Options { runs, seed, threads, shard, variant, qemu, time, stop_on_finding, guided, target: None };
            let found_dir = found_dir.unwrap_or_else(|| PathBuf::from("scenarios/found"));
            campaign_cmd::run(campaign_cmd::Args { options, found_dir, shrink_time, shrink: !no_shrink, save_hazards, show, junit, format })
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            format::print_error(format, name, &message);
            ExitCode::from(2)
        }
    }
}
