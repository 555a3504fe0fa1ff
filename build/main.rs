//! Builds the kernels of `kernels/*.cu` twice:
//! - with NVRTC into CUBINs for sm_80/86/89/90 plus compute_80 PTX, embedded in the crate (the
//!   `cuda` device). NVRTC comes from `MTOSI_NVRTC`, the usual CUDA locations, or `./.venv`'s
//!   pip package `nvidia-cuda-nvrtc-cu12`; without it the crate still builds, with one warning.
//! - with the system C++ compiler against `kernels/emu/cuemu.h` (the `emu` device).
//!
//! `tests/kernels/*.cu` (deliberately broken kernels) are built for `emu` only, into a library
//! that only the tests link.
//!
//! Every `extern "C" __global__` signature is parsed so that both devices launch a kernel by name
//! from one generic argument list, checked against its parameter types.

//!
//! One module per job: `signature` (the C signature parser), `shared_memory` (emu's static
//! `__shared__` poisoning), `emu` (the C++ build), `nvrtc` (NVRTC bindings and compilation),
//! `codegen` (the generated Rust table); this file drives them.

mod codegen;
mod emu;
mod nvrtc;
mod shared_memory;
mod signature;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

use signature::Signature;

/// Architectures that get a CUBIN (no JIT, loads on any 12.x+ driver): A100, A10/3090, L4/4090, H100.
pub(crate) const CUBIN_ARCHS: [u32; 4] = [80, 86, 89, 90];
/// PTX for every other GPU (JIT-compiled by a driver at least as new as this NVRTC).
pub(crate) const PTX_ARCH: u32 = 80;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in ["kernels", "tests/kernels", "build"] {
        println!("cargo:rerun-if-changed={path}");
    }
    for var in [
        "MTOSI_NVRTC",
        "MTOSI_REQUIRE_NVRTC",
        "CUDA_PATH",
        "CUDA_HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let kernels = read_sources(&manifest_dir, "kernels");
    let test_kernels = read_sources(&manifest_dir, "tests/kernels");
    let headers = read_headers(&manifest_dir);
    check_unique_names(kernels.iter().chain(&test_kernels));

    let nvrtc_report = match nvrtc::Nvrtc::find(&manifest_dir) {
        Ok(nvrtc) => {
            println!("cargo:rerun-if-changed={}", nvrtc.path.display());
            let images = nvrtc::compile_all(&nvrtc, &kernels, &headers, &out_dir);
            // The planted bugs must be valid CUDA too (bugs, not syntax errors); not embedded.
            for source in &test_kernels {
                let target = format!("compute_{PTX_ARCH}");
                if let Err(log) =
                    nvrtc.compile(&source.rel_path, &source.text, &headers, &target, false)
                {
                    fail(&format!(
                        "NVRTC failed to compile {} for {target}:\n{log}",
                        source.rel_path
                    ));
                }
            }
            let names: Vec<&str> = kernels
                .iter()
                .flat_map(|s| s.kernels.iter().map(|k| k.name.as_str()))
                .collect();
            let archs: Vec<String> = CUBIN_ARCHS.iter().map(|a| format!("sm_{a}")).collect();
            println!(
                "cargo:warning=NVRTC {}.{} ({}) compiled {} kernel files ({} kernels: {}) to CUBIN for {} and PTX for compute_{PTX_ARCH}",
                nvrtc.version.0,
                nvrtc.version.1,
                nvrtc.path.display(),
                kernels.len(),
                names.len(),
                names.join(", "),
                archs.join(", ")
            );
            write_generated(
                &out_dir,
                "kernels.rs",
                &codegen::rust_table(&kernels, Some(&images), "crate", None),
            );
            format!(
                "NvrtcReport::Compiled {{ version: \"{}.{}\", library: {:?} }}",
                nvrtc.version.0,
                nvrtc.version.1,
                nvrtc.path.display().to_string()
            )
        }
        Err(reason) => {
            if env::var_os("MTOSI_REQUIRE_NVRTC").is_some_and(|v| v != "0") {
                eprintln!("error: MTOSI_REQUIRE_NVRTC is set but NVRTC was not found: {reason}");
                std::process::exit(1);
            }
            println!(
                "cargo:warning=CUDA kernels not compiled (the cuda device will be unavailable; emu and cpu work): {reason}"
            );
            write_generated(
                &out_dir,
                "kernels.rs",
                &codegen::rust_table(&kernels, None, "crate", None),
            );
            format!("NvrtcReport::NotFound({reason:?})")
        }
    };
    // After NVRTC, so that a kernel that does not compile fails with NVRTC's log.
    emu::build_emu(
        &manifest_dir,
        &out_dir,
        &kernels,
        &headers,
        "mtosi_emu_kernels",
        true,
    );
    emu::build_emu(
        &manifest_dir,
        &out_dir,
        &test_kernels,
        &headers,
        "mtosi_emu_test_kernels",
        false,
    );

    let mut report = String::new();
    writeln!(
        report,
        "/// How build.rs compiled the kernels for the `cuda` device."
    )
    .unwrap();
    writeln!(report, "pub static NVRTC: NvrtcReport = {nvrtc_report};").unwrap();
    write_generated(&out_dir, "nvrtc_report.rs", &report);
    write_generated(
        &out_dir,
        "test_kernels.rs",
        &codegen::rust_table(&test_kernels, None, "mtosi", Some("mtosi_emu_test_kernels")),
    );
}

/// One `.cu` file and the kernels it defines.
pub(crate) struct Source {
    /// Path relative to the crate root, as it appears in error messages.
    pub rel_path: String,
    /// File stem; names the emu namespace and the generated statics.
    pub stem: String,
    pub text: String,
    pub kernels: Vec<Signature>,
}

pub(crate) fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

fn read_sources(manifest_dir: &Path, folder: &str) -> Vec<Source> {
    let Ok(entries) = fs::read_dir(manifest_dir.join(folder)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let rel_path = format!("{folder}/{}", path.file_name().unwrap().to_string_lossy());
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| fail(&format!("cannot read {rel_path}: {e}")));
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if !stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                fail(&format!(
                    "{rel_path}: kernel file names must be letters, digits and _"
                ));
            }
            let kernels = signature::parse_kernels(&rel_path, &text).unwrap_or_else(|e| fail(&e));
            if kernels.is_empty() {
                fail(&format!(
                    "{rel_path} defines no extern \"C\" __global__ kernel"
                ));
            }
            Source {
                rel_path,
                stem,
                text,
                kernels,
            }
        })
        .collect()
}

/// `kernels/*.cuh`, handed to NVRTC by name (it cannot read files).
fn read_headers(manifest_dir: &Path) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = fs::read_dir(manifest_dir.join("kernels"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cuh"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let text = fs::read_to_string(&p)
                .unwrap_or_else(|e| fail(&format!("cannot read kernels/{name}: {e}")));
            (name, text)
        })
        .collect();
    headers.sort();
    headers
}

fn check_unique_names<'a>(sources: impl Iterator<Item = &'a Source>) {
    // extern "C" names are global in the emu link: two kernels of one name would clash.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for source in sources {
        for kernel in &source.kernels {
            if let Some(other) = seen.insert(kernel.name.clone(), source.rel_path.clone()) {
                fail(&format!(
                    "kernel `{}` is defined in both {other} and {}",
                    kernel.name, source.rel_path
                ));
            }
        }
    }
}

/// Writes a generated file only when its content changed, so that unchanged output does not
/// trigger recompilation.
pub(crate) fn write_generated(out_dir: &Path, name: &str, content: &str) {
    let path = out_dir.join(name);
    if fs::read_to_string(&path).is_ok_and(|old| old == content) {
        return;
    }
    fs::write(&path, content)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}
