//! `mtosi devices`: which device `--device` resolves to and why, and the compiled kernels.

use mtosi::device::{DeviceRequest, NvrtcReport, KERNELS, NVRTC};

pub fn run(request: DeviceRequest) -> anyhow::Result<()> {
    let selection = request.open()?;
    println!("{}", selection.reason);
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
