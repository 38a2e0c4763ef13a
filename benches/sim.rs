//! The simulator's own speed: scenario runs per second, how the cost of a migration follows
//! plugged runs rather than bytes, and campaign throughput on 1 and 2 threads.

use std::path::Path;

/// The allocator the `vmemsim` binary runs with (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use vmemsim_model::config::HostFacts;
use vmemsim_model::migration::drive;
use vmemsim_model::{Backend, BackendKind, BlockCount, BlockIndex, Bytes, Capacity, DeviceConfig, Gpa, MachineType, Plan, Variant, Vm, VmConfig};
use vmemsim_sim::campaign::{campaign, run_seed, Options, Shard};
use vmemsim_sim::{build, load, simulate};

fn seed_scenario(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed/two-devices-short-hugetlb.toml");
    let built = build(&load(&path).expect("the seed scenario")).expect("builds");
    let enough = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/real-qemu/new-prealloc-enough.toml");
    let enough = build(&load(&enough).expect("scenario")).expect("builds");
    let mut g = c.benchmark_group("sim/scenario");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));
    g.bench_function("seed-two-devices", |b| b.iter(|| simulate(&built)));
    g.bench_function("real-qemu-new-prealloc-enough", |b| b.iter(|| simulate(&enough)));
    g.finish();
    // A typical campaign mix: generated seeds with the swarm's faults, one thread.
    let mut g = c.benchmark_group("sim/campaign-mix");
    g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000-generated-seeds", |b| {
        b.iter(|| {
            let mut violations = 0;
            for seed in 1..=1000 {
                violations += run_seed(seed, Variant::Faithful).0.violations.len();
            }
            violations
        })
    });
    g.finish();
}

/// A source VM with one device of `region` bytes (2 MiB blocks) and `runs` plugged runs of one
/// block each, and the destination's configuration.
fn setup(region: Bytes, runs: u64) -> (Vm, VmConfig) {
    let cfg = VmConfig {
        qemu: vmemsim_model::QemuProfile::default(),
        machine: MachineType::parse("q35").expect("known"),
        devices: vec![DeviceConfig::vmem0(Gpa(1 << 40), region, region, true)],
        memory: vmemsim_model::Memory::one_backend(Backend { kind: BackendKind::MemfdHugetlb, page_size: Bytes::mib(2), capacity: Capacity::Unlimited }, ["mem0".to_string()]),
        main_ram: Bytes::ZERO,
        extra_ram: Vec::new(),
        facts: HostFacts::default(),
        variant: Variant::Faithful,
    };
    let (mut src, _) = Vm::realize(&cfg).expect("realizes");
    for r in 0..runs {
        assert_eq!(src.guest_plug(0, BlockIndex(r * 2), BlockCount(1), false), None);
    }
    (src, cfg)
}

/// `VMEMSIM_BENCH_SMOKE=1`: the CI's smoke run, without the largest cases.
fn smoke() -> bool {
    std::env::var("VMEMSIM_BENCH_SMOKE").as_deref() == Ok("1")
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim/scaling");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for (name, region) in [("1GiB", Bytes::gib(1)), ("1TiB", Bytes::TIB), ("16TiB", Bytes(16 << 40))] {
        for runs in [1u64, 100, 1000, 1_000_000] {
            if runs * 2 > region.0 / (2 << 20) || (smoke() && runs > 1000) {
                continue;
            }
            let (src, cfg) = setup(region, runs);
            g.bench_with_input(BenchmarkId::new(name, format!("{runs}-runs")), &runs, |b, _| {
                b.iter(|| drive::migrate(&src, Vm::realize(&cfg).expect("realizes").0, &Plan::default()))
            });
        }
    }
    g.finish();
}

fn campaigns(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim/campaign");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(4000));
    for threads in [1usize, 2] {
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &threads| {
            let o = Options { runs: Some(4000), seed: 1, threads, shard: Shard::WHOLE, variant: Variant::Faithful, qemu: vmemsim_model::QemuVersion::DEFAULT, time: None, stop_on_finding: false, guided: false, target: None };
            b.iter(|| campaign(&o, &|_, _| {}))
        });
    }
    g.finish();
}

/// The stream decoder over a synthetic stream file of 2 GiB of normal pages (256 MiB in smoke
/// mode), read through the page cache as `vmemsim analyze` reads it.
fn decoder(c: &mut Criterion) {
    use vmemsim_model::wire::decode::Decoder;
    use vmemsim_model::wire::encode::encode_precopy;
    use vmemsim_model::GuestRange;
    let plugged = if smoke() { Bytes::mib(256) } else { Bytes::gib(2) };
    let (src, _) = setup(Bytes::gib(4), 0);
    let mut src = src;
    assert_eq!(src.guest_plug_size(0, plugged, false), None);
    let plan = Plan { data: vec![GuestRange { device: 0, offset: Bytes::ZERO, len: plugged }], ..Plan::default() };
    let path = std::env::temp_dir().join(format!("vmemsim-bench-{}.mig", std::process::id()));
    encode_precopy(&src, &plan, &mut std::fs::File::create(&path).expect("a temp file")).expect("encodes");
    let len = std::fs::metadata(&path).expect("written").len();
    let mut g = c.benchmark_group("wire/decode");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    g.throughput(Throughput::Bytes(len));
    g.bench_function(format!("{}-of-pages", plugged), |b| {
        b.iter(|| {
            let f = std::fs::File::open(&path).expect("the stream");
            let mut d = Decoder::new(std::io::BufReader::with_capacity(1 << 20, f), None);
            let mut n = 0;
            while d.next_event().expect("decodes").is_some() {
                n += 1;
            }
            n
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, seed_scenario, scaling, campaigns, decoder);
criterion_main!(benches);
