//! The binding's errors: every code it raises, in one list, and the conversions that give each
//! thrown JS error its stable `code`.
//!
//! Nothing else in this crate spells an `ERR_*` string: errors are made from the constants
//! below (or from a core error, which carries its own code), and [`ALL`] is what the binding's
//! `errorCodes()` reports beside core's list, so the TypeScript layer's sync test
//! (`__test__/error-codes.spec.ts`) sees every code a user can catch.

use napi::Error;
use tensorbridge_core::Error as CoreError;

/// A stable error code (`ERR_*`) used as the napi error status, so the thrown
/// JS error carries it as `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(&'static str);

impl Code {
    /// The code's text, `ERR_…`.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// An argument has the wrong type or value (the same code core uses).
pub const INVALID_ARGUMENT: Code = Code("ERR_INVALID_ARGUMENT");
/// A handle was freed (`dispose()` or garbage collection) before this call.
pub const DISPOSED: Code = Code("ERR_DISPOSED");
/// A capsule handle was consumed or freed (the same code core uses).
pub const DLPACK_CONSUMED: Code = Code("ERR_DLPACK_CONSUMED");
/// The runtime forbids external `ArrayBuffer`s (Electron with the V8 sandbox).
pub const EXTERNAL_BUFFERS_UNSUPPORTED: Code = Code("ERR_EXTERNAL_BUFFERS_UNSUPPORTED");
/// A napi call made by the binding failed.
pub const NAPI: Code = Code("ERR_NAPI");

/// Every code the binding raises itself (core's own are in `tensorbridge_core::error::ALL_CODES`).
pub const ALL: &[Code] =
    &[INVALID_ARGUMENT, DISPOSED, DLPACK_CONSUMED, EXTERNAL_BUFFERS_UNSUPPORTED, NAPI];

/// Converts a core error into a JS error with the same code and message.
pub fn to_js(err: CoreError) -> Error<Code> {
    Error::new(Code(err.code()), err.to_string())
}

/// An error raised by the binding itself (not by core), with its own code.
pub fn js_error(code: Code, message: impl ToString) -> Error<Code> {
    Error::new(code, message)
}

/// Converts a napi error (from a napi call made by the binding) into one
/// with a stable code.
pub fn from_napi(err: napi::Error) -> Error<Code> {
    Error::new(NAPI, err.reason.clone())
}
