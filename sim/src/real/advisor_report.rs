//! What `vmemsim prealloc` found: per memory kind and layout the GiB/s of each strategy and its
//! fraction of the bandwidth of the same memory, the machine it ran on, the recommendation per
//! kind, and what it skipped and why. Serialized as the `vmemsim/1` JSON document.

use serde::Serialize;

use super::advisor_kinds::{Kind, Layout};
use super::prealloc::Strategy;

/// The facts of the machine the numbers were measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cpu: String,
    pub memory_bytes: u64,
    /// `/sys/kernel/mm/transparent_hugepage/enabled` and `shmem_enabled`, the selected value:
    /// whether "4 KiB" memory may get 2 MiB pages behind the measurement's back.
    pub thp: String,
    pub shmem_thp: String,
}

/// One strategy on one layout.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub strategy: Strategy,
    pub gib_s: f64,
    /// `gib_s` ÷ the kind's bandwidth.
    pub fraction: f64,
    /// The fastest strategy of the case that fails gracefully.
    pub best: bool,
    /// Whether it fails gracefully when memory runs out (`touch` does not: it is listed only).
    pub graceful: bool,
}

/// One layout of one kind.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    pub layout: Layout,
    pub plugged_bytes: u64,
    pub runs: usize,
    pub rows: Vec<Row>,
    pub best: Strategy,
}

#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    pub strategy: Strategy,
    /// The mean over the layouts of its GiB/s ÷ `qemu`'s.
    pub vs_qemu: f64,
    /// The mean over the layouts of its fraction of the bandwidth.
    pub fraction: f64,
    pub text: String,
}

/// Huge pages a kind used: free ones, or ones the run added through the ledger.
#[derive(Clone, Debug, Serialize)]
pub struct PoolUse {
    pub pool: String,
    pub pages_needed: u64,
    pub grown_by: u64,
}

/// A strategy left out of a kind, or a kind left out of the run, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skip {
    pub memory: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    pub reason: String,
}

/// One memory kind, measured.
#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    pub memory: Kind,
    pub title: String,
    /// What the memory was, exactly (e.g. "memfd, MFD_HUGETLB | MFD_HUGE_2MB").
    pub backing: String,
    pub page_size: u64,
    pub block_size: u64,
    pub region_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolUse>,
    /// What differs from what was asked (a region smaller than asked, and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// memset over the region once populated, one thread, GiB/s.
    pub bandwidth_gib_s: f64,
    pub cases: Vec<Case>,
    pub recommendation: Recommendation,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub command: &'static str,
    pub machine: Machine,
    pub plugged_percent: u8,
    pub repeat: u32,
    /// Each GiB/s is the median of this many fresh runs.
    pub statistic: &'static str,
    pub kinds: Vec<KindReport>,
    pub skipped: Vec<Skip>,
    /// 1 when no kind could be measured.
    pub exit_code: u8,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }
}

/// The rows of a case from its (strategy, GiB/s) measurements: fractions and the best marked.
pub fn case(layout: Layout, plugged_bytes: u64, runs: usize, measured: &[(Strategy, f64)], bandwidth: f64) -> Option<Case> {
    let best = measured.iter().filter(|(s, _)| s.graceful()).max_by(|a, b| a.1.total_cmp(&b.1))?.0;
    let rows = measured.iter().map(|&(strategy, gib_s)| Row { strategy, gib_s, fraction: gib_s / bandwidth, best: strategy == best, graceful: strategy.graceful() }).collect();
    Some(Case { layout, plugged_bytes, runs, rows, best })
}

/// The graceful strategy with the highest mean GiB/s over the kind's layouts (measured on all
/// of them), with its mean ratio to `qemu` and to the bandwidth.
pub fn recommend(kind: Kind, cases: &[Case]) -> Option<Recommendation> {
    let on_all = |s: Strategy| cases.iter().all(|c| c.rows.iter().any(|r| r.strategy == s));
    let mean = |f: &dyn Fn(&Case) -> Option<f64>| -> Option<f64> { cases.iter().map(f).sum::<Option<f64>>().map(|t| t / cases.len() as f64) };
    let gib = |c: &Case, s: Strategy| c.rows.iter().find(|r| r.strategy == s).map(|r| r.gib_s);
    let strategy = Strategy::ALL
        .into_iter()
        .filter(|s| s.graceful() && on_all(*s))
        .max_by(|a, b| mean(&|c| gib(c, *a)).unwrap_or(0.0).total_cmp(&mean(&|c| gib(c, *b)).unwrap_or(0.0)))?;
    let vs_qemu = mean(&|c| Some(gib(c, strategy)? / gib(c, Strategy::Qemu)?))?;
    let fraction = mean(&|c| c.rows.iter().find(|r| r.strategy == strategy).map(|r| r.fraction))?;
    let way = if strategy == Strategy::Qemu { "QEMU's way is the fastest".to_string() } else { format!("{vs_qemu:.2}× QEMU's way") };
    let text = format!("{}: {}, {way}, {fraction:.2} of the bandwidth", kind.title(), strategy.name());
    Some(Recommendation { strategy, vs_qemu, fraction, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_is_the_fastest_graceful_row_and_the_recommendation_the_best_mean() {
        let a = case(Layout::Contiguous, 1, 1, &[(Strategy::Qemu, 10.0), (Strategy::Touch, 30.0), (Strategy::Parallel, 16.0)], 20.0).unwrap();
        assert_eq!(a.best, Strategy::Parallel, "touch cannot fail gracefully: listed, never best");
        assert_eq!(a.rows[2].fraction, 0.8);
        let b = case(Layout::Fragmented, 1, 2, &[(Strategy::Qemu, 10.0), (Strategy::Touch, 30.0), (Strategy::Parallel, 12.0)], 20.0).unwrap();
        let r = recommend(Kind::Hugetlb2m, &[a, b]).unwrap();
        assert_eq!(r.strategy, Strategy::Parallel);
        assert!((r.vs_qemu - 1.4).abs() < 1e-9 && (r.fraction - 0.7).abs() < 1e-9, "{r:?}");
        assert_eq!(r.text, "hugetlb 2 MiB: parallel, 1.40× QEMU's way, 0.70 of the bandwidth");
    }
}
