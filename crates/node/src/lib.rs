//! Node.js binding for [`tensorbridge_core`], built with napi-rs.
//!
//! This crate is a thin shell: each `#[napi]` item converts its arguments,
//! calls the core crate and converts the result back. Tensor logic (layout
//! checks, DLPack import/export, ownership) lives in `tensorbridge-core`; the
//! idiomatic TypeScript API lives in `src/`. The exports are free functions
//! over numeric handles (see `handles` for why); `src/native.ts` wraps them in
//! small JS classes, and the TS layer owns the clean names.

#![deny(clippy::all)]
// napi-derive registers exports only outside `cfg(test)`, so under
// `clippy --all-targets` the free `#[napi]` functions look unused.
#![cfg_attr(test, allow(dead_code))]

mod binding_capsule;
mod binding_cuda;
mod binding_handover;
mod binding_stats;
mod binding_tensor;
#[cfg(feature = "testing")]
mod binding_testing;
mod error;
mod fast;
mod handles;
mod hooks;
mod options;
mod view;
