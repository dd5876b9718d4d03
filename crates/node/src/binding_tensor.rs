//! `NativeTensor`: the JS handle of a core [`Tensor`].

use napi::bindgen_prelude::{ArrayBuffer, BigInt, ObjectFinalize, Uint8Array};
use napi::Env;
use napi::Result;
use napi_derive::napi;
use tensorbridge_core::cuda::ConsumerStream;
use tensorbridge_core::{ExportOptions, Tensor};

use crate::binding_capsule::NativeCapsule;
use crate::error::{js_error, to_js, Code};
use crate::options::{parse_device, parse_dtype, NativeExportOptions};

/// Keeps a JS `Uint8Array` (and so its `ArrayBuffer`) alive while core borrows
/// its bytes. napi-rs's owned `Uint8Array` is `Send`: dropped on another thread
/// (a DLPack deleter may run anywhere), it routes the unref to its own JS
/// thread, so releasing it is safe wherever the last tensor user drops it.
struct JsKeepAlive(#[allow(dead_code)] Uint8Array);

/// A tensor owned by the binding. The TypeScript `Tensor` class wraps it.
///
/// Disposing (or collecting) it releases this handle's share of the storage;
/// views and exports made from it hold their own shares.
#[napi(custom_finalize)]
pub struct NativeTensor {
    inner: Option<Tensor>,
    /// Bytes reported to V8 with `adjust_external_memory`, returned on release.
    external_bytes: i64,
}

impl NativeTensor {
    /// Wraps a core tensor, reporting `external` bytes of native memory to V8 so
    /// that large native tensors make the GC run sooner.
    fn wrap(env: &Env, tensor: Tensor, external: bool) -> Result<Self, Code> {
        let external_bytes = if external { tensor.byte_len() as i64 } else { 0 };
        if external_bytes > 0 {
            env.adjust_external_memory(external_bytes).map_err(crate::error::from_napi)?;
        }
        Ok(Self { inner: Some(tensor), external_bytes })
    }

    fn tensor(&self) -> Result<&Tensor, Code> {
        self.inner.as_ref().ok_or_else(|| {
            js_error(
                "ERR_DISPOSED",
                "this tensor was disposed; create a new one, or keep it until you are done with it",
            )
        })
    }

    fn release(&mut self, env: &Env) {
        self.inner = None;
        if self.external_bytes > 0 {
            // Failing to lower V8's estimate only makes GC a little eager: ignore.
            let _ = env.adjust_external_memory(-self.external_bytes);
            self.external_bytes = 0;
        }
    }
}

impl ObjectFinalize for NativeTensor {
    fn finalize(mut self, env: Env) -> napi::Result<()> {
        self.release(&env);
        Ok(())
    }
}

#[napi]
impl NativeTensor {
    /// Wraps the bytes of `data` without copying; `data` stays alive as long as
    /// the tensor (or any export or view of it) does.
    #[napi(factory)]
    pub fn from_bytes(
        env: Env,
        data: Uint8Array,
        shape: Vec<i64>,
        dtype: String,
        read_only: Option<bool>,
    ) -> Result<Self, Code> {
        let dtype = parse_dtype(&dtype)?;
        let ptr = data.as_ptr().cast_mut();
        let len = data.len();
        // SAFETY: `ptr`/`len` describe the live bytes of `data`, and the keep-alive
        // owns `data` for as long as the storage exists. JS may write to the same
        // bytes concurrently from its own thread, as with any TypedArray shared
        // with native code; core never relies on them being unchanged.
        let tensor = unsafe {
            Tensor::from_borrowed(
                ptr,
                len,
                &shape,
                dtype,
                tensorbridge_core::Device::CPU,
                read_only.unwrap_or(false),
                Box::new(JsKeepAlive(data)),
            )
        }
        .map_err(to_js)?;
        Self::wrap(&env, tensor, false)
    }

    /// A new zero-filled tensor on `device` ("cpu" by default, "cuda", "cuda:N",
    /// "cuda_host"): 256-byte aligned host memory, device memory or pinned host memory.
    #[napi(factory)]
    pub fn zeros(
        env: Env,
        shape: Vec<i64>,
        dtype: String,
        device: Option<String>,
    ) -> Result<Self, Code> {
        let device = parse_device(device.as_deref())?;
        let tensor = Tensor::zeros_on(&shape, parse_dtype(&dtype)?, device).map_err(to_js)?;
        Self::wrap(&env, tensor, device.is_cpu())
    }

    /// Imports the tensor held by `capsule`, consuming it.
    #[napi(factory)]
    pub fn from_capsule(env: Env, capsule: &NativeCapsule) -> Result<Self, Code> {
        let tensor = capsule.inner().consume().map_err(to_js)?;
        // Only memory new to this process is reported to V8: re-importing one
        // of our own exports gives back its original storage, which its first
        // handle already reported (or which JS owns). Reporting it again on
        // every import would make a 1 GiB round trip trigger GC each time.
        let external = tensor.device().is_cpu()
            && tensor.storage_kind() == tensorbridge_core::storage::StorageKind::Foreign;
        Self::wrap(&env, tensor, external)
    }

    /// Triton dtype name.
    #[napi(getter)]
    pub fn dtype(&self) -> Result<&'static str, Code> {
        Ok(self.tensor()?.dtype().triton_name())
    }

    /// Dimensions.
    #[napi(getter)]
    pub fn shape(&self) -> Result<Vec<i64>, Code> {
        Ok(self.tensor()?.shape().to_vec())
    }

    /// Strides in elements.
    #[napi(getter)]
    pub fn strides(&self) -> Result<Vec<i64>, Code> {
        Ok(self.tensor()?.strides().to_vec())
    }

    /// Size of the data in bytes.
    #[napi(getter)]
    pub fn byte_length(&self) -> Result<f64, Code> {
        Ok(self.tensor()?.byte_len() as f64)
    }

    /// DLPack device type (`kDLCPU` = 1, `kDLCUDA` = 2, …).
    #[napi(getter)]
    pub fn device_type(&self) -> Result<i32, Code> {
        Ok(self.tensor()?.device().kind.0)
    }

    /// Device ordinal.
    #[napi(getter)]
    pub fn device_id(&self) -> Result<i32, Code> {
        Ok(self.tensor()?.device().id)
    }

    /// Device kind name ("cpu", "cuda", "cuda_host", …).
    #[napi(getter)]
    pub fn device_kind(&self) -> Result<String, Code> {
        Ok(self.tensor()?.device().kind_name().to_string())
    }

    /// Whether the host can address the memory.
    #[napi(getter)]
    pub fn is_cpu(&self) -> Result<bool, Code> {
        Ok(self.tensor()?.device().is_cpu())
    }

    /// Whether the producer marked the memory read-only.
    #[napi(getter)]
    pub fn read_only(&self) -> Result<bool, Code> {
        Ok(self.tensor()?.is_read_only())
    }

    /// Address of the first element, for diagnostics and zero-copy checks.
    #[napi(getter)]
    pub fn data_address(&self) -> Result<BigInt, Code> {
        Ok(BigInt::from(self.tensor()?.data_ptr() as usize as u64))
    }

    /// Whether `dispose()` ran.
    #[napi(getter)]
    pub fn disposed(&self) -> bool {
        self.inner.is_none()
    }

    /// A zero-copy `ArrayBuffer` over the host bytes.
    #[napi]
    pub fn view(&self, env: Env) -> Result<ArrayBuffer<'static>, Code> {
        crate::view::host_view(&env, self.tensor()?)
    }

    /// Another handle to the same storage (no copy).
    #[napi]
    pub fn share(&self, env: Env) -> Result<NativeTensor, Code> {
        let tensor = self.tensor()?.clone();
        Self::wrap(&env, tensor, false)
    }

    /// A deep copy in fresh native memory (on the same GPU for device tensors).
    #[napi]
    pub fn deep_copy(&self, env: Env) -> Result<NativeTensor, Code> {
        let tensor = self.tensor()?.deep_copy().map_err(to_js)?;
        let external = tensor.device().is_cpu();
        Self::wrap(&env, tensor, external)
    }

    /// A copy on `device` ("cpu", "cuda:N", "cuda_host"), always a new allocation;
    /// complete when this returns.
    #[napi]
    pub fn to_device(&self, env: Env, device: String) -> Result<NativeTensor, Code> {
        let device = parse_device(Some(&device))?;
        let tensor = self.tensor()?.to_device(device).map_err(to_js)?;
        Self::wrap(&env, tensor, device.is_cpu())
    }

    /// Copies this tensor's bytes into `dst` (same dtype and shape, any host/CUDA pair).
    #[napi]
    pub fn copy_to(&self, dst: &NativeTensor) -> Result<(), Code> {
        self.tensor()?.copy_to(dst.tensor()?).map_err(to_js)
    }

    /// Exports the tensor as a DLPack capsule, ordering the consumer's stream after ours.
    #[napi]
    pub fn to_dlpack(&self, options: Option<NativeExportOptions>) -> Result<NativeCapsule, Code> {
        let (options, stream): (ExportOptions, ConsumerStream) =
            options.unwrap_or_default().try_into()?;
        let exported = self.tensor()?.to_dlpack_with_stream(&options, stream).map_err(to_js)?;
        Ok(NativeCapsule::new(exported))
    }

    /// Releases this handle now instead of at garbage collection. Idempotent.
    #[napi]
    pub fn dispose(&mut self, env: Env) {
        self.release(&env);
    }
}
