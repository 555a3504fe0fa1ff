//! axpy (out = a·x + y) on cpu, emu and cuda when present, same sizes, one run.
//! `cargo bench --bench axpy`; launch only: inputs stay on the device between iterations.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtosi::device::equivalence::Rng;
use mtosi::device::{EmuOptions, KernelDevice};
use mtosi::ops::axpy::{axpy_cpu, axpy_launch};

fn bench_axpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("axpy");
    let mut devices = vec![("emu", KernelDevice::emu(EmuOptions::default()))];
    match KernelDevice::cuda(0) {
        Ok(cuda) => devices.push(("cuda", cuda)),
        Err(why) => eprintln!("axpy bench: cuda skipped: {why}"),
    }
    let mut rng = Rng::new(1);
    for n in [1usize << 12, 1 << 16] {
        let (a, x, y) = (0.5f32, rng.vec_f32(n, -1.0, 1.0), rng.vec_f32(n, -1.0, 1.0));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("cpu", n), &n, |b, _| {
            b.iter(|| axpy_cpu(a, &x, &y))
        });
        for (name, device) in &devices {
            let (xd, yd) = (device.upload(&x).unwrap(), device.upload(&y).unwrap());
            let mut out = device.alloc::<f32>(n).unwrap();
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                b.iter(|| {
                    axpy_launch(device, a, &xd, &yd, &mut out).unwrap();
                    device.synchronize().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_axpy
}
criterion_main!(benches);
