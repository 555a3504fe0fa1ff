//! Every kernels/*.cu is in the compiled kernel table, for emu always and, when the build script
//! found NVRTC, as CUBINs for every targeted architecture plus PTX.

use mtosi::device::{NvrtcReport, KERNELS, NVRTC};

#[test]
fn every_kernel_file_is_compiled_for_emu_and_for_cuda_when_nvrtc_was_found() {
    let kernel_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut files: Vec<String> = std::fs::read_dir(&kernel_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".cu"))
        .map(|name| format!("kernels/{name}"))
        .collect();
    files.sort();
    for file in &files {
        assert!(
            KERNELS.iter().any(|k| k.source == file),
            "{file} is missing from the kernel table"
        );
    }
    match NVRTC {
        NvrtcReport::Compiled { version, .. } => {
            for kernel in KERNELS {
                let archs: Vec<u32> = kernel.images.cubins.iter().map(|(arch, _)| *arch).collect();
                assert_eq!(archs, [80, 86, 89, 90], "{} CUBINs", kernel.name);
                assert!(
                    kernel
                        .images
                        .cubins
                        .iter()
                        .all(|(_, b)| b.starts_with(b"\x7fELF")),
                    "{}",
                    kernel.name
                );
                let (_, ptx) = kernel
                    .images
                    .ptx
                    .unwrap_or_else(|| panic!("{} has no PTX", kernel.name));
                assert_eq!(
                    ptx.last(),
                    Some(&0),
                    "PTX must be NUL-terminated for cuModuleLoadData"
                );
                let ptx = String::from_utf8_lossy(ptx);
                assert!(
                    ptx.contains(&format!(".entry {}(", kernel.name)),
                    "{} PTX lacks its entry",
                    kernel.name
                );
                println!(
                    "{:<24} {}: sm_80 sm_86 sm_89 sm_90 compute_80 (NVRTC {version})",
                    kernel.name, kernel.source
                );
            }
        }
        NvrtcReport::NotFound(reason) => {
            // CI sets MTOSI_REQUIRE_NVRTC: there, not compiling for cuda is a failure.
            assert!(
                std::env::var_os("MTOSI_REQUIRE_NVRTC").is_none(),
                "NVRTC required but not found: {reason}"
            );
            println!("cuda images not built: {reason}");
        }
    }
}
