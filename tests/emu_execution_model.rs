//! The emu device follows CUDA's execution model: indices in 3-D grids and blocks, warp shuffles
//! and votes as the CUDA programming guide defines them, atomics across blocks, and it reports
//! the misuses that a GPU leaves undefined. Kernels: tests/kernels/execution_model.cu.

use mtosi::device::{DeviceError, EmuOptions, Kernel, KernelDevice, LaunchConfig, ThreadOrder};

include!(concat!(env!("OUT_DIR"), "/test_kernels.rs"));

fn kernel(name: &str) -> &'static Kernel {
    TEST_KERNELS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("test kernel {name} not built"))
}

fn orders() -> [KernelDevice; 2] {
    [ThreadOrder::Forward, ThreadOrder::Reverse]
        .map(|order| KernelDevice::emu(EmuOptions { order, workers: 2 }))
}

#[test]
fn every_thread_of_a_3d_grid_of_3d_blocks_sees_its_own_indices() {
    let (grid, block) = ([3u32, 2, 2], [5u32, 3, 2]);
    let threads = (grid.iter().product::<u32>() * block.iter().product::<u32>()) as usize;
    for device in orders() {
        let mut out = device.alloc::<u32>(12 * threads).unwrap();
        let config = LaunchConfig {
            grid,
            block,
            shared_mem_bytes: 0,
        };
        device
            .launch_kernel(kernel("record_indices"), config, &[(&mut out).into()])
            .unwrap();
        let out = device.download(&out).unwrap();
        let mut index = 0;
        for bz in 0..grid[2] {
            for by in 0..grid[1] {
                for bx in 0..grid[0] {
                    for tz in 0..block[2] {
                        for ty in 0..block[1] {
                            for tx in 0..block[0] {
                                let want = [
                                    tx, ty, tz, bx, by, bz, block[0], block[1], block[2], grid[0],
                                    grid[1], grid[2],
                                ];
                                assert_eq!(
                                    out[12 * index..12 * index + 12],
                                    want,
                                    "{}",
                                    device.describe()
                                );
                                index += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn shuffles_follow_cuda_width_and_boundary_rules() {
    for device in orders() {
        let mut out = device.alloc::<i32>(4 * 64).unwrap();
        device
            .launch_kernel(
                kernel("shuffle_patterns"),
                LaunchConfig::blocks(1, 64),
                &[(&mut out).into()],
            )
            .unwrap();
        let out = device.download(&out).unwrap();
        for t in 0..64 {
            let lane = (t % 32) as i32;
            let value = |l: i32| l * 10;
            // Within a segment of `width` lanes; out-of-segment sources return the caller's own value.
            let idx = value((lane & !7) + 3);
            let up = if lane - 2 < (lane & !7) {
                value(lane)
            } else {
                value(lane - 2)
            };
            let down = if lane + 5 >= (lane & !15) + 16 {
                value(lane)
            } else {
                value(lane + 5)
            };
            let xor = value(lane ^ 6);
            assert_eq!(
                out[4 * t..4 * t + 4],
                [idx, up, down, xor],
                "thread {t}, {}",
                device.describe()
            );
        }
    }
}

#[test]
fn a_half_warp_can_shuffle_among_itself_while_the_other_half_diverges() {
    for device in orders() {
        let mut out = device.alloc::<f32>(32).unwrap();
        device
            .launch_kernel(
                kernel("half_warp_shuffle"),
                LaunchConfig::blocks(1, 32),
                &[(&mut out).into()],
            )
            .unwrap();
        let out = device.download(&out).unwrap();
        for (lane, &got) in out.iter().enumerate() {
            let want = if lane < 16 {
                (lane + (lane ^ 1)) as f32
            } else {
                -(lane as f32)
            };
            assert_eq!(got, want, "lane {lane}");
        }
    }
}

#[test]
fn votes_combine_the_predicates_of_the_whole_warp() {
    let device = KernelDevice::emu(EmuOptions::default());
    let mut out = device.alloc::<u32>(6).unwrap();
    device
        .launch_kernel(
            kernel("votes"),
            LaunchConfig::blocks(1, 64),
            &[(&mut out).into()],
        )
        .unwrap();
    let ballot: u32 = (0..32).filter(|l| l % 3 == 0).map(|l| 1u32 << l).sum();
    assert_eq!(device.download(&out).unwrap(), [ballot, 1, 1, ballot, 1, 1]);
}

#[test]
fn integer_atomics_are_exact_across_blocks_on_several_workers() {
    // 64 blocks of 256 threads: enough for emu to run blocks on several OS threads at once.
    let (blocks, threads) = (64u32, 256u32);
    let n = (blocks * threads) as i64;
    for order in [ThreadOrder::Forward, ThreadOrder::Reverse] {
        let device = KernelDevice::emu(EmuOptions { order, workers: 4 });
        let mut out = device.upload(&[0i32, i32::MIN, i32::MAX, 0, 0]).unwrap();
        device
            .launch_kernel(
                kernel("integer_atomics"),
                LaunchConfig::blocks(blocks, threads),
                &[(&mut out).into()],
            )
            .unwrap();
        let out = device.download(&out).unwrap();
        assert_eq!(out[0] as i64, n * (n - 1) / 2, "sum");
        assert_eq!((out[1], out[2]), (n as i32 - 1, 0), "max, min");
        assert!(
            out[3] >= 1 && out[3] <= n as i32,
            "the CAS winner stored its id + 1"
        );
        assert_eq!(out[4], 1, "exactly one CAS wins");
    }
}

fn launch_error(name: &str, config: LaunchConfig, n: Option<i32>) -> String {
    let device = KernelDevice::emu(EmuOptions {
        order: ThreadOrder::Forward,
        workers: 1,
    });
    let mut out = device.alloc::<f32>(1024).unwrap();
    let result = match n {
        Some(n) => device.launch_kernel(kernel(name), config, &[n.into(), (&mut out).into()]),
        None => device.launch_kernel(kernel(name), config, &[(&mut out).into()]),
    };
    match result {
        Err(e @ (DeviceError::Launch { .. } | DeviceError::OutOfBounds { .. })) => e.to_string(),
        other => panic!("{name}: expected a launch error, got {other:?}"),
    }
}

#[test]
fn failed_kernel_assert_names_the_thread_and_line() {
    let message = launch_error("failing_assert", LaunchConfig::blocks(2, 32), None);
    assert!(
        message.contains("execution_model.cu:64")
            && message.contains("thread (5,0,0) of block (1,0,0)"),
        "{message}"
    );
}

#[test]
fn early_return_before_a_barrier_is_reported() {
    // 300 elements in blocks of 256: the second block has 212 threads that return early.
    let message = launch_error(
        "early_return_before_barrier",
        LaunchConfig::for_elements(300, 256),
        Some(300),
    );
    assert!(message.contains("44 waiting, 212 exited"), "{message}");
}

#[test]
fn divergent_barriers_are_reported_with_both_lines() {
    let message = launch_error("divergent_barriers", LaunchConfig::blocks(1, 64), None);
    assert!(
        message.contains("divergent __syncthreads()")
            && message.contains(":81")
            && message.contains(":83"),
        "{message}"
    );
}

#[test]
fn write_before_the_start_of_a_buffer_is_caught() {
    let message = launch_error("write_before_start", LaunchConfig::blocks(1, 32), None);
    assert!(
        message.contains("before its start") && message.contains("`out`"),
        "{message}"
    );
}
