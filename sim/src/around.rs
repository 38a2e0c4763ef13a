//! `campaign --around FILE`: one scenario perturbed along four axes (the destination's
//! capacities around what the plugged memory needs, the times of its events, fault kinds, the
//! postcopy start), one change per variant and then random pairs, each variant a TOML edit of
//! the file that the model runs. Deterministic: the same file and seed give the same variants.

use std::collections::BTreeSet;
use std::path::PathBuf;

use toml_edit::Value;
use vmemsim_model::migration::verdict::Verdict;
use vmemsim_model::{Bytes, LimitId, MountFs, LimitKind};

use crate::around_edit::{edited, inline, Edit};
use crate::build::{build, Built};
use crate::engine::Sim;
use crate::error::SimError;
use crate::load::{parse, Loaded};
use crate::rng::{Actor, Stream};
use crate::run::run_built;
use crate::scenario::{CapacitySpec, DrainPoint, ModeSpec, StartSpec};

/// What a variant changes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Axis {
    Capacity,
    Timing,
    Fault,
    Postcopy,
    /// The destination's device configured unlike the source's (block size, memaddr,
    /// early migration, node): QEMU refuses such a migration by design, so these flips are
    /// reported but do not make the exit status 1.
    Mismatch,
    /// Two single changes together.
    Pair,
}

impl Axis {
    pub const ALL: [Axis; 6] = [Axis::Capacity, Axis::Timing, Axis::Fault, Axis::Postcopy, Axis::Mismatch, Axis::Pair];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Capacity => "capacity",
            Axis::Timing => "timing",
            Axis::Fault => "fault",
            Axis::Postcopy => "postcopy",
            Axis::Mismatch => "mismatch",
            Axis::Pair => "pair",
        }
    }
}

/// One variant: what it changes from the base, and the edits of the file that make it.
#[derive(Clone, Debug)]
pub struct Perturbation {
    pub axis: Axis,
    /// The field changed, as a path into the file (`destination.backend.capacity`).
    pub field: String,
    /// Its new value, for people.
    pub value: String,
    /// The base's value of the field, written the same way.
    pub base_value: String,
    /// Where `value` lies on the field's scale (bytes, µs) when the axis sweeps it.
    pub order: Option<u64>,
    /// Where the base lies on that scale.
    pub base_order: Option<u64>,
    /// How a value of a swept field is written, to try more values between two.
    pub scale: Option<Scale>,
    /// The edits; a sweep's last one sets the field.
    pub edits: Vec<Edit>,
    /// A pair's two single changes, by index.
    pub parts: Option<(usize, usize)>,
}

/// The scale of a swept field.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Scale {
    /// A size in whole pages of this size (`unlimited` is `u64::MAX`).
    Bytes(Bytes),
    /// An integer of µs (`at_us`).
    Micros,
    /// `start_postcopy` as a whole number of milliseconds (ordered in µs).
    Millis,
}

impl Scale {
    /// The smallest step between two values.
    fn step(self) -> u64 {
        match self {
            Scale::Bytes(page) => page.0.max(1),
            Scale::Micros => 1,
            Scale::Millis => 1_000,
        }
    }
}

/// The sweep variant `p` with its field set to `x` instead (`x` on `p`'s scale).
fn at(p: &Perturbation, x: u64) -> Option<Perturbation> {
    let scale = p.scale?;
    let (value, v): (String, Value) = match scale {
        Scale::Bytes(_) => (Bytes(x).to_string(), size_text(Bytes(x)).into()),
        Scale::Micros => (us_text(x), int(x)?),
        Scale::Millis => {
            let t = StartSpec::AfterUs(x).to_string();
            (t.clone(), t.into())
        }
    };
    let mut edits = p.edits.clone();
    edits.pop();
    edits.push(Edit::Set(p.field.clone(), v));
    Some(Perturbation { value, order: Some(x), edits, ..p.clone() })
}

/// What running a variant gave.
#[derive(Clone, Debug)]
pub enum Ran {
    Run { outcome: &'static str, verdict: Verdict },
    /// The loader refused it, with its error.
    NotScenario(String),
}

impl Ran {
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            Ran::Run { verdict, .. } => Some(*verdict),
            Ran::NotScenario(_) => None,
        }
    }
}

/// One capacity of the destination and what the plugged memory needs of it.
#[derive(Clone, Debug)]
pub struct Need {
    pub field: String,
    /// The base's value (`None`: unlimited).
    pub value: Option<Bytes>,
    /// Plugged bytes (whole regions for memdevs that reserve at mmap, main RAM on it) charged here.
    pub need: Bytes,
    /// The smallest block of the devices charged here: the sweep's step.
    pub block: Bytes,
}

/// The whole around campaign: the base's result, every variant with its result.
#[derive(Clone, Debug)]
pub struct Around {
    pub base_outcome: &'static str,
    pub base_verdict: Verdict,
    pub needs: Vec<Need>,
    pub variants: Vec<(Perturbation, Ran)>,
}

/// The file's name in a variant's errors.
fn variant_path(l: &Loaded, index: usize) -> PathBuf {
    PathBuf::from(format!("{} (variant {index})", l.path.display()))
}

/// The variant's TOML: the base file with the edits, its own name, and no `[expect]` (the
/// base's expectation is not the variant's).
pub fn variant_text(l: &Loaded, p: &Perturbation) -> Result<String, String> {
    let mut edits = vec![Edit::Remove("expect".into())];
    edits.extend(p.edits.iter().cloned());
    edits.push(Edit::Set("name".into(), format!("{} (around: {} = {})", l.scenario.name, p.field, p.value).into()));
    edited(&l.text, &edits)
}

/// Loads, builds and runs a variant's text as `vmemsim run` would.
pub fn run_text(l: &Loaded, index: usize, text: &str) -> Result<(Loaded, Sim), String> {
    let vl = parse(&variant_path(l, index), text).map_err(|e| e.to_string())?;
    let b = build(&vl).map_err(|e| e.to_string())?;
    let sim = run_built(&b);
    Ok((vl, sim))
}

fn run_one(l: &Loaded, index: usize, p: &Perturbation) -> Ran {
    match variant_text(l, p).and_then(|t| run_text(l, index, &t)) {
        Ok((_, sim)) => Ran::Run { outcome: sim.outcome.class().name(), verdict: sim.judgement.verdict },
        Err(e) => Ran::NotScenario(e),
    }
}

/// Runs the base and up to `budget` variants: every single change (in axis order), then random
/// pairs of single changes that ran, drawn from `seed`. Variant `k` is the same whatever the
/// budget, as long as the budget reaches it.
pub fn explore(l: &Loaded, seed: u64, budget: usize) -> Result<Around, SimError> {
    let b = build(l)?;
    let base = run_built(&b);
    let (singles, needs) = singles(l, &b);
    let mut variants: Vec<(Perturbation, Ran)> = Vec::new();
    for p in singles.into_iter().take(budget) {
        let ran = run_one(l, variants.len(), &p);
        variants.push((p, ran));
    }
    refine(l, &mut variants, base.judgement.verdict, budget);
    if variants.len() < budget {
        for p in pairs(&variants, seed, budget - variants.len()) {
            let ran = run_one(l, variants.len(), &p);
            variants.push((p, ran));
        }
    }
    Ok(Around { base_outcome: base.outcome.class().name(), base_verdict: base.judgement.verdict, needs, variants })
}

/// Bisects each sweep's flips: a value halfway between the two sides, until the two sides are
/// one step apart (a page, a µs, a ms) or the budget is spent.
fn refine(l: &Loaded, variants: &mut Vec<(Perturbation, Ran)>, base: Verdict, budget: usize) {
    loop {
        let mut new = Vec::new();
        let a = Around { base_outcome: "", base_verdict: base, needs: Vec::new(), variants: std::mem::take(variants) };
        for f in crate::around_flips::flips(&a).into_iter().filter(|f| f.near_order.is_some()) {
            let p = &a.variants[f.index].0;
            let (Some(scale), Some(near), Some(far)) = (p.scale, f.near_order, p.order) else { continue };
            let (lo, hi) = (near.min(far), near.max(far));
            if hi == u64::MAX {
                // Unlimited: no value lies halfway.
                continue;
            }
            let mid = (lo + (hi - lo) / 2) / scale.step() * scale.step();
            let tried = |x: u64| a.variants.iter().any(|(q, _)| q.axis == p.axis && q.field == p.field && q.order == Some(x)) || p.base_order == Some(x) || new.iter().any(|q: &Perturbation| q.field == p.field && q.order == Some(x));
            if mid > lo && mid < hi && !tried(mid) {
                if let Some(q) = at(p, mid) {
                    new.push(q);
                }
            }
        }
        *variants = a.variants;
        if new.is_empty() || variants.len() >= budget {
            return;
        }
        for p in new.into_iter().take(budget - variants.len()) {
            let ran = run_one(l, variants.len(), &p);
            variants.push((p, ran));
        }
    }
}

/// Random pairs of single changes that ran, on different fields (and not two postcopy starts).
fn pairs(singles: &[(Perturbation, Ran)], seed: u64, want: usize) -> Vec<Perturbation> {
    let ok: Vec<usize> = (0..singles.len()).filter(|&i| singles[i].1.verdict().is_some()).collect();
    let mut out = Vec::new();
    if ok.len() < 2 {
        return out;
    }
    let mut s = Stream::new(seed, Actor::Around);
    let mut seen = BTreeSet::new();
    let mut misses = 0;
    while out.len() < want && misses < 64 {
        let (x, y) = (ok[s.below(ok.len() as u64) as usize], ok[s.below(ok.len() as u64) as usize]);
        let (a, b) = (x.min(y), x.max(y));
        let (pa, pb) = (&singles[a].0, &singles[b].0);
        let clash = pa.field == pb.field || (pa.axis == Axis::Postcopy && pb.axis == Axis::Postcopy);
        if a == b || clash || !seen.insert((a, b)) {
            misses += 1;
            continue;
        }
        misses = 0;
        out.push(Perturbation {
            axis: Axis::Pair,
            field: format!("{} + {}", pa.field, pb.field),
            value: format!("{} + {}", pa.value, pb.value),
            base_value: format!("{} + {}", pa.base_value, pb.base_value),
            order: None,
            base_order: None,
            scale: None,
            edits: pa.edits.iter().chain(&pb.edits).cloned().collect(),
            parts: Some((a, b)),
        });
    }
    out
}

/// A size as the scenario format writes it (`254M`, or bytes).
pub fn size_text(b: Bytes) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    UNITS.iter().find(|(shift, _)| b.0 != 0 && b.is_multiple_of(Bytes(1u64 << shift))).map_or_else(|| b.0.to_string(), |(shift, u)| format!("{}{u}", b.0 >> shift))
}

fn us_text(us: u64) -> String {
    format!("{us} µs")
}

fn int(n: u64) -> Option<Value> {
    i64::try_from(n).ok().map(Value::from)
}

/// What the base knows about itself, for every axis.
struct Ctx<'a> {
    l: &'a Loaded,
    b: &'a Built,
    /// The stream's virtual duration in µs (plugged memory and main RAM at the bandwidth).
    duration: u64,
    postcopy: bool,
}

impl Ctx<'_> {
    /// A time after the migration has ended and the guest runs on the destination.
    fn after(&self) -> u64 {
        self.duration.saturating_mul(2).saturating_add(1_000_000)
    }
}

fn single(axis: Axis, field: &str, value: String, base_value: &str, edits: Vec<Edit>) -> Perturbation {
    Perturbation { axis, field: field.to_string(), value, base_value: base_value.to_string(), order: None, base_order: None, scale: None, edits, parts: None }
}

/// Every single change, in axis order, and the capacities' needs.
fn singles(l: &Loaded, b: &Built) -> (Vec<Perturbation>, Vec<Need>) {
    let plugged = b.source.devices.iter().try_fold(Bytes::ZERO, |a, d| a.checked_add(d.size())).unwrap_or(Bytes(u64::MAX));
    let total = u128::from(plugged.0) + u128::from(b.destination.main_ram.0);
    let duration = u64::try_from(total * 1_000_000 / u128::from(b.bandwidth.max(1))).unwrap_or(u64::MAX / 4).saturating_add(100);
    let ctx = Ctx { l, b, duration, postcopy: l.scenario.migration.mode == ModeSpec::Postcopy };
    let mut out = Vec::new();
    let needs = capacity(&ctx, &mut out);
    timing(&ctx, &mut out);
    faults(&ctx, &mut out);
    postcopy(&ctx, &mut out);
    (out, needs)
}

/// What the plugged memory needs of destination limit `id`, and the smallest block charged to it.
fn need_of(b: &Built, id: LimitId) -> (Bytes, Option<Bytes>) {
    let mem = &b.destination.memory;
    let mut need = Bytes::ZERO;
    let mut block: Option<Bytes> = None;
    for (i, d) in b.destination.devices.iter().enumerate() {
        let (Some(m), Some(src)) = (mem.memdev(&d.memdev), b.source.devices.get(i)) else { continue };
        let bm = mem.block_memory(m);
        if !bm.draws.iter().any(|alt| alt.contains(&id)) {
            continue;
        }
        let bytes = if bm.reserve { src.region_size() } else { src.size() };
        need = need.checked_add(bytes).unwrap_or(Bytes(u64::MAX));
        block = Some(block.map_or(src.block_size(), |x| x.min(src.block_size())));
    }
    if let Some(m) = mem.main.as_deref().and_then(|id| mem.memdev(id)) {
        if mem.draws(m).iter().any(|alt| alt.contains(&id)) {
            need = need.checked_add(b.destination.main_ram).unwrap_or(Bytes(u64::MAX));
        }
    }
    (need, block)
}

/// The sizes a capacity sweep tries: 0, fractions of the need, the need ± one and two blocks
/// (and half a block where that is whole pages), twice the need; whole pages, without the base.
fn capacity_points(need: Bytes, block: Bytes, page: Bytes, base: Option<Bytes>) -> Vec<Bytes> {
    let (n, bl) = (need.0, block.0.max(page.0));
    let two = bl.saturating_mul(2);
    let mut v = vec![0, n / 4, n / 2, n / 4 * 3, n.saturating_sub(two), n.saturating_sub(bl), n];
    v.extend([n.checked_add(bl), n.checked_add(two), n.checked_mul(2)].into_iter().flatten());
    if bl / 2 >= page.0 {
        v.extend([n.saturating_sub(bl / 2), n.saturating_add(bl / 2)]);
    }
    let set: BTreeSet<u64> = v.into_iter().map(|x| Bytes(x).align_down(page).0).collect();
    set.into_iter().map(Bytes).filter(|x| Some(*x) != base).collect()
}

/// One capacity field of the destination.
struct CapField {
    field: String,
    current: CapacitySpec,
    /// The field may say "unlimited".
    unlimited: bool,
    /// Its values are whole pages of this size.
    page: Bytes,
    /// The limit it sets.
    id: LimitId,
    /// Edits that make the field exist (the source's list copied to the destination).
    prep: Vec<Edit>,
}

/// Axis 1: each capacity of the destination, swept around its need.
fn capacity(c: &Ctx, out: &mut Vec<Perturbation>) -> Vec<Need> {
    let s = &c.l.scenario;
    let d = &s.destination;
    let mut fields: Vec<CapField> = Vec::new();
    if let Some(bk) = &d.backend {
        let bk = bk.get_ref();
        fields.push(CapField { field: "destination.backend.capacity".into(), current: bk.capacity.clone(), unlimited: true, page: bk.page_size.unwrap_or_else(|| bk.kind.default_page_size()), id: LimitId(0), prep: Vec::new() });
    } else {
        let src = s.source.memory();
        let copy = |key: &str, empty: bool| if empty { vec![Edit::CopyIfAbsent(format!("source.{key}"), format!("destination.{key}"))] } else { Vec::new() };
        let mounts = if d.mounts.is_empty() { src.mounts } else { &d.mounts[..] };
        let huge = if d.hugepages.is_empty() { src.hugepages } else { &d.hugepages[..] };
        let cg = if d.cgroup_hugetlb.is_empty() { src.cgroup_hugetlb } else { &d.cgroup_hugetlb[..] };
        if c.b.destination.memory.limits.len() == mounts.len() + huge.len() + cg.len() {
            for (i, m) in mounts.iter().enumerate() {
                let limit = &c.b.destination.memory.limits[i];
                let page = match limit.kind {
                    LimitKind::Mount { fs: MountFs::Disk, .. } => continue,
                    LimitKind::Mount { fs: MountFs::Hugetlbfs(p), .. } => p,
                    _ => Bytes(4096),
                };
                fields.push(CapField { field: format!("destination.mount[{i}].size"), current: m.get_ref().size.clone(), unlimited: true, page, id: LimitId(i), prep: copy("mount", d.mounts.is_empty()) });
            }
            for (j, h) in huge.iter().enumerate() {
                let h = h.get_ref();
                fields.push(CapField { field: format!("destination.hugepages[{j}].free"), current: CapacitySpec::Limited(h.free), unlimited: false, page: h.page_size, id: LimitId(mounts.len() + j), prep: copy("hugepages", d.hugepages.is_empty()) });
            }
            for (k, g) in cg.iter().enumerate() {
                let g = g.get_ref();
                fields.push(CapField { field: format!("destination.cgroup_hugetlb[{k}].left"), current: CapacitySpec::Limited(g.left), unlimited: false, page: g.page_size, id: LimitId(mounts.len() + huge.len() + k), prep: copy("cgroup_hugetlb", d.cgroup_hugetlb.is_empty()) });
            }
        }
    }
    let mut needs = Vec::new();
    for CapField { field, current, unlimited, page, id, prep } in fields {
        let (need, block) = need_of(c.b, id);
        let block = block.unwrap_or(page);
        let base = match current {
            CapacitySpec::Limited(b) => Some(b),
            CapacitySpec::Unlimited => None,
        };
        let base_value = base.map_or("unlimited".to_string(), |b| b.to_string());
        let base_order = Some(base.map_or(u64::MAX, |b| b.0));
        needs.push(Need { field: field.clone(), value: base, need, block });
        let mut points: Vec<(String, u64, Value)> = capacity_points(need, block, page, base).into_iter().map(|b| (b.to_string(), b.0, size_text(b).into())).collect();
        if unlimited && base.is_some() {
            points.push(("unlimited".into(), u64::MAX, "unlimited".into()));
        }
        for (value, order, v) in points {
            let mut edits = prep.clone();
            edits.push(Edit::Set(field.clone(), v));
            out.push(Perturbation { order: Some(order), base_order, scale: Some(Scale::Bytes(page)), ..single(Axis::Capacity, &field, value, &base_value, edits) });
        }
    }
    needs
}

/// Times around `t` (µs): the start, half, a tenth and a millisecond of the stream either side,
/// twice `t` and after the migration; without `t` itself.
fn time_points(t: u64, duration: u64, after: u64) -> Vec<u64> {
    let v = [Some(0), Some(t / 2), t.checked_sub(duration / 10), t.checked_sub(1_000), t.checked_add(1_000), t.checked_add(duration / 10), t.checked_add(duration / 2), t.checked_mul(2), Some(after.max(t.saturating_add(after)))];
    let set: BTreeSet<u64> = v.into_iter().flatten().filter(|x| *x != t).collect();
    set.into_iter().collect()
}

/// Axis 2: every timed event, shifted earlier and later.
fn timing(c: &Ctx, out: &mut Vec<Perturbation>) {
    let s = &c.l.scenario;
    let mut timed: Vec<(String, u64)> = Vec::new();
    for (i, a) in s.guest.action.iter().enumerate() {
        timed.push((format!("guest.action[{i}].at_us"), a.get_ref().at_us));
    }
    for (i, r) in s.manager.resize.iter().enumerate() {
        timed.push((format!("manager.resize[{i}].at_us"), r.get_ref().at_us));
    }
    if let Some(t) = s.faults.cancel_at_us {
        timed.push(("faults.cancel_at_us".into(), t));
    }
    for (field, t) in timed {
        for x in time_points(t, c.duration, c.after()) {
            let Some(v) = int(x) else { continue };
            out.push(Perturbation { order: Some(x), base_order: Some(t), scale: Some(Scale::Micros), ..single(Axis::Timing, &field, us_text(x), &us_text(t), vec![Edit::Set(field.clone(), v)]) });
        }
    }
    if let (true, Some(StartSpec::AfterUs(t))) = (c.postcopy, s.migration.start_postcopy) {
        let field = "migration.start_postcopy";
        let base = StartSpec::AfterUs(t).to_string();
        let ms: BTreeSet<u64> = time_points(t, c.duration, c.after()).into_iter().map(|x| x / 1_000).filter(|ms| ms * 1_000 != t).collect();
        for ms in ms {
            let text = StartSpec::AfterUs(ms * 1_000).to_string();
            let edits = vec![Edit::Remove("migration.switch_percent".into()), Edit::Set(field.into(), text.clone().into())];
            out.push(Perturbation { order: Some(ms * 1_000), base_order: Some(t), scale: Some(Scale::Millis), ..single(Axis::Timing, field, text, &base, edits) });
        }
    }
}

/// The first unplugged and first plugged block of a source device.
fn first_blocks(b: &Built, i: usize) -> (Option<u64>, Option<u64>) {
    let d = &b.source.devices[i];
    (d.unplugged_runs().first().map(|r| r.first.0), d.plugged_runs().first().map(|r| r.first.0))
}

/// Axis 3: each fault kind of the format, added at each stage it applies to, or instead of the
/// base's faults.
fn faults(c: &Ctx, out: &mut Vec<Perturbation>) {
    let (s, b) = (&c.l.scenario, c.b);
    let Some(dev0) = b.source.devices.first() else { return };
    let id = dev0.id().to_string();
    let block = dev0.block_size();
    let mid = c.duration / 2;
    let mut added: Vec<(String, String, Vec<Edit>)> = Vec::new();
    // A competitor drains the pool: one block, or the headroom and one block more.
    let first = b.destination.memory.first_limit_of(&b.destination.devices[0].memdev);
    let headroom = first.and_then(|l| match b.destination.memory.limits[l.0].capacity {
        vmemsim_model::Capacity::Limited(cap) => cap.checked_sub(need_of(b, l).0),
        vmemsim_model::Capacity::Unlimited => None,
    });
    let points: &[(DrainPoint, &str)] = if c.postcopy { &[(DrainPoint::AfterEarly, "after-early"), (DrainPoint::Listen, "listen"), (DrainPoint::End, "end")] } else { &[(DrainPoint::AfterEarly, "after-early"), (DrainPoint::End, "end")] };
    for (_, at) in points {
        let mut sizes = vec![block];
        if let Some(h) = headroom.and_then(|h| h.checked_add(block)).filter(|h| *h != block) {
            sizes.push(h);
        }
        for bytes in sizes {
            let t = inline(&[("at", (*at).into()), ("bytes", size_text(bytes).into())]);
            added.push(("faults.drain".into(), format!("{bytes} at {at}"), vec![Edit::Push("faults.drain".into(), t)]));
        }
    }
    for (i, d) in s.faults.drain.iter().enumerate() {
        for (p, at) in points {
            if *p != d.get_ref().at {
                let f = format!("faults.drain[{i}].at");
                added.push((f.clone(), (*at).to_string(), vec![Edit::Set(f, (*at).into())]));
            }
        }
    }
    if s.faults.cancel_at_us.is_none() {
        for t in [c.duration / 4, mid, c.duration / 4 * 3] {
            if let Some(v) = int(t) {
                added.push(("faults.cancel_at_us".into(), us_text(t), vec![Edit::Set("faults.cancel_at_us".into(), v)]));
            }
        }
    }
    if c.postcopy {
        let on = !s.faults.skip_ram_discard;
        added.push(("faults.skip_ram_discard".into(), on.to_string(), vec![Edit::Set("faults.skip_ram_discard".into(), on.into())]));
    }
    // Free page hints over the first plugged block of each device (touched after switchover).
    for d in b.source.devices.iter().take(4) {
        if let Some(run) = d.plugged_runs().first() {
            let (off, _) = d.run_bytes(*run);
            let t = inline(&[("device", d.id().into()), ("offset", size_text(off).into()), ("len", size_text(d.block_size()).into())]);
            added.push(("balloon.hint".into(), format!("{} +{} len {}", d.id(), off, d.block_size()), vec![Edit::Push("balloon.hint".into(), t)]));
        }
    }
    // The guest plugs and unplugs during the migration, and plugs after it.
    let (unplugged, plugged) = first_blocks(b, 0);
    let action = |at: u64, op: &str, block: u64, count: u64| -> Option<Edit> {
        let mut pairs = vec![("at_us", int(at)?), ("device", id.as_str().into()), ("op", op.into())];
        if op != "unplug-all" {
            pairs.extend([("block", int(block)?), ("count", int(count)?)]);
        }
        Some(Edit::Push("guest.action".into(), inline(&pairs)))
    };
    let mut acts: Vec<(String, u64, &str, u64)> = Vec::new();
    if let Some(u) = unplugged {
        acts.extend([(format!("plug {id} block {u}"), mid, "plug", u), (format!("plug {id} block {u}"), c.after(), "plug", u)]);
    }
    if let Some(p) = plugged {
        acts.push((format!("unplug {id} block {p}"), mid, "unplug", p));
    }
    acts.push((format!("unplug-all {id}"), mid, "unplug-all", 0));
    for (what, at, op, blk) in acts {
        if let Some(e) = action(at, op, blk, 1) {
            added.push(("guest.action".into(), format!("{what} at {}", us_text(at)), vec![e]));
        }
    }
    // The manager resizes during the migration, and grows the device after it.
    let resize = |at: u64, size: Bytes| -> Option<Edit> { Some(Edit::Push("manager.resize".into(), inline(&[("at_us", int(at)?), ("device", id.as_str().into()), ("requested", size_text(size).into())]))) };
    let requested = dev0.requested_size();
    for size in [requested.checked_add(block), Some(Bytes::ZERO)].into_iter().flatten().filter(|x| *x <= dev0.region_size()) {
        if let Some(e) = resize(mid, size) {
            added.push(("manager.resize".into(), format!("{id} to {size} at {}", us_text(mid)), vec![e]));
        }
    }
    if let (Some(u), Some(e)) = (unplugged, resize(c.after(), dev0.region_size())) {
        if let Some(p) = action(c.after().saturating_add(1), "plug", u, 1) {
            let what = format!("{id} to {} after the migration, the guest plugs block {u}", dev0.region_size());
            added.push(("manager.resize".into(), what.clone(), vec![e.clone(), p.clone()]));
            added.push(("manager.resize".into(), format!("{what} and writes it (init_on_free)"), vec![e, p, Edit::Set("guest.init_on_free".into(), true.into())]));
        }
    }
    // A destination configured differently.
    let dd = "device[0].destination";
    if let Some(v) = block.checked_mul(2) {
        added.push((format!("{dd}.block_size"), v.to_string(), vec![Edit::Set(format!("{dd}.block_size"), size_text(v).into())]));
    }
    if let Some(a) = dev0.addr().checked_add(Bytes::GIB) {
        added.push((format!("{dd}.memaddr"), a.to_string(), vec![Edit::Set(format!("{dd}.memaddr"), format!("{:#x}", a.0).into())]));
    }
    let pre = b.destination.devices[0].prealloc;
    added.push((format!("{dd}.prealloc"), (!pre).to_string(), vec![Edit::Set(format!("{dd}.prealloc"), (!pre).into())]));
    if dev0.early_migration() {
        added.push((format!("{dd}.early_migration"), "false".into(), vec![Edit::Set(format!("{dd}.early_migration"), false.into())]));
    }
    if b.destination.facts.numa_nodes < 2 {
        added.push((format!("{dd}.node"), "1 (2 NUMA nodes)".into(), vec![Edit::Set("destination.numa_nodes".into(), int(2).expect("small")), Edit::Set(format!("{dd}.node"), int(1).expect("small"))]));
    }
    // Old machine types, and prealloc turned over on the destination.
    for m in ["pc-q35-7.1", "pc-q35-7.2"] {
        if s.source.machine.get_ref() != m {
            added.push(("source.machine".into(), m.into(), vec![Edit::Set("source.machine".into(), m.into())]));
        }
    }
    let any_pre = b.destination.devices.iter().any(|d| d.prealloc);
    added.push(("destination.prealloc".into(), (!any_pre).to_string(), vec![Edit::Set("destination.prealloc".into(), (!any_pre).into())]));

    let has_faults = !s.faults.drain.is_empty() || s.faults.cancel_at_us.is_some();
    let base_of = |field: &str| -> String {
        match field {
            "faults.drain" => (if s.faults.drain.is_empty() { "none" } else { "the base's" }).to_string(),
            "faults.cancel_at_us" => s.faults.cancel_at_us.map_or("none".to_string(), us_text),
            "faults.skip_ram_discard" => s.faults.skip_ram_discard.to_string(),
            "destination.prealloc" => any_pre.to_string(),
            "source.machine" => s.source.machine.get_ref().clone(),
            f if f.ends_with(".prealloc") => pre.to_string(),
            f if f.ends_with(".early_migration") => dev0.early_migration().to_string(),
            f if f.ends_with(".block_size") => block.to_string(),
            f if f.ends_with(".memaddr") => dev0.addr().to_string(),
            f if f.ends_with(".node") => dev0.node().to_string(),
            f if f.starts_with("faults.drain[") => "the base's".to_string(),
            _ => "none".to_string(),
        }
    };
    let replaceable: Vec<(String, String, Vec<Edit>)> = added.iter().filter(|(f, _, _)| f == "faults.drain" || f == "faults.cancel_at_us").cloned().collect();
    for (field, value, edits) in added {
        let mismatch = [".block_size", ".memaddr", ".early_migration", ".node"].iter().any(|k| field.starts_with(dd) && field.ends_with(k));
        out.push(single(if mismatch { Axis::Mismatch } else { Axis::Fault }, &field, value, &base_of(&field), edits));
    }
    if has_faults {
        out.push(single(Axis::Fault, "faults", "none".into(), "the base's", vec![Edit::Remove("faults.drain".into()), Edit::Remove("faults.cancel_at_us".into())]));
        for (field, value, edits) in replaceable {
            let mut all = vec![Edit::Remove("faults.drain".into()), Edit::Remove("faults.cancel_at_us".into())];
            all.extend(edits);
            out.push(single(Axis::Fault, &field, format!("{value} instead of the base's faults"), &base_of(&field), all));
        }
    }
}

/// Axis 4: precopy only, and postcopy started at each kind of point the format allows.
fn postcopy(c: &Ctx, out: &mut Vec<Perturbation>) {
    let m = &c.l.scenario.migration;
    let base = if !c.postcopy {
        "precopy".to_string()
    } else {
        match (m.start_postcopy, m.switch_percent) {
            (Some(st), _) => st.to_string(),
            (None, Some(p)) => format!("{p}%"),
            (None, None) => "50%".to_string(),
        }
    };
    if c.postcopy {
        let edits = vec![
            Edit::Set("migration.mode".into(), "precopy".into()),
            Edit::Remove("migration.start_postcopy".into()),
            Edit::Remove("migration.switch_percent".into()),
            Edit::Remove("faults.skip_ram_discard".into()),
        ];
        out.push(single(Axis::Postcopy, "migration.mode", "precopy".into(), &base, edits));
    }
    let mut starts: Vec<String> = ["at-once", "0%", "1%", "25%", "50%", "75%", "99%", "100%"].iter().map(|s| s.to_string()).collect();
    for us in [c.duration / 4, c.duration / 2, c.duration, c.duration.saturating_mul(2)] {
        starts.push(StartSpec::AfterUs((us / 1_000).max(1) * 1_000).to_string());
    }
    let mut seen = BTreeSet::new();
    for st in starts {
        if st == base || !seen.insert(st.clone()) {
            continue;
        }
        let edits = vec![Edit::Set("migration.mode".into(), "postcopy".into()), Edit::Remove("migration.switch_percent".into()), Edit::Set("migration.start_postcopy".into(), st.clone().into())];
        out.push(single(Axis::Postcopy, "migration.start_postcopy", st, &base, edits));
    }
}
