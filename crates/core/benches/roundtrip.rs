//! Export + import round trip (`to_dlpack` → `ExportedTensor::into_tensor` → drop) for a 1 KiB
//! and a 1 GiB tensor, legacy and versioned, and the in-process hand-off that builds no struct
//! (`prepare_export` → `PreparedExport::into_tensor` → drop). Zero-copy means both sizes should
//! cost the same.
//!
//! Run: `cargo bench -p tensorbridge-core --bench roundtrip`. The 1 GiB tensor is allocated
//! once, outside the measured loop.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tensorbridge_core::cuda::ConsumerStream;
use tensorbridge_core::{DataType, ExportOptions, Tensor};

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("roundtrip");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    let tensors = [
        ("1KiB", Tensor::zeros(&[256], DataType::F32).expect("1 KiB tensor")),
        ("1GiB", Tensor::zeros(&[256, 1024, 1024], DataType::F32).expect("1 GiB tensor")),
    ];
    for (size, tensor) in &tensors {
        for versioned in [false, true] {
            let options = ExportOptions { versioned, ..ExportOptions::default() };
            let abi = if versioned { "versioned" } else { "legacy" };
            group.bench_with_input(BenchmarkId::new(abi, size), tensor, |b, tensor| {
                b.iter(|| {
                    let exported = tensor.to_dlpack(&options).expect("export");
                    let back = exported.into_tensor().expect("import");
                    black_box(back.data_ptr());
                })
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{abi}-in-process"), size),
                tensor,
                |b, tensor| {
                    b.iter(|| {
                        let prepared = tensor
                            .prepare_export(&options, ConsumerStream::Default)
                            .expect("prepare");
                        black_box(prepared.into_tensor().data_ptr());
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
