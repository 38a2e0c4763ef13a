//! `vmemsim import qemu` / `import libvirt` on the input: the scenario it writes must parse.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vmemsim_sim::fuzzing::import(data);
});
