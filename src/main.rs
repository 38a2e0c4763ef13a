//! The `vmemsim` command line: parses arguments, calls the simulator, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vmemsim_model::{Capacity, Mode};
use vmemsim_sim::{build, check_expectations, load, run_built, Built, Loaded};

#[derive(Parser)]
#[command(name = "vmemsim", version, about = "Deterministic simulation of QEMU virtio-mem plug state and migration ordering")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
}

fn describe(l: &Loaded, b: &Built) {
    let s = &l.scenario;
    println!("scenario: {}", s.name);
    if s.variant != vmemsim_model::Variant::Faithful {
        println!("variant: {}", s.variant);
    }
    let side = |name: &str, machine: &str, backend: &vmemsim_model::Backend| {
        let cap = match backend.capacity {
            Capacity::Unlimited => "unlimited".to_string(),
            Capacity::Limited(b) => b.to_string(),
        };
        println!("{name}: machine {machine}, {} memory ({} pages), capacity {cap}", backend.kind.name(), backend.page_size);
    };
    side("source", b.source.machine.name(), &b.source.backend);
    for d in &b.source.devices {
        println!(
            "  {} at {}: region {}, block {}, requested {}, plugged {} in {} run(s), prealloc={}",
            d.id(),
            d.pci(),
            d.region_size(),
            d.block_size(),
            d.requested_size(),
            d.size(),
            d.plugged_runs().len(),
            d.prealloc()
        );
    }
    side("destination", b.destination.machine.name(), &b.destination.backend);
    match b.plan.mode {
        Mode::Precopy => println!("migration: precopy"),
        Mode::Postcopy { switch_percent } => println!("migration: postcopy, switching after {switch_percent}% of the pages"),
    }
}

fn run(file: PathBuf, trace: bool) -> Result<ExitCode, String> {
    let l = load(&file).map_err(|e| e.to_string())?;
    let b = build(&l).map_err(|e| e.to_string())?;
    describe(&l, &b);
    let report = run_built(&b);
    if trace {
        println!("trace:");
        for line in &report.trace {
            println!("  {line}");
        }
    }
    print!("{}", report.outcome);
    for v in &report.violations {
        println!("property {} violated: {}", v.property, v.detail);
    }
    println!("trace hash: {:016x}", report.trace_hash);
    let diffs = check_expectations(&l, &report).map_err(|e| e.to_string())?;
    if l.scenario.expect.is_none() {
        return Ok(if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if diffs.is_empty() {
        println!("expectation: met");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("expectation: NOT met");
        for d in diffs {
            println!("  {d}");
        }
        Ok(ExitCode::from(1))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { file, trace } => run(file, trace),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
