//! The `ERR_*` codes stay in sync with the TypeScript layer's `src/errors.ts`, which mirrors
//! `ALL_CODES` (it may add codes of its own, such as `ERR_DISPOSED`, but must know every core
//! code). Skipped with a visible reason where the TypeScript sources are absent (a crate-only
//! checkout).

use std::path::Path;

use tensorbridge_core::error::ALL_CODES;

#[test]
fn every_core_code_appears_in_the_typescript_error_codes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../src/errors.ts");
    let Ok(ts) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} not found", path.display());
        return;
    };
    let missing: Vec<&str> =
        ALL_CODES.iter().copied().filter(|code| !ts.contains(&format!("\"{code}\""))).collect();
    assert!(missing.is_empty(), "src/errors.ts lacks {missing:?}; add them to ErrorCode");
}

#[test]
fn codes_are_unique() {
    let mut sorted = ALL_CODES.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ALL_CODES.len());
}
