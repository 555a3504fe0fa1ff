//! The emu device catches the kernel bugs that would otherwise only show on a GPU, or not at all:
//! an out-of-bounds write, a barrier that not every thread reaches, a missing barrier.
//! The kernels are in tests/kernels/planted_bugs.cu, built for emu only.

use mtosi::device::{DeviceError, EmuOptions, Kernel, KernelDevice, LaunchConfig, ThreadOrder};

include!(concat!(env!("OUT_DIR"), "/test_kernels.rs"));

fn kernel(name: &str) -> &'static Kernel {
    TEST_KERNELS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("test kernel {name} not built"))
}

fn emu(order: ThreadOrder) -> KernelDevice {
    KernelDevice::emu(EmuOptions { order, workers: 1 })
}

#[test]
fn out_of_bounds_write_is_reported_with_the_parameter() {
    let device = emu(ThreadOrder::Forward);
    let n = 100;
    let mut out = device.alloc::<f32>(n).unwrap();
    let result = device.launch_kernel(
        kernel("bug_out_of_bounds_write"),
        LaunchConfig::for_elements(n + 1, 64),
        &[(n as i32).into(), (&mut out).into()],
    );
    match result {
        Err(DeviceError::OutOfBounds { message, .. }) => {
            assert!(
                message.contains("`out`") && message.contains("after its end"),
                "{message}"
            )
        }
        other => panic!("expected an out-of-bounds report, got {other:?}"),
    }
}

#[test]
fn barrier_inside_a_branch_is_a_launch_error_not_a_hang() {
    let device = emu(ThreadOrder::Forward);
    let mut out = device.alloc::<f32>(64).unwrap();
    let result = device.launch_kernel(
        kernel("bug_barrier_in_branch"),
        LaunchConfig::blocks(1, 64),
        &[(&mut out).into()],
    );
    match result {
        Err(DeviceError::Launch { message, .. }) => assert!(
            message.contains("tests/kernels/planted_bugs.cu:16")
                && message.contains("32 waiting, 32 exited"),
            "{message}"
        ),
        other => panic!("expected a barrier report, got {other:?}"),
    }
}

#[test]
fn barrier_misuse_is_reported_when_blocks_run_on_several_workers() {
    let device = KernelDevice::emu(EmuOptions {
        order: ThreadOrder::Reverse,
        workers: 4,
    });
    let (blocks, threads) = (128, 256);
    let mut out = device.alloc::<f32>(threads as usize).unwrap();
    let result = device.launch_kernel(
        kernel("bug_barrier_in_branch"),
        LaunchConfig::blocks(blocks, threads),
        &[(&mut out).into()],
    );
    assert!(
        matches!(result, Err(DeviceError::Launch { .. })),
        "{result:?}"
    );
}

#[test]
fn shuffle_that_half_a_warp_skips_is_reported_as_deadlock() {
    let device = emu(ThreadOrder::Forward);
    let mut out = device.alloc::<f32>(32).unwrap();
    let result = device.launch_kernel(
        kernel("bug_shuffle_in_branch"),
        LaunchConfig::blocks(1, 32),
        &[(&mut out).into()],
    );
    match result {
        Err(DeviceError::Launch { message, .. }) => {
            assert!(
                message.contains("deadlock") && message.contains("__shfl_down_sync"),
                "{message}"
            )
        }
        other => panic!("expected a deadlock report, got {other:?}"),
    }
}

/// out[t] of the neighbour-read kernels, run in `order` on one block of `threads`.
fn neighbour_reads(kernel_name: &str, order: ThreadOrder, threads: u32) -> Vec<f32> {
    let device = emu(order);
    let mut out = device.alloc::<f32>(threads as usize).unwrap();
    device
        .launch_kernel(
            kernel(kernel_name),
            LaunchConfig::blocks(1, threads),
            &[(&mut out).into()],
        )
        .unwrap();
    device.download(&out).unwrap()
}

fn wrong_neighbour_reads(out: &[f32]) -> usize {
    out[..out.len() - 1]
        .iter()
        .enumerate()
        .filter(|&(t, &v)| v != (t + 1) as f32)
        .count()
}

#[test]
fn missing_barrier_gives_a_wrong_result_in_one_thread_order() {
    let threads = 64;
    let forward = wrong_neighbour_reads(&neighbour_reads(
        "bug_missing_barrier",
        ThreadOrder::Forward,
        threads,
    ));
    let reverse = wrong_neighbour_reads(&neighbour_reads(
        "bug_missing_barrier",
        ThreadOrder::Reverse,
        threads,
    ));
    // Forward runs thread t to completion before t + 1 writes its value: every read is stale.
    assert_eq!(
        forward,
        threads as usize - 1,
        "forward order should expose the race"
    );
    assert_eq!(
        reverse, 0,
        "reverse order runs each writer before its reader"
    );
}

#[test]
fn kernel_with_the_barrier_is_right_in_both_orders() {
    for order in [ThreadOrder::Forward, ThreadOrder::Reverse] {
        assert_eq!(
            wrong_neighbour_reads(&neighbour_reads("fixed_missing_barrier", order, 64)),
            0,
            "{order:?}"
        );
    }
}

#[test]
fn dynamic_shared_memory_warp_collectives_and_atomics_work_across_blocks() {
    // Launches from 16 384 threads get several workers; 4x that keeps every worker busy long
    // enough to take blocks even on a loaded machine (sums stay exact in f32: below 2^24).
    let (blocks, threads) = (512u32, 128u32);
    for order in [ThreadOrder::Forward, ThreadOrder::Reverse] {
        // Several workers, so that atomics from blocks on different OS threads meet.
        let device = KernelDevice::emu(EmuOptions { order, workers: 4 });
        let mut sum = device.upload(&[0.0f32]).unwrap();
        let mut counts = device.upload(&[0u32, 0]).unwrap();
        let mut homes = device.alloc::<u64>(blocks as usize).unwrap();
        let config = LaunchConfig::blocks(blocks, threads).with_shared_mem_bytes(threads * 4);
        device
            .launch_kernel(
                kernel("collectives_control"),
                config,
                &[(&mut sum).into(), (&mut counts).into(), (&mut homes).into()],
            )
            .unwrap();
        let per_block: u32 = (0..threads).sum();
        assert_eq!(
            device.download(&sum).unwrap()[0],
            (per_block * blocks) as f32,
            "{order:?}"
        );
        // 16 odd lanes per warp, 4 warps per block; 10 threads below 10 per block.
        assert_eq!(
            device.download(&counts).unwrap(),
            vec![16 * 4 * blocks, 10 * blocks],
            "{order:?}"
        );
        // Each OS thread has its own copy of a static __shared__ variable: several addresses
        // mean the blocks really ran on several workers.
        let mut addresses = device.download(&homes).unwrap();
        addresses.sort();
        addresses.dedup();
        assert!(
            addresses.len() >= 2,
            "{order:?}: every block ran on one OS thread ({addresses:x?})"
        );
    }
}

#[test]
fn static_shared_memory_starts_as_nan_in_every_block() {
    // One worker runs the blocks one after the other on one OS thread, where a thread_local
    // `__shared__` would keep the previous block's 1.0s.
    for (name, order) in [
        ("bug_shared_read_before_write", ThreadOrder::Forward),
        ("bug_shared_read_before_write", ThreadOrder::Reverse),
        ("bug_file_shared_read_before_write", ThreadOrder::Forward),
    ] {
        let device = emu(order);
        let (blocks, threads) = (3u32, 64u32);
        let mut out = device.alloc::<f32>((blocks * threads) as usize).unwrap();
        device
            .launch_kernel(
                kernel(name),
                LaunchConfig::blocks(blocks, threads),
                &[(&mut out).into()],
            )
            .unwrap();
        let out = device.download(&out).unwrap();
        let stale = out.iter().filter(|v| !v.is_nan()).count();
        assert_eq!(
            stale, 0,
            "{order:?}: {stale} reads saw an earlier block's values"
        );
    }
}

#[test]
fn missing_barrier_is_exposed_in_every_block_not_only_the_first() {
    let device = emu(ThreadOrder::Forward);
    let (blocks, threads) = (2u32, 64u32);
    let mut out = device.alloc::<f32>((blocks * threads) as usize).unwrap();
    device
        .launch_kernel(
            kernel("bug_missing_barrier"),
            LaunchConfig::blocks(blocks, threads),
            &[(&mut out).into()],
        )
        .unwrap();
    // bug_missing_barrier writes out[threadIdx.x]: the last block's values remain. Its reads
    // must be as wrong as the first block's, not the first block's leftovers (which are right).
    let out = device.download(&out).unwrap();
    assert_eq!(
        wrong_neighbour_reads(&out[..threads as usize]),
        threads as usize - 1
    );
}

/// The out-of-bounds error of launching `name(n, in, out)` with `n` elements in `order`.
fn read_error(name: &str, order: ThreadOrder) -> Result<(), DeviceError> {
    let device = emu(order);
    let n = 100;
    let input = device.upload(&vec![1.0f32; n]).unwrap();
    let mut out = device.alloc::<f32>(n).unwrap();
    device.launch_kernel(
        kernel(name),
        LaunchConfig::for_elements(n, 64),
        &[(n as i32).into(), (&input).into(), (&mut out).into()],
    )
}

#[test]
fn out_of_bounds_reads_are_reported_with_the_parameter() {
    // Forward order puts each buffer's end against an inaccessible page, reverse its start.
    for (name, order, side, thread) in [
        (
            "bug_out_of_bounds_read",
            ThreadOrder::Forward,
            "read after its end (at byte 0 past the end)",
            "thread (35,0,0) of block (1,0,0)",
        ),
        (
            "bug_read_before_start",
            ThreadOrder::Reverse,
            "read before its start (4 bytes before)",
            "thread (0,0,0) of block (0,0,0)",
        ),
    ] {
        match read_error(name, order) {
            Err(DeviceError::OutOfBounds { message, .. }) => assert!(
                message.contains("`in`") && message.contains(side) && message.contains(thread),
                "{name}: {message}"
            ),
            other => panic!("{name}: expected an out-of-bounds report, got {other:?}"),
        }
    }
    // The device stays usable after a fault: a correct launch on the same kind of device works.
    let device = emu(ThreadOrder::Forward);
    let mut out = device.alloc::<f32>(64).unwrap();
    device
        .launch_kernel(
            kernel("fixed_missing_barrier"),
            LaunchConfig::blocks(1, 64),
            &[(&mut out).into()],
        )
        .unwrap();
}

#[test]
fn unsigned_char_parameters_can_be_launched() {
    let device = emu(ThreadOrder::Forward);
    let input = device.upload(&[1u8, 2, 250]).unwrap();
    let mut out = device.alloc::<u8>(3).unwrap();
    device
        .launch_kernel(
            kernel("bytes_add"),
            LaunchConfig::blocks(1, 32),
            &[7u8.into(), 3i32.into(), (&input).into(), (&mut out).into()],
        )
        .unwrap();
    assert_eq!(device.download(&out).unwrap(), [8, 9, 1]);
}

#[test]
fn wrong_argument_types_are_refused_before_launch() {
    let device = emu(ThreadOrder::Forward);
    let out = device.alloc::<f32>(4).unwrap();
    let result = device.launch_kernel(
        kernel("bug_out_of_bounds_write"),
        LaunchConfig::blocks(1, 4),
        &[4i32.into(), (&out).into()],
    );
    assert!(
        matches!(result, Err(DeviceError::Arguments { .. })),
        "{result:?}"
    );
    let mut ints = device.alloc::<i32>(4).unwrap();
    let result = device.launch_kernel(
        kernel("bug_out_of_bounds_write"),
        LaunchConfig::blocks(1, 4),
        &[4i32.into(), (&mut ints).into()],
    );
    assert!(
        matches!(result, Err(DeviceError::Arguments { .. })),
        "{result:?}"
    );
}

fn grid_barrier_neighbour(device: &KernelDevice, blocks: u32) -> Result<Vec<f32>, DeviceError> {
    let mut slots = device.alloc::<f32>(3 * blocks as usize)?;
    let mut out = device.alloc::<f32>(3 * blocks as usize)?;
    let mut barrier = device.upload(&[0u32; 2])?;
    device.launch_kernel_cooperative(
        kernel("fixed_grid_barrier_neighbour"),
        LaunchConfig::blocks(blocks, 64),
        &[
            (&mut slots).into(),
            (&mut out).into(),
            (&mut barrier).into(),
        ],
    )?;
    assert_eq!(
        device.download(&barrier)?[0],
        0,
        "the arrival count is reset"
    );
    device.download(&out)
}

#[test]
fn grid_barrier_holds_every_block_of_a_cooperative_launch() {
    let blocks = 7;
    let want: Vec<f32> = (0..3)
        .flat_map(|round| (0..blocks).map(move |b| ((b + 1) % blocks + round) as f32))
        .collect();
    for order in [ThreadOrder::Forward, ThreadOrder::Reverse] {
        assert_eq!(
            grid_barrier_neighbour(&emu(order), blocks).unwrap(),
            want,
            "{order:?}"
        );
    }
}

#[test]
fn grid_barrier_in_an_ordinary_launch_is_a_launch_error_not_a_hang() {
    let device = emu(ThreadOrder::Forward);
    let mut slots = device.alloc::<f32>(12).unwrap();
    let mut out = device.alloc::<f32>(12).unwrap();
    let mut barrier = device.upload(&[0u32; 2]).unwrap();
    let result = device.launch_kernel(
        kernel("fixed_grid_barrier_neighbour"),
        LaunchConfig::blocks(4, 64),
        &[
            (&mut slots).into(),
            (&mut out).into(),
            (&mut barrier).into(),
        ],
    );
    match result {
        Err(DeviceError::Launch { message, .. }) => {
            assert!(message.contains("grid barrier at"), "{message}");
            assert!(message.contains("not cooperative"), "{message}");
        }
        other => panic!("expected a launch error, got {other:?}"),
    }
}

#[test]
fn grid_barrier_that_a_block_skips_is_a_launch_error_not_a_hang() {
    for order in [ThreadOrder::Forward, ThreadOrder::Reverse] {
        let device = emu(order);
        let mut barrier = device.upload(&[0u32; 2]).unwrap();
        let result = device.launch_kernel_cooperative(
            kernel("bug_grid_barrier_skipped_by_a_block"),
            LaunchConfig::blocks(5, 32),
            &[(&mut barrier).into()],
        );
        match result {
            Err(DeviceError::Launch { message, .. }) => {
                assert!(
                    message.contains("without reaching it"),
                    "{order:?}: {message}"
                );
            }
            other => panic!("{order:?}: expected a launch error, got {other:?}"),
        }
    }
}

#[test]
fn cooperative_launch_beyond_the_resident_blocks_is_refused() {
    let device = emu(ThreadOrder::Forward);
    let bound = device
        .max_cooperative_blocks(kernel("fixed_grid_barrier_neighbour"), 64, 0)
        .unwrap();
    match grid_barrier_neighbour(&device, bound + 1) {
        Err(DeviceError::Arguments { message, .. }) => {
            assert!(
                message.contains(&format!("exceeds the {bound} blocks")),
                "{message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
