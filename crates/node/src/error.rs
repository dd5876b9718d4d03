//! Maps core errors onto JS errors whose `code` is the core's stable code.

use napi::Error;
use tensorbridge_core::Error as CoreError;

/// A stable error code (`ERR_*`) used as the napi error status, so the thrown
/// JS error carries it as `error.code`.
#[derive(Debug, Clone, Copy)]
pub struct Code(pub &'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// Converts a core error into a JS error with the same code and message.
pub fn to_js(err: CoreError) -> Error<Code> {
    Error::new(Code(err.code()), err.to_string())
}

/// An error raised by the binding itself (not by core), with its own code.
pub fn js_error(code: &'static str, message: impl ToString) -> Error<Code> {
    Error::new(Code(code), message)
}

/// Converts a napi error (from a napi call made by the binding) into one
/// with a stable code.
pub fn from_napi(err: napi::Error) -> Error<Code> {
    Error::new(Code("ERR_NAPI"), err.reason.clone())
}
