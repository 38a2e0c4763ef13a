//! `vmemsim run` on the input as a scenario file: parse, build, run the model.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmemsim_sim::fuzzing::scenario(data);
});
