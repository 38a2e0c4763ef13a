//! `vmemsim preflight` on the input after a 6-byte header that picks the backend.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmemsim_sim::fuzzing::preflight(data);
});
