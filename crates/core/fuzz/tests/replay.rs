//! Replays the committed corpus of each target on stable Rust, without libFuzzer or ASan (the
//! assertions still run; memory errors need `cargo fuzz`). One test, so that the global
//! counters `ownership_ops` checks are not shared with another test thread.

use std::fs;
use std::path::Path;

/// A fuzz target's entry point.
type Target = fn(&[u8]);

#[test]
fn the_committed_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let targets: [(&str, Target); 2] = [
        ("import_headers", tensorbridge_core_fuzz::import_headers::run),
        ("ownership_ops", tensorbridge_core_fuzz::ownership_ops::run),
    ];
    for (name, run) in targets {
        let dir = root.join(name);
        let mut inputs = 0;
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries {
                let path = entry.unwrap().path();
                run(&fs::read(&path).unwrap());
                inputs += 1;
            }
        }
        // Always exercise the empty input and a few fixed ones, corpus or not.
        for seed in [&b""[..], &[0xff; 64], &[0x55; 256], &(0..=255).collect::<Vec<u8>>()] {
            run(seed);
        }
        println!("{name}: {inputs} corpus inputs replayed");
    }
}
