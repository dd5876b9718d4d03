//! Arbitrary DLPack headers over real buffers, imported through every entry point and
//! checked against an independent oracle (see `tensorbridge_core_fuzz::import_headers`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tensorbridge_core_fuzz::import_headers::run(data));
