//! `testingHooks()`: the one export through which the test build's hooks reach JS.
//!
//! It exists in every build with the same signature, so the generated loader (`index.js`,
//! `index.d.ts`) is the same whether or not the `testing` feature is on; a release build
//! (the feature off, as in the platform packages) returns `null` and carries no test code.

use napi::bindgen_prelude::{Null, ToNapiValue};
use napi::{sys, Env};
use napi_derive::napi;

use crate::error::Code;

/// What `testingHooks()` returns: the hooks object of a test build, or `null`.
pub enum TestingHooks {
    /// The test build's hooks (`crate::binding_testing`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Built(crate::fast::RawObject),
    /// A build without the `testing` feature.
    #[cfg_attr(feature = "testing", allow(dead_code))]
    Absent,
}

impl ToNapiValue for TestingHooks {
    unsafe fn to_napi_value(
        env: sys::napi_env,
        hooks: TestingHooks,
    ) -> napi::Result<sys::napi_value> {
        match hooks {
            // SAFETY: the trait's contract (a live env) passes on.
            TestingHooks::Built(object) => unsafe { ToNapiValue::to_napi_value(env, object) },
            // SAFETY: as above.
            TestingHooks::Absent => unsafe { Null::to_napi_value(env, Null) },
        }
    }
}

/// The test hooks (`debug.foreignTensor`, `debug.foreignStats`) in a build with the
/// `testing` feature, `null` otherwise.
#[napi(
    ts_return_type = "{ foreignTensor(shape: Array<number>, strides: Array<number> | undefined | null, dtype: string, versioned: boolean, version: Array<number> | undefined | null, flags: number | undefined | null, byteOffset: number | undefined | null, data: Uint8Array | undefined | null, over: number | undefined | null): { address: bigint; data: bigint }; foreignStats(): { created: number; deleted: number } } | null"
)]
pub fn testing_hooks(env: Env) -> Result<TestingHooks, napi::Error<Code>> {
    #[cfg(feature = "testing")]
    return crate::binding_testing::hooks(&env).map(TestingHooks::Built);
    #[cfg(not(feature = "testing"))]
    {
        let _ = env;
        Ok(TestingHooks::Absent)
    }
}
