//! Row sums (kernels/reduce.cu) on cpu, emu and cuda when present, same shapes, one run.
//! `cargo bench --bench reduce`; launch only: inputs stay on the device between iterations.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtosi::device::equivalence::Rng;
use mtosi::device::{EmuOptions, KernelDevice};
use mtosi::ops::reduce::{reduce_sum_rows_cpu, reduce_sum_rows_launch, DEFAULT_THREADS_PER_BLOCK};

fn bench_reduce(c: &mut Criterion) {
    let mut group = c.benchmark_group("reduce_sum_rows");
    let mut devices = vec![("emu", KernelDevice::emu(EmuOptions::default()))];
    match KernelDevice::cuda(0) {
        Ok(cuda) => devices.push(("cuda", cuda)),
        Err(why) => eprintln!("reduce bench: cuda skipped: {why}"),
    }
    let mut rng = Rng::new(1);
    for (rows, cols) in [(16usize, 4096usize), (256, 1024)] {
        let x = rng.vec_f32(rows * cols, 0.0, 1.0);
        let shape = format!("{rows}x{cols}");
        group.throughput(Throughput::Elements((rows * cols) as u64));
        group.bench_with_input(BenchmarkId::new("cpu", &shape), &x, |b, x| {
            b.iter(|| reduce_sum_rows_cpu(x, rows, cols))
        });
        for (name, device) in &devices {
            let xd = device.upload(&x).unwrap();
            let mut sums = device.alloc::<f32>(rows).unwrap();
            group.bench_with_input(BenchmarkId::new(*name, &shape), &shape, |b, _| {
                b.iter(|| {
                    reduce_sum_rows_launch(
                        device,
                        &xd,
                        rows,
                        cols,
                        DEFAULT_THREADS_PER_BLOCK,
                        &mut sums,
                    )
                    .unwrap();
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
    targets = bench_reduce
}
criterion_main!(benches);
