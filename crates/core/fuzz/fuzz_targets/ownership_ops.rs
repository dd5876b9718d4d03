//! The export → import → drop state machine: every deleter, keep-alive value and allocation
//! released exactly once (see `tensorbridge_core_fuzz::ownership_ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tensorbridge_core_fuzz::ownership_ops::run(data));
