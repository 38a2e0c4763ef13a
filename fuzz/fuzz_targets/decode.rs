//! `vmemsim analyze` (and `--summary`) on the input as a migration stream.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmemsim_sim::fuzzing::decode(data);
});
