//! A proptest campaign in `cargo test`: arbitrary seeds of the faithful model violate nothing.
//! The CLI (`vmemsim campaign`) runs the big ones.

use proptest::prelude::*;
use vmemsim_model::Variant;
use vmemsim_sim::campaign::run_seed;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn faithful_seeds_violate_no_property(seed in any::<u64>()) {
        let (result, _) = run_seed(seed, Variant::Faithful);
        prop_assert!(result.class.is_ok(), "the generator built an invalid scenario: {:?}", result.class);
        prop_assert!(result.violations.is_empty(), "seed {} violates {:?}", seed, result.violations);
    }
}
