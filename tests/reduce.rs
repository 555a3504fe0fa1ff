//! kernels/reduce.cu computes the same row sums as its CPU reference on every device.

use mtosi::device::equivalence::Equivalence;
use mtosi::ops::reduce::reduce_sum_rows;

#[test]
fn reduce_sum_rows_matches_cpu_reference_on_every_device() {
    // (rows, cols, threads per block): single elements, partial warps, more columns than threads.
    let shapes = [
        (1, 1, 32),
        (3, 31, 64),
        (2, 33, 32),
        (5, 1000, 256),
        (1, 4099, 1024),
        (17, 257, 96),
    ];
    Equivalence::new("reduce_sum_rows")
        // fp32 tree sum of ≤ 4099 values in [0, 1) vs an f64 reference: error ≲ (log2 n + n/threads) ulp.
        .tolerance(1e-5)
        .run(
            &shapes,
            |&(rows, cols, threads), rng| (rows, cols, threads, rng.vec_f32(rows * cols, 0.0, 1.0)),
            |device, (rows, cols, threads, x)| reduce_sum_rows(device, x, *rows, *cols, *threads),
        );
}

#[test]
fn reduce_is_identical_with_one_or_several_emu_workers_and_concurrent_launches() {
    use mtosi::device::equivalence::{test_seed, Rng};
    use mtosi::device::{Device, EmuOptions, ThreadOrder};

    let seed =
        test_seed("reduce_is_identical_with_one_or_several_emu_workers_and_concurrent_launches");
    // 256 blocks of 256 threads: large enough for emu to spread blocks over worker threads.
    let (rows, cols) = (256, 1000);
    let x = Rng::new(seed).vec_f32(rows * cols, 0.0, 1.0);
    let run = |workers| {
        let device = Device::emu(EmuOptions {
            order: ThreadOrder::Forward,
            workers,
        });
        reduce_sum_rows(&device, &x, rows, cols, 256).unwrap()
    };
    let single = run(1);
    // Blocks are independent, so the split over workers cannot change a bit.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(|| run(4))).collect();
        for handle in handles {
            assert_eq!(handle.join().unwrap(), single);
        }
    });
}
