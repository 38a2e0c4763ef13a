//! `vmemsim prealloc`: which preallocation strategy is fastest on this host's memory, measured
//! beside the memory bandwidth in the same run, as a table (or the `vmemsim/1` JSON document).

use std::process::ExitCode;

use vmemsim_model::Bytes;
use vmemsim_sim::real::advisor::{measure, Plan};
use vmemsim_sim::real::advisor_kinds::{Kind, Layout};
use vmemsim_sim::real::advisor_report::{KindReport, Report};
use vmemsim_sim::real::interrupt;
use vmemsim_sim::real::prealloc::Strategy;
use vmemsim_sim::SimError;

#[derive(clap::Args)]
pub struct PreallocArgs {
    /// Memory kinds, comma-separated: hugetlb-2m, hugetlb-1g, tmpfs, memfd, anon (default: all
    /// the host has).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    memory: Vec<Kind>,
    /// The region per case, e.g. 512M (default 1G, and 4G for 1 GiB pages); whole blocks (2 MiB,
    /// 1 GiB for 1 GiB pages), at least two.
    #[arg(long, value_parser = parse_size)]
    size: Option<Bytes>,
    /// The share of each region that is plugged, 1-100 %.
    #[arg(long, default_value = "50", value_parser = parse_percent)]
    plugged: u8,
    /// Plugged layouts, comma-separated: contiguous, fragmented (spread evenly).
    #[arg(long, value_delimiter = ',', value_parser = parse_layout, default_value = "contiguous,fragmented")]
    layout: Vec<Layout>,
    /// Runs per strategy on fresh memory; the median is shown (1-1000).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
    /// As root: grow the huge page pool for the run where its free pages are too few, through
    /// the ledger (given back on every path). Without it only free pages are used.
    #[arg(long)]
    grow_pool: bool,
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| format!("unknown memory kind '{s}'; accepted: {}", Kind::names()))
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    Layout::parse(s).ok_or_else(|| format!("unknown layout '{s}'; accepted: contiguous, fragmented"))
}

fn parse_size(s: &str) -> Result<Bytes, String> {
    s.parse::<Bytes>().map_err(|e| format!("{e}; a size is a number with K, M, G or T, e.g. 512M or 4G"))
}

fn parse_percent(s: &str) -> Result<u8, String> {
    let t = s.trim().trim_end_matches('%');
    match t.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(format!("'{s}' is not a percentage from 1 to 100")),
    }
}

pub fn run(args: PreallocArgs, json: bool) -> Result<ExitCode, String> {
    let explicit = !args.memory.is_empty();
    let mut kinds = if explicit { args.memory.clone() } else { Kind::ALL.into_iter().filter(|k| k.missing().is_none()).collect() };
    kinds.dedup();
    if explicit {
        // A size that cannot hold the kinds asked for by name is bad input, not a skip.
        for k in &kinds {
            k.region(args.size).map_err(|e| format!("--size: {e}"))?;
        }
    }
    let mut layouts = args.layout.clone();
    layouts.dedup();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let plan = Plan { kinds, size: args.size, plugged_percent: args.plugged, layouts, repeat: args.repeat, grow_pool: args.grow_pool, exe };
    interrupt::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let report = match measure(&plan, |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e @ SimError::Interrupted { signal }) => {
            eprintln!("{e}");
            return Ok(ExitCode::from((128 + signal) as u8));
        }
        Err(e) => return Err(e.to_string()),
    };
    if json {
        out!("{}", report.to_json());
    } else {
        print_human(&report);
    }
    Ok(ExitCode::from(report.exit_code))
}

fn print_human(r: &Report) {
    let m = &r.machine;
    out!(
        "machine: {} cores ({}), kernel {}, {:.1} GiB memory, transparent huge pages: anonymous {}, shmem {}",
        m.cores,
        m.cpu,
        m.kernel,
        m.memory_bytes as f64 / f64::from(1u32 << 30),
        m.thp,
        m.shmem_thp
    );
    out!("plugged: {} % of each region; each figure is the median of {} run(s) on fresh memory", r.plugged_percent, r.repeat);
    out!("GiB/s (fraction of the bandwidth); * marks the best; touch cannot fail gracefully, so it is listed and never best");
    out!("");
    let mut header = format!("{:<16} {:<11} {:>7}", "memory", "layout", "region");
    for s in Strategy::ALL {
        header.push_str(&format!(" {:>14}", s.name()));
    }
    header.push_str(&format!(" {:>9}", "bandwidth"));
    out!("{header}");
    for k in &r.kinds {
        print_kind(k);
    }
    out!("");
    for k in &r.kinds {
        out!("{}: {}{}", k.title, k.backing, pool_note(k));
        if let Some(n) = &k.note {
            out!("{}: {n}", k.title);
        }
    }
    for s in &r.skipped {
        match s.strategy {
            Some(st) => out!("skipped {} on {}: {}", st.name(), s.memory.name(), s.reason),
            None => out!("skipped {}: {}", s.memory.name(), s.reason),
        }
    }
    out!("");
    for k in &r.kinds {
        out!("recommendation: {}", k.recommendation.text);
    }
}

fn pool_note(k: &KindReport) -> String {
    match &k.pool {
        Some(p) if p.grown_by > 0 => format!("; {} huge pages added to {} for the run and given back", p.grown_by, p.pool),
        Some(p) => format!("; {} free huge pages of {}", p.pages_needed, p.pool),
        None => String::new(),
    }
}

fn print_kind(k: &KindReport) {
    for c in &k.cases {
        let mut line = format!("{:<16} {:<11} {:>7}", k.title, c.layout.name(), Bytes(k.region_bytes).to_string());
        for s in Strategy::ALL {
            let cell = match c.rows.iter().find(|row| row.strategy == s) {
                Some(row) => format!("{}{:.2} ({:.2})", if row.best { "*" } else { "" }, row.gib_s, row.fraction),
                None => "-".to_string(),
            };
            line.push_str(&format!(" {cell:>14}"));
        }
        line.push_str(&format!(" {:>9.2}", k.bandwidth_gib_s));
        out!("{line}");
    }
}
