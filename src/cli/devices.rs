//! `mtosi devices`: which device `--device` resolves to and why, and the compiled kernels.

use mtosi::device::{DeviceRequest, NvrtcReport, KERNELS, NVRTC};
use mtosi::ops::conv2d::bf16_supported;

pub fn run(request: DeviceRequest) -> anyhow::Result<()> {
    let selection = request.open()?;
    println!("{}", selection.reason);
    println!(
        "cpu convolutions: --precision bf16 {}",
        if bf16_supported() {
            "available (AVX512-BF16)"
        } else {
            "unavailable: no AVX512-BF16 on this CPU (fp32 only)"
        }
    );
    match NVRTC {
        NvrtcReport::Compiled { version, library } => {
            println!("kernels compiled by NVRTC {version} ({library})")
        }
        NvrtcReport::NotFound(reason) => println!("kernels not compiled for cuda: {reason}"),
    }
    for kernel in KERNELS {
        let mut targets: Vec<String> = kernel
            .images
            .cubins
            .iter()
            .map(|(arch, _)| format!("sm_{arch}"))
            .collect();
        if let Some((arch, _)) = kernel.images.ptx {
            targets.push(format!("compute_{arch} PTX"));
        }
        targets.push("emu".to_string());
        println!(
            "  {:<24} {}:{}  [{}]",
            kernel.name,
            kernel.source,
            kernel.line,
            targets.join(", ")
        );
    }
    Ok(())
}
