//! CUDA: device and pinned tensors, copies in every direction, pointer validation on import,
//! frees from any thread, and stream ordering of exports.
//!
//! Tests marked `#[ignore]` need a CUDA GPU: `scripts/gpu-check.sh` runs them with
//! `--include-ignored` and `TB_REQUIRE_CUDA=1` (then a missing GPU is a failure, not a skip).
//! Run with `--include-ignored` on a machine without CUDA, they print `SKIPPED: …` and pass.
//! The other tests run everywhere and check that without CUDA every entry point returns
//! `ERR_CUDA_UNAVAILABLE` and nothing panics.
//!
//! Every test takes `stats_lock` (the counters are global), so the binary runs them one at a
//! time.

mod common;

use std::sync::Arc;

use common::{free_legacy, free_versioned, pattern, stats_lock, Counter, Spec};
use tensorbridge_core::cuda::{self, ConsumerStream, MemoryType};
use tensorbridge_core::ffi::{DLDeviceType, DLManagedTensorVersioned};
use tensorbridge_core::storage::StorageKind;
use tensorbridge_core::{stats, Capsule, DataType, Device, ExportOptions, Tensor};

const PINNED: Device = Device::new(DLDeviceType::CUDAHOST, 0);

/// Whether to run a GPU test: `false` (after printing why) when CUDA is not available, unless
/// `TB_REQUIRE_CUDA=1`, where a missing GPU fails the test.
fn gpu() -> bool {
    if cuda::is_available() {
        return true;
    }
    let reason = cuda::unavailable_reason().unwrap_or_default();
    assert!(
        std::env::var("TB_REQUIRE_CUDA").as_deref() != Ok("1"),
        "TB_REQUIRE_CUDA=1 but CUDA is not available: {reason}"
    );
    eprintln!("SKIPPED: no CUDA driver or GPU ({reason})");
    false
}

fn host(dtype: DataType, shape: &[i64], seed: usize) -> Tensor {
    let n: usize = shape.iter().product::<i64>() as usize * dtype.element_size().unwrap();
    let mut bytes = pattern(n + seed)[seed..].to_vec();
    if dtype == DataType::Bool {
        bytes.iter_mut().for_each(|b| *b &= 1);
    }
    Tensor::from_vec(bytes, shape, dtype).unwrap()
}

fn numeric() -> impl Iterator<Item = DataType> {
    DataType::ALL.iter().copied().filter(|d| *d != DataType::Bytes)
}

// ---------------------------------------------------------------------------------------------
// Everywhere: without CUDA, every entry point is ERR_CUDA_UNAVAILABLE.

#[test]
fn without_cuda_every_entry_point_is_cuda_unavailable_and_nothing_panics() {
    let _lock = stats_lock();
    if cuda::is_available() {
        eprintln!("SKIPPED: CUDA is available here; this test is for machines without it");
        return;
    }
    let reason = cuda::unavailable_reason().unwrap();
    assert!(!reason.is_empty());
    let unavailable = |r: Result<(), tensorbridge_core::Error>, what: &str| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE", "{what}: {err}");
        assert!(err.to_string().contains("CUDA is not available"), "{what}: {err}");
    };
    unavailable(cuda::device_count().map(drop), "device_count");
    unavailable(cuda::driver_version().map(drop), "driver_version");
    unavailable(cuda::stream_handle(Device::cuda(0)).map(drop), "stream_handle");
    unavailable(cuda::pointer_attributes(0x1000).map(drop), "pointer_attributes");
    for device in [Device::cuda(0), Device::cuda(3), PINNED] {
        for shape in [&[2, 3][..], &[0][..], &[][..]] {
            let what = format!("empty_on {device} {shape:?}");
            unavailable(Tensor::empty_on(shape, DataType::F32, device).map(drop), &what);
            unavailable(Tensor::zeros_on(shape, DataType::F32, device).map(drop), &what);
        }
    }
    let t = host(DataType::F32, &[4], 0);
    unavailable(t.to_cuda(0).map(drop), "to_cuda");
    unavailable(t.to_device(Device::cuda(1)).map(drop), "to_device cuda");
    unavailable(t.to_device(PINNED).map(drop), "to_device pinned");
    let opts = ExportOptions { device: Some(Device::cuda(0)), ..ExportOptions::default() };
    unavailable(t.to_dlpack(&opts).map(drop), "to_dlpack to cuda");

    // A tensor that claims to be on a GPU (never dereferenced).
    let mut buf = vec![0_u8; 16];
    // SAFETY: `buf` outlives the tensor; cuda memory is never read on the host.
    let fake = unsafe {
        Tensor::from_borrowed(
            buf.as_mut_ptr(),
            16,
            &[4],
            DataType::F32,
            Device::cuda(0),
            false,
            Box::new(()),
        )
    }
    .unwrap();
    assert_eq!(fake.as_bytes().unwrap_err().code(), "ERR_NOT_CPU");
    unavailable(fake.to_cpu().map(drop), "to_cpu");
    unavailable(fake.deep_copy().map(drop), "deep_copy");
    unavailable(fake.copy_to(&t), "copy_to device → host");
    unavailable(t.copy_to(&fake), "copy_to host → device");
    unavailable(fake.copy_to(&fake), "copy_to itself");
    // Re-exporting without a copy needs no driver (no work of ours can be pending).
    for stream in [ConsumerStream::Default, ConsumerStream::Legacy, ConsumerStream::NoSync] {
        fake.to_dlpack_with_stream(&ExportOptions::versioned(), stream).unwrap();
    }
    drop(fake);

    // A foreign DLPack tensor labelled CUDA is refused (unverifiable), and the caller keeps it.
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.device.device_type = DLDeviceType::CUDA;
    let raw = common::legacy(&spec, &counter);
    // SAFETY: a live test-producer tensor that we own; never read.
    let err = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap_err();
    assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE");
    assert_eq!(counter.calls(), 0);
    // SAFETY: ownership stayed with us.
    unsafe { free_legacy(raw) };
    // Through a capsule: the capsule keeps it, and releases it once when dropped.
    spec.device.device_type = DLDeviceType::CUDAMANAGED;
    let raw = common::versioned(&spec, &counter);
    // SAFETY: a live, unowned test-producer tensor.
    let capsule = unsafe { Capsule::from_address(raw as usize, true) }.unwrap();
    assert_eq!(capsule.consume().unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
    assert!(!capsule.is_consumed());
    drop(capsule);
    assert_eq!(counter.calls(), 2);
    // Pinned-labelled host memory is host memory: readable without a driver.
    spec.device.device_type = DLDeviceType::CUDAHOST;
    let raw = common::versioned(&spec, &counter);
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap();
    assert_eq!(t.as_bytes().unwrap(), &spec.data[..]);
    drop(t);
}

#[test]
fn is_available_is_stable_and_cheap_after_the_first_call() {
    let _lock = stats_lock();
    let first = cuda::is_available();
    for _ in 0..1000 {
        assert_eq!(cuda::is_available(), first);
    }
    assert_eq!(cuda::unavailable_reason().is_none(), first);
}

// ---------------------------------------------------------------------------------------------
// GPU only.

#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn device_tensors_are_zeroed_device_memory_and_round_trip_every_dtype() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    assert!(cuda::device_count().unwrap() >= 1);
    assert!(cuda::driver_version().unwrap() >= 12000);
    for dtype in numeric() {
        let z = Tensor::zeros_on(&[3, 5], dtype, Device::cuda(0)).unwrap();
        assert_eq!((z.device(), z.storage_kind()), (Device::cuda(0), StorageKind::Owned));
        assert_eq!(z.as_bytes().unwrap_err().code(), "ERR_NOT_CPU");
        let attrs = cuda::pointer_attributes(z.data_ptr() as usize).unwrap();
        assert_eq!((attrs.memory_type, attrs.device_ordinal), (MemoryType::Device, 0));
        assert_eq!(z.data_ptr() as usize % 256, 0);
        assert!(z.to_cpu().unwrap().as_bytes().unwrap().iter().all(|&b| b == 0), "{dtype:?}");

        let h = host(dtype, &[7, 3], 1);
        let d = h.to_cuda(0).unwrap();
        assert!(d.is_copied());
        assert_eq!(d.to_cuda(0).unwrap().data_ptr(), d.data_ptr(), "already there: no copy");
        let back = d.to_cpu().unwrap();
        assert_eq!(back.device(), Device::CPU);
        assert_eq!(back.as_bytes().unwrap(), h.as_bytes().unwrap(), "{dtype:?}");
    }
    // Zero-size and 0-d tensors.
    let empty = Tensor::empty_on(&[0, 4], DataType::F32, Device::cuda(0)).unwrap();
    assert_eq!(empty.byte_len(), 0);
    assert_eq!(empty.to_cpu().unwrap().as_bytes().unwrap(), [0_u8; 0]);
    let scalar = host(DataType::F64, &[], 3).to_cuda(0).unwrap();
    assert_eq!(
        scalar.to_cpu().unwrap().as_bytes().unwrap(),
        host(DataType::F64, &[], 3).as_bytes().unwrap()
    );
    // A GPU this machine lacks.
    let n = cuda::device_count().unwrap() as i32;
    let err = Tensor::empty_on(&[1], DataType::U8, Device::cuda(n)).unwrap_err();
    assert_eq!(err.code(), "ERR_DEVICE_UNSUPPORTED", "{err}");
}

#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn pinned_tensors_are_pinned_host_memory_readable_on_the_host() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    let p = Tensor::zeros_on(&[1024], DataType::U32, PINNED).unwrap();
    assert!(p.device().is_cpu());
    assert_eq!(p.storage_kind(), StorageKind::Owned);
    assert!(p.as_bytes().unwrap().iter().all(|&b| b == 0));
    let attrs = cuda::pointer_attributes(p.data_ptr() as usize).unwrap();
    assert_eq!(attrs.memory_type, MemoryType::Host);
    // to_cpu of pinned memory is the tensor itself; a pinned export relabels without a copy.
    assert_eq!(p.to_cpu().unwrap().data_ptr(), p.data_ptr());
    let opts = ExportOptions { device: Some(Device::CPU), copy: Some(false), ..Default::default() };
    let again = p.to_dlpack(&opts).unwrap().into_tensor().unwrap();
    assert_eq!(again.data_ptr(), p.data_ptr());
    // Ordinary host memory is unknown to the driver.
    let h = host(DataType::U8, &[64], 0);
    let attrs = cuda::pointer_attributes(h.data_ptr() as usize).unwrap();
    assert_eq!(attrs.memory_type, MemoryType::Unregistered);
}

/// Every direction, small and large (20 MiB + 3: pageable host memory the driver stages in
/// chunks, the last one short).
#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn copies_in_every_direction_carry_the_right_bytes() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    let devices = cuda::device_count().unwrap() as i32;
    for len in [1_i64, 4099, (20 << 20) + 3] {
        let src = host(DataType::U8, &[len], 5);
        let expected = src.as_bytes().unwrap().to_vec();
        let check = |t: &Tensor, what: &str| {
            let bytes = t.to_cpu().unwrap();
            assert!(bytes.as_bytes().unwrap() == &expected[..], "{what} ({len} bytes)");
        };
        // pageable → device → pageable
        let d = src.to_cuda(0).unwrap();
        check(&d, "pageable → device");
        let h = Tensor::zeros(&[len], DataType::U8).unwrap();
        d.copy_to(&h).unwrap();
        assert!(h.as_bytes().unwrap() == &expected[..], "device → pageable copy_to ({len})");
        // pinned → device → pinned
        let p = src.to_device(PINNED).unwrap();
        assert!(p.as_bytes().unwrap() == &expected[..], "pageable → pinned ({len})");
        let d2 = Tensor::empty_on(&[len], DataType::U8, Device::cuda(0)).unwrap();
        p.copy_to(&d2).unwrap();
        check(&d2, "pinned → device");
        let p2 = Tensor::zeros_on(&[len], DataType::U8, PINNED).unwrap();
        d2.copy_to(&p2).unwrap();
        assert!(p2.as_bytes().unwrap() == &expected[..], "device → pinned ({len})");
        // device → device, same GPU (copy_to and deep_copy)
        let d3 = Tensor::empty_on(&[len], DataType::U8, Device::cuda(0)).unwrap();
        d.copy_to(&d3).unwrap();
        check(&d3, "device → device");
        let d4 = d3.deep_copy().unwrap();
        assert_eq!(d4.device(), Device::cuda(0));
        assert_ne!(d4.data_ptr(), d3.data_ptr());
        check(&d4, "deep_copy on device");
        // device → device, another GPU
        if devices >= 2 {
            let other = d.to_cuda(1).unwrap();
            assert_eq!(other.device(), Device::cuda(1));
            check(&other, "cuda:0 → cuda:1");
        }
    }
    // Mismatched and read-only destinations.
    let d = Tensor::zeros_on(&[2, 3], DataType::F32, Device::cuda(0)).unwrap();
    let wrong = Tensor::zeros_on(&[3, 2], DataType::F32, Device::cuda(0)).unwrap();
    assert_eq!(d.copy_to(&wrong).unwrap_err().code(), "ERR_INVALID_ARGUMENT");
    let wrong = Tensor::zeros_on(&[2, 3], DataType::I32, Device::cuda(0)).unwrap();
    assert_eq!(d.copy_to(&wrong).unwrap_err().code(), "ERR_INVALID_ARGUMENT");
    let e = d.to_dlpack(&ExportOptions::versioned()).unwrap();
    // SAFETY: flip READ_ONLY on our own live export before importing it.
    unsafe { (*e.as_ptr().cast::<DLManagedTensorVersioned>()).flags |= 1 };
    let ro = e.into_tensor().unwrap();
    assert!(ro.is_read_only());
    assert_eq!(
        host(DataType::F32, &[2, 3], 0).copy_to(&ro).unwrap_err().code(),
        "ERR_INVALID_ARGUMENT"
    );
    // A tensor copied onto itself is a no-op.
    d.copy_to(&d).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn every_dtype_round_trips_through_device_exports_with_the_same_pointer() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    for dtype in numeric() {
        let h = host(dtype, &[4, 5], 2);
        let d = h.to_cuda(0).unwrap();
        for versioned in [false, true] {
            let opts = ExportOptions { versioned, ..Default::default() };
            let capsule = Capsule::new(d.to_dlpack(&opts).unwrap());
            let back = capsule.consume().unwrap();
            assert_eq!(back.data_ptr(), d.data_ptr(), "{dtype:?}: zero-copy");
            assert_eq!(back.device(), Device::cuda(0));
            assert_eq!(back.to_cpu().unwrap().as_bytes().unwrap(), h.as_bytes().unwrap());
        }
        // Host ↔ device moves through export options, flagged IS_COPIED.
        let opts = ExportOptions { device: Some(Device::cuda(0)), ..ExportOptions::versioned() };
        let moved = h.to_dlpack(&opts).unwrap().into_tensor().unwrap();
        assert_eq!(moved.device(), Device::cuda(0));
        assert!(moved.is_copied());
        let opts = ExportOptions { device: Some(Device::CPU), ..ExportOptions::versioned() };
        let home = moved.to_dlpack(&opts).unwrap().into_tensor().unwrap();
        assert_eq!(home.as_bytes().unwrap(), h.as_bytes().unwrap(), "{dtype:?}");
        let opts =
            ExportOptions { device: Some(Device::CPU), copy: Some(false), ..Default::default() };
        assert_eq!(moved.to_dlpack(&opts).unwrap_err().code(), "ERR_COPY_REQUIRED");
    }
}

/// Builds a foreign-looking DLPack tensor over `data` labelled `device`.
fn foreign(data: usize, device: Device, counter: &Counter) -> *mut DLManagedTensorVersioned {
    let mut spec = Spec::bytes(vec![0; 64], &[64]);
    spec.fake_data = Some(data);
    spec.device.device_type = device.kind;
    spec.device.device_id = device.id;
    common::versioned(&spec, counter)
}

#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn imports_check_device_pointers_with_the_driver() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    let d = host(DataType::U8, &[64], 9).to_cuda(0).unwrap();
    let dev = d.data_ptr() as usize;
    let mut plain = vec![0_u8; 64];
    let pageable = plain.as_mut_ptr() as usize;
    let p = Tensor::zeros_on(&[64], DataType::U8, PINNED).unwrap();
    let pinned = p.data_ptr() as usize;
    let managed = Device::new(DLDeviceType::CUDAMANAGED, 0);
    let cases = [
        ("device memory labelled cuda:0", dev, Device::cuda(0), "ok"),
        ("device memory labelled cuda:1", dev, Device::cuda(1), "ERR_DEVICE_MISMATCH"),
        ("device memory labelled cpu", dev, Device::CPU, "ERR_DEVICE_MISMATCH"),
        ("device memory labelled cuda_host", dev, PINNED, "ERR_DEVICE_MISMATCH"),
        ("device memory labelled cuda_managed", dev, managed, "ERR_DEVICE_MISMATCH"),
        ("pageable host memory labelled cuda:0", pageable, Device::cuda(0), "ERR_DEVICE_MISMATCH"),
        ("pinned host memory labelled cuda:0", pinned, Device::cuda(0), "ERR_DEVICE_MISMATCH"),
        ("pageable host memory labelled cpu", pageable, Device::CPU, "ok"),
        ("pinned host memory labelled cuda_host", pinned, PINNED, "ok"),
        ("pinned host memory labelled cpu", pinned, Device::CPU, "ok"),
    ];
    for (what, data, label, expected) in cases {
        let counter = Counter::new();
        let raw = foreign(data, label, &counter);
        // SAFETY: a live test-producer tensor over live memory of the stated kind.
        match unsafe { Tensor::from_dlpack_versioned(raw) } {
            Ok(t) => {
                assert_eq!(expected, "ok", "{what}");
                assert_eq!(t.data_ptr() as usize, data, "{what}: borrowed in place");
                assert_eq!(t.storage_kind(), StorageKind::Foreign);
                if label == Device::cuda(0) {
                    let bytes = t.to_cpu().unwrap();
                    assert_eq!(bytes.as_bytes().unwrap(), d.to_cpu().unwrap().as_bytes().unwrap());
                }
                drop(t);
                assert_eq!(counter.calls(), 1, "{what}: the producer's deleter ran once");
            }
            Err(err) => {
                assert_eq!(err.code(), expected, "{what}: {err}");
                assert_eq!(counter.calls(), 0, "{what}: the caller keeps ownership");
                // SAFETY: ownership stayed with us.
                unsafe { free_versioned(raw) };
            }
        }
    }
    // The memory we borrowed is still ours to use: nobody freed it.
    assert_eq!(
        d.to_cpu().unwrap().as_bytes().unwrap(),
        host(DataType::U8, &[64], 9).as_bytes().unwrap()
    );
    drop(plain);
}

#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn device_and_pinned_memory_is_freed_once_from_any_thread() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    let before = stats::snapshot();
    {
        let d = Tensor::zeros_on(&[1 << 20], DataType::F32, Device::cuda(0)).unwrap();
        let p = Tensor::zeros_on(&[1 << 10], DataType::F32, PINNED).unwrap();
        let mid = stats::snapshot();
        assert_eq!(mid.cuda_allocations - before.cuda_allocations, 2);
        assert_eq!(mid.cuda_live_bytes - before.cuda_live_bytes, (4 << 20) + 4096);
        // Exports consumed and dropped on other threads; the tensors dropped here first.
        let exports: Vec<_> = [&d, &p]
            .iter()
            .flat_map(|t| {
                [
                    t.to_dlpack(&ExportOptions::versioned()).unwrap(),
                    t.to_dlpack(&Default::default()).unwrap(),
                ]
            })
            .map(Capsule::new)
            .map(Arc::new)
            .collect();
        drop((d, p));
        assert_eq!(stats::snapshot().cuda_frees, before.cuda_frees, "exports keep memory alive");
        let handles: Vec<_> = exports
            .into_iter()
            .map(|c| std::thread::spawn(move || drop(c.consume().unwrap())))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    let after = stats::snapshot();
    assert_eq!(after.cuda_frees - before.cuda_frees, 2, "each allocation freed exactly once");
    assert_eq!(after.cuda_live_bytes, before.cuda_live_bytes);
    // Still usable afterwards (the context was restored on those threads, not destroyed).
    assert!(Tensor::zeros_on(&[4], DataType::U8, Device::cuda(0)).unwrap().to_cpu().is_ok());
}

#[cfg(feature = "cuda")]
mod streams {
    //! The producer half of the stream protocol, made observable without kernels: a
    //! `cuStreamWaitValue32` gate holds tensorbridge's stream, so anything ordered after it
    //! stays pending until the gate opens.
    use super::*;
    use cudarc::driver::sys;
    use std::ptr;

    fn ok(r: sys::CUresult, what: &str) {
        assert_eq!(r, sys::CUresult::CUDA_SUCCESS, "{what}");
    }

    /// A non-blocking stream of the test's (the "consumer") on GPU 0.
    fn consumer_stream() -> sys::CUstream {
        let mut s = ptr::null_mut();
        // SAFETY: a valid out pointer; tensorbridge made GPU 0's primary context current for
        // this thread's calls below (`bind`).
        ok(unsafe { sys::cuStreamCreate(&mut s, 1) }, "cuStreamCreate");
        s
    }

    fn bind() {
        let mut ctx = ptr::null_mut();
        let mut dev = 0;
        // SAFETY: valid out pointers; the primary context is retained by tensorbridge already.
        unsafe {
            ok(sys::cuDeviceGet(&mut dev, 0), "cuDeviceGet");
            ok(sys::cuDevicePrimaryCtxRetain(&mut ctx, dev), "cuDevicePrimaryCtxRetain");
            ok(sys::cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
        }
    }

    /// Opens the gate on drop, so a failing assertion can't leave our stream blocked.
    struct Gate {
        flag: Tensor,
        opener: sys::CUstream,
    }

    impl Gate {
        fn open(&self) {
            // SAFETY: 4 bytes of device memory; on the opener's own (non-blocking) stream.
            unsafe {
                ok(sys::cuMemsetD32Async(self.flag.data_ptr() as u64, 1, 1, self.opener), "open");
                ok(sys::cuStreamSynchronize(self.opener), "open sync");
            }
        }
    }

    impl Drop for Gate {
        fn drop(&mut self) {
            self.open();
        }
    }

    /// Named to run before the test below, which hands our stream out (`stream_handle`): from
    /// then on every export asks the driver, and this one would not test the flag path.
    ///
    /// Write after write: the consumer, ordered by the export, writes small patches into a
    /// tensor whose zero fill (4 GiB, about a millisecond of work) is still queued on our
    /// stream. Ordered, every patch survives; unordered, the patches land in microseconds
    /// and the fill sweeps over most of them.
    #[test]
    #[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
    fn a_zero_fill_still_queued_orders_a_consumer_that_writes_after_it() {
        let _lock = stats_lock();
        if !gpu() {
            return;
        }
        const WORDS: usize = 1 << 30;
        const PATCHES: usize = 16;
        const PATCH_WORDS: usize = 1 << 14;
        const MARK: u32 = 0xDEAD_BEEF;
        bind();
        let consumer = consumer_stream();
        let tensor = match Tensor::zeros_on(&[WORDS as i64], DataType::U32, Device::cuda(0)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("SKIPPED: this GPU has no 4 GiB free for the test ({e})");
                return;
            }
        };
        tensor
            .to_dlpack_with_stream(
                &ExportOptions::versioned(),
                ConsumerStream::Handle(consumer as usize),
            )
            .unwrap();
        // The patches come from pinned memory through a copy engine, which runs beside the
        // fill's kernel; kernels of the consumer would queue behind the fill's blocks anyway.
        let marks = Tensor::zeros_on(&[PATCH_WORDS as i64], DataType::U32, PINNED).unwrap();
        // SAFETY: PATCH_WORDS words of live pinned host memory, not shared with anyone.
        unsafe { std::slice::from_raw_parts_mut(marks.data_ptr() as *mut u32, PATCH_WORDS) }
            .fill(MARK);
        let patch = |i: usize| tensor.data_ptr() as u64 + (i * (WORDS / PATCHES) * 4) as u64;
        for i in 0..PATCHES {
            // SAFETY: PATCH_WORDS words inside the live tensor from the live pinned buffer, on
            // the consumer's stream.
            let r = unsafe {
                sys::cuMemcpyHtoDAsync_v2(
                    patch(i),
                    marks.data_ptr().cast(),
                    PATCH_WORDS * 4,
                    consumer,
                )
            };
            ok(r, "patch");
        }
        // SAFETY: the context is current (`bind`); waits for all of its streams.
        ok(unsafe { sys::cuCtxSynchronize() }, "sync");
        let mut overwritten = 0;
        for i in 0..PATCHES {
            let mut words = vec![0_u32; PATCH_WORDS];
            // SAFETY: PATCH_WORDS words of the live tensor into a host buffer of that size.
            let r = unsafe {
                sys::cuMemcpyDtoH_v2(words.as_mut_ptr().cast(), patch(i), PATCH_WORDS * 4)
            };
            ok(r, "read back");
            overwritten += words.iter().filter(|&&w| w != MARK).count();
        }
        assert_eq!(overwritten, 0, "words of the consumer's patches that our zero fill overwrote");
    }

    #[test]
    #[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
    fn an_export_makes_the_consumer_stream_wait_for_our_stream_and_no_sync_does_not() {
        let _lock = stats_lock();
        if !gpu() {
            return;
        }
        let tensor = Tensor::zeros_on(&[16], DataType::F32, Device::cuda(0)).unwrap();
        let flag = Tensor::zeros_on(&[1], DataType::U32, Device::cuda(0)).unwrap();
        let ours = cuda::stream_handle(Device::cuda(0)).unwrap() as sys::CUstream;
        // Wait for the zero fills before arming the gate.
        // SAFETY: tensorbridge's stream handle, alive for the process.
        ok(unsafe { sys::cuStreamSynchronize(ours) }, "sync ours");
        // cudarc panics on a missing symbol: look the test-only ones up first.
        // SAFETY: CUDA is available, so the driver library is loaded; lookups only.
        let lib = unsafe { sys::culib() };
        for name in ["cuStreamWaitValue32_v2", "cuMemsetD32Async", "cuStreamQuery"] {
            // SAFETY: a symbol lookup; nothing is called.
            if unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }.is_err() {
                eprintln!("SKIPPED: this driver lacks {name}, which the gate of this test needs");
                return;
            }
        }
        bind();
        let (waiter, free_runner, opener) =
            (consumer_stream(), consumer_stream(), consumer_stream());
        // SAFETY: a device address of 4 live bytes; waits until it holds 1.
        let r = unsafe { sys::cuStreamWaitValue32_v2(ours, flag.data_ptr() as u64, 1, 0) };
        if r == sys::CUresult::CUDA_ERROR_NOT_SUPPORTED {
            eprintln!("SKIPPED: this GPU has no stream memory operations (cuStreamWaitValue32)");
            return;
        }
        ok(r, "cuStreamWaitValue32");
        let gate = Gate { flag, opener };

        tensor
            .to_dlpack_with_stream(
                &ExportOptions::versioned(),
                ConsumerStream::Handle(waiter as usize),
            )
            .unwrap();
        tensor.to_dlpack_with_stream(&ExportOptions::versioned(), ConsumerStream::NoSync).unwrap();
        // Work on a stream that was not ordered after ours runs while our stream is held.
        // SAFETY: 64 bytes of live device memory, on the test's own stream.
        ok(
            unsafe { sys::cuMemsetD32Async(tensor.data_ptr() as u64, 0, 16, free_runner) },
            "memset",
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        // SAFETY: live streams of ours.
        let (waiting, free) =
            unsafe { (sys::cuStreamQuery(waiter), sys::cuStreamQuery(free_runner)) };
        assert_eq!(waiting, sys::CUresult::CUDA_ERROR_NOT_READY, "the consumer waits for us");
        assert_eq!(free, sys::CUresult::CUDA_SUCCESS, "an unrelated stream does not");
        gate.open();
        // SAFETY: as above.
        ok(unsafe { sys::cuStreamSynchronize(waiter) }, "the consumer runs once we are done");
        drop(gate);
        // The default/legacy and per-thread streams are accepted handles too.
        for stream in [ConsumerStream::Default, ConsumerStream::Legacy, ConsumerStream::PerThread] {
            tensor.to_dlpack_with_stream(&ExportOptions::default(), stream).unwrap();
        }
        let err = ConsumerStream::from_array_api(Some(0)).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARGUMENT");
    }
}

// ---------------------------------------------------------------------------------------------
// CUDA IPC (Triton's CUDA shared memory).

#[test]
fn ipc_arguments_are_checked_first_and_without_cuda_opening_is_cuda_unavailable() {
    let _lock = stats_lock();
    let err = cuda::ipc_open(&[0_u8; 63], Device::cuda(0), 16).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARGUMENT", "{err}");
    let err = cuda::ipc_open(&[0_u8; cuda::IPC_HANDLE_BYTES], PINNED, 16).unwrap_err();
    assert_eq!(err.code(), "ERR_DEVICE_UNSUPPORTED", "{err}");
    let host = Tensor::zeros(&[4], DataType::F32).unwrap();
    assert_eq!(cuda::ipc_handle(&host).unwrap_err().code(), "ERR_DEVICE_UNSUPPORTED");
    if cuda::is_available() {
        return;
    }
    let err = cuda::ipc_open(&[1_u8; cuda::IPC_HANDLE_BYTES], Device::cuda(0), 16).unwrap_err();
    assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE", "{err}");
}

#[test]
#[ignore = "needs a CUDA GPU; run scripts/gpu-check.sh"]
fn ipc_handles_name_whole_allocations_and_the_driver_refuses_our_own() {
    let _lock = stats_lock();
    if !gpu() {
        return;
    }
    let t = host(DataType::F32, &[64], 0).to_cuda(0).unwrap();
    let handle = cuda::ipc_handle(&t).unwrap();
    assert_ne!(handle, [0_u8; cuda::IPC_HANDLE_BYTES]);
    // A view that doesn't start the allocation has no handle of its own.
    let inner =
        // SAFETY: 16 bytes inside `t`'s live allocation on cuda:0, kept alive by the clone.
        unsafe {
            Tensor::from_borrowed(
                t.data_ptr().add(16),
                16,
                &[4],
                DataType::F32,
                Device::cuda(0),
                true,
                Box::new(t.clone()),
            )
        }
        .unwrap();
    assert_eq!(cuda::ipc_handle(&inner).unwrap_err().code(), "ERR_INVALID_ARGUMENT");
    // CUDA documents that a handle can't be opened in the process that made it: an error
    // (whichever the driver picks), never a panic. Should a driver allow it, the mapping
    // closes once here.
    match cuda::ipc_open(&handle, Device::cuda(0), 256) {
        Err(err) => assert_eq!(err.code(), "ERR_CUDA", "{err}"),
        Ok(mapping) => assert_eq!(mapping.len(), 256),
    }
    // Garbage handles too.
    let err = cuda::ipc_open(&[0x5a; cuda::IPC_HANDLE_BYTES], Device::cuda(0), 16).unwrap_err();
    assert_eq!(err.code(), "ERR_CUDA", "{err}");
}
