//! Any bytes through the allow-listed pickle reader alone.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = uerzoo_fuzz::checkpoint::pickle::parse(data);
});
