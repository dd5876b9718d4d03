//! libFuzzer targets for tensorbridge-core's native boundary, as a library so that the
//! committed corpus also replays on stable Rust (`cargo test` in this folder) without
//! libFuzzer or a sanitizer.
//!
//! - [`import_headers`]: arbitrary DLPack headers over real buffers, through every import
//!   entry point, checked against an independent [`oracle`].
//! - [`ownership_ops`]: a sequence of create / export / capsule / release / re-import / drop
//!   operations, checking that every deleter, keep-alive and allocation is released exactly
//!   once.
//!
//! [`producer`] is the hostile (but memory-honest) DLPack producer both use.

pub mod import_headers;
pub mod oracle;
pub mod ownership_ops;
pub mod producer;

use arbitrary::Unstructured;

/// Decoding helpers over the fuzz input: each returns a default (0, false, the first choice)
/// once the input is used up, so every input decodes to something.
pub struct Input<'a>(pub Unstructured<'a>);

impl Input<'_> {
    /// A value in `0..n` (0 when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }

    /// True with probability about `num / den`; false once the input is used up (so a short
    /// input takes the common branches, not the rare ones).
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        let den = den as usize;
        self.below(den) >= den.saturating_sub(num as usize)
    }

    /// Any bool.
    pub fn bool(&mut self) -> bool {
        self.0.arbitrary().unwrap_or(false)
    }

    /// Any `u8`.
    pub fn u8(&mut self) -> u8 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// Any `u16`.
    pub fn u16(&mut self) -> u16 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// Any `u32`.
    pub fn u32(&mut self) -> u32 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// Any `i32`.
    pub fn i32(&mut self) -> i32 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// Any `u64`.
    pub fn u64(&mut self) -> u64 {
        self.0.arbitrary().unwrap_or(0)
    }

    /// Any `usize`.
    pub fn usize(&mut self) -> usize {
        self.0.arbitrary().unwrap_or(0)
    }

    /// A dimension size or stride: mostly 0..=4, sometimes negative, a power of two, near
    /// `i64::MAX`, or anything.
    pub fn dim(&mut self) -> i64 {
        match self.below(16) {
            0..=9 => self.below(5) as i64,
            10 => -1 - self.below(3) as i64,
            11 => 1_i64 << self.below(63),
            12 => i64::MAX - self.below(3) as i64,
            13 => self.0.arbitrary().unwrap_or(0),
            14 => self.below(300) as i64,
            _ => 1,
        }
    }
}
