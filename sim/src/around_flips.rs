//! The boundaries of a `campaign --around`: where, along each axis, the model's verdict differs
//! on the two sides of a change.

use vmemsim_model::migration::verdict::Verdict;

use crate::around::{Around, Axis};

/// Where the model's verdict differs on the two sides of a change.
#[derive(Clone, Debug)]
pub struct Flip {
    pub axis: Axis,
    pub field: String,
    pub from: (String, Verdict),
    pub to: (String, Verdict),
    /// The variant on the `to` side.
    pub index: usize,
    /// On a sweep: where the `from` side lies on the field's scale.
    pub near_order: Option<u64>,
}

/// A point of a sweep: where it lies, its value, its verdict, and its variant (`None`: the base).
type Point = (u64, String, Verdict, Option<usize>);

/// The flips: along each swept field, every neighbour pair (walking out from the base) whose
/// verdicts differ; for a choice, each variant whose verdict differs from the base's; for a
/// pair, one whose verdict differs from the base's and from both its parts'.
pub fn flips(a: &Around) -> Vec<Flip> {
    let base = a.base_verdict;
    let mut out = Vec::new();
    let mut sweeps: Vec<(Axis, &str)> = Vec::new();
    for (p, _) in &a.variants {
        if p.order.is_some() && !sweeps.contains(&(p.axis, p.field.as_str())) {
            sweeps.push((p.axis, &p.field));
        }
    }
    for (axis, field) in sweeps {
        let mut points: Vec<Point> = Vec::new();
        for (i, (p, r)) in a.variants.iter().enumerate() {
            if p.axis != axis || p.field != field || p.order.is_none() {
                continue;
            }
            if points.is_empty() {
                if let Some(bo) = p.base_order {
                    points.push((bo, p.base_value.clone(), base, None));
                }
            }
            if let (Some(o), Some(v)) = (p.order, r.verdict()) {
                points.push((o, p.value.clone(), v, Some(i)));
            }
        }
        points.sort_by_key(|p| p.0);
        let Some(at) = points.iter().position(|p| p.3.is_none()) else { continue };
        let mut edge = |near: &Point, far: &Point| {
            if near.2 != far.2 {
                if let Some(index) = far.3 {
                    out.push(Flip { axis, field: field.to_string(), from: (near.1.clone(), near.2), to: (far.1.clone(), far.2), index, near_order: Some(near.0) });
                }
            }
        };
        for k in (0..at).rev() {
            edge(&points[k + 1], &points[k]);
        }
        for k in at + 1..points.len() {
            edge(&points[k - 1], &points[k]);
        }
    }
    for (i, (p, r)) in a.variants.iter().enumerate() {
        let Some(v) = r.verdict() else { continue };
        if p.order.is_some() || v == base {
            continue;
        }
        if let Some((x, y)) = p.parts {
            let part = |k: usize| a.variants.get(k).and_then(|(_, r)| r.verdict());
            if part(x) == Some(v) || part(y) == Some(v) {
                continue;
            }
        }
        out.push(Flip { axis: p.axis, field: p.field.clone(), from: (p.base_value.clone(), base), to: (p.value.clone(), v), index: i, near_order: None });
    }
    out
}
