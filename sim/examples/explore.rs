use vmemsim_sim::campaign::{campaign, loaded, Options, Shard};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map(|v| v.parse().unwrap()).unwrap_or_default();
    let runs = args.get(2).map(|v| v.parse().unwrap()).unwrap_or(1000);
    let o = Options { runs: Some(runs), seed: 1, threads: 2, shard: Shard::WHOLE, variant, time: None };
    let s = campaign(&o, &|_, _| {});
    println!("{:?} {:?}", s.by_class, s.elapsed);
    println!("props {:?}", s.by_property);
    println!("generr {} {:?}", s.generator_errors.len(), s.generator_errors.iter().take(3).collect::<Vec<_>>());
    if let Some(seed) = args.get(3).map(|v| v.parse::<u64>().unwrap()) {
        let sc = vmemsim_sim::gen::generate(seed, variant);
        println!("{}", toml::to_string(&sc).unwrap());
        let b = vmemsim_sim::build(&loaded(sc)).unwrap();
        let sim = vmemsim_sim::simulate(&b);
        for l in &sim.trace { println!("{l}"); }
        println!("{}", sim.outcome);
    }
}
