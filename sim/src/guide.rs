//! `campaign --guided`: the swarm steered toward what the campaign rarely reaches.
//!
//! Seeds stay seeds: a guided campaign does not change what a seed generates (so `--seed N
//! --runs 1 --show` and the shrinker reproduce any of its runs); it chooses which seeds to run.
//! Candidates are taken in order from the first seed and each is accepted with the probability
//! that turns the swarm's even odds per fault kind into the current weights (rejection
//! sampling over `gen::swarm`). After every epoch of [`EPOCH`] runs the weights move toward the
//! fault kinds whose runs reached rare points: each run scores the sum of 1/count over the
//! points it reached (counts over the whole campaign so far), and a kind's weight becomes its
//! runs' mean score against the mean score of the runs without it (their relative
//! difference times [`GAIN`], around even odds). Epochs are fixed by run
//! index, so the choice of seeds does not depend on the thread count.

use crate::coverage::COUNT;
use crate::gen::{swarm, FaultKind};
use crate::rng::{Actor, Stream};

/// Runs per epoch: the weights change between epochs only.
pub const EPOCH: u64 = 1_000;

/// The least and most chance a fault kind gets; the bounds keep every kind in play and keep
/// rejection cheap (at worst 1/0.7 candidates per kind, about 41 per run for eleven kinds).
pub const MIN_WEIGHT: f64 = 0.3;
pub const MAX_WEIGHT: f64 = 0.7;

/// How strongly a difference in mean score moves a weight: a kind whose runs score 20 % more
/// than the runs without it reaches [`MAX_WEIGHT`].
pub const GAIN: f64 = 2.0;

/// The chance each fault kind is on, in [`FaultKind::ALL`] order.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Weights(pub [f64; FaultKind::ALL.len()]);

impl Default for Weights {
    /// The swarm's own: every kind on in half the seeds.
    fn default() -> Self {
        Weights([0.5; FaultKind::ALL.len()])
    }
}

fn kind_index(k: FaultKind) -> usize {
    FaultKind::ALL.iter().position(|&x| x == k).expect("ALL lists every kind")
}

/// Whether the guided campaign runs `candidate` under `w`.
pub fn accepts(candidate: u64, w: &Weights) -> bool {
    let on = swarm(candidate);
    let mut a = 1.0f64;
    for (i, k) in FaultKind::ALL.iter().enumerate() {
        let wi = w.0[i];
        let p = if on.contains(k) { wi } else { 1.0 - wi };
        a *= p / wi.max(1.0 - wi);
    }
    let u = (Stream::new(candidate, Actor::Guide).next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    u < a
}

/// One run as the guide sees it: its fault kinds and the points it reached.
pub struct Seen<'a> {
    pub faults: &'a [FaultKind],
    pub points: &'a crate::coverage::Points,
}

/// The next epoch's weights from `counts` (each point's runs over the campaign so far, this
/// epoch's included) and this epoch's runs.
pub fn steer(counts: &[u64], epoch: &[Seen]) -> Weights {
    assert_eq!(counts.len(), COUNT);
    let scores: Vec<f64> = epoch.iter().map(|r| r.points.iter().map(|p| 1.0 / counts[p].max(1) as f64).sum()).collect();
    let mut w = Weights::default();
    for k in FaultKind::ALL {
        let (mut on, mut n_on, mut off, mut n_off) = (0.0, 0u64, 0.0, 0u64);
        for (r, s) in epoch.iter().zip(&scores) {
            if r.faults.contains(&k) {
                on += s;
                n_on += 1;
            } else {
                off += s;
                n_off += 1;
            }
        }
        if n_on == 0 || n_off == 0 {
            continue;
        }
        let (m_on, m_off) = (on / n_on as f64, off / n_off as f64);
        if m_on + m_off > 0.0 {
            w.0[kind_index(k)] = (0.5 + GAIN * (m_on - m_off) / (m_on + m_off)).clamp(MIN_WEIGHT, MAX_WEIGHT);
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coverage::Points;

    #[test]
    fn even_weights_accept_every_candidate() {
        assert!((1..200).all(|c| accepts(c, &Weights::default())));
    }

    #[test]
    fn a_heavy_kind_is_on_in_about_its_share_of_the_accepted_seeds() {
        let mut w = Weights::default();
        w.0[kind_index(FaultKind::Postcopy)] = MAX_WEIGHT;
        let accepted: Vec<u64> = (1..40_000).filter(|&c| accepts(c, &w)).collect();
        let with = accepted.iter().filter(|&&c| swarm(c).contains(&FaultKind::Postcopy)).count() as f64 / accepted.len() as f64;
        assert!((with - MAX_WEIGHT).abs() < 0.02, "{with}");
        let other = accepted.iter().filter(|&&c| swarm(c).contains(&FaultKind::Drain)).count() as f64 / accepted.len() as f64;
        assert!((other - 0.5).abs() < 0.02, "{other}");
    }

    #[test]
    fn the_kind_whose_runs_reach_a_rare_point_gains_weight() {
        let mut counts = vec![100; COUNT];
        counts[7] = 1;
        let (mut rare, mut common) = (Points::default(), Points::default());
        rare.set(7);
        common.set(8);
        let with = [FaultKind::Drain];
        let without: [FaultKind; 0] = [];
        let epoch = [Seen { faults: &with, points: &rare }, Seen { faults: &without, points: &common }, Seen { faults: &without, points: &common }];
        let w = steer(&counts, &epoch);
        assert_eq!(w.0[kind_index(FaultKind::Drain)], MAX_WEIGHT);
        assert_eq!(w.0[kind_index(FaultKind::Postcopy)], 0.5, "a kind no run had stays at even odds");
    }
}
