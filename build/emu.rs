//! The `emu` build: the kernel sources compiled by the system C++ compiler against
//! kernels/emu/cuemu.h, each in its own namespace, with an entry point per kernel.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::shared_memory::poison_static_shared;
use crate::{fail, write_generated, Source};

/// g++ builds one wrapper per kernel file: the file inside its own namespace (so that helpers of
/// the same name in two files cannot clash; `extern "C"` kernels stay global) plus an entry per
/// kernel that unpacks CUDA-style `void** args`. The file it includes is the emu copy of the
/// source (`shared_memory`: static `__shared__` poisoned per block), beside emu copies of the
/// headers, all with `#line` directives naming the original files.
pub fn build_emu(
    manifest_dir: &Path,
    out_dir: &Path,
    sources: &[Source],
    headers: &[(String, String)],
    library: &str,
    with_runtime: bool,
) {
    let wrapper_dir = out_dir.join("emu");
    fs::create_dir_all(&wrapper_dir)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", wrapper_dir.display())));
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        // The dev profile's -O0 makes emulated kernels several times slower.
        .opt_level(2)
        .include(manifest_dir)
        .include(manifest_dir.join("kernels/emu"))
        // kernels/*.cuh for files outside kernels/ (the test kernels).
        .include(manifest_dir.join("kernels"))
        // Same arithmetic on every host: no fused multiply-add contraction.
        .flag("-ffp-contract=off")
        .flag(format!("-fmacro-prefix-map={}/=", manifest_dir.display()))
        .flag_if_supported("-Wno-unused-parameter")
        .cargo_metadata(with_runtime);
    if with_runtime {
        build.file(manifest_dir.join("kernels/emu/cuemu.cpp"));
    }
    let copy_dir = format!("emu/{library}");
    // The emu copy of `rel_path` (the original file) at `copy_path` under OUT_DIR/emu/<library>.
    let emu_copy = |copy_path: &str, rel_path: &str, text: &str| -> std::path::PathBuf {
        let poisoned = poison_static_shared(rel_path, text).unwrap_or_else(|e| fail(&e));
        let name = format!("{copy_dir}/{copy_path}");
        let path = out_dir.join(&name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", parent.display())));
        }
        write_generated(
            out_dir,
            &name,
            &format!("#line 1 \"{rel_path}\"\n{poisoned}"),
        );
        path
    };
    let mut folders: Vec<&str> = sources
        .iter()
        .map(|s| s.rel_path.rsplit_once('/').map_or("", |(folder, _)| folder))
        .collect();
    folders.sort();
    folders.dedup();
    // `#include "common.cuh"` looks beside the including file first: put the headers' emu
    // copies there.
    for folder in folders {
        for (name, text) in headers {
            let copy_path = if folder.is_empty() {
                name.clone()
            } else {
                format!("{folder}/{name}")
            };
            emu_copy(&copy_path, &format!("kernels/{name}"), text);
        }
    }
    for source in sources {
        let copy = emu_copy(&source.rel_path, &source.rel_path, &source.text);
        let mut wrapper = String::new();
        writeln!(wrapper, "#include \"cuemu.h\"").unwrap();
        writeln!(wrapper, "namespace mtosi_emu_{} {{", source.stem).unwrap();
        writeln!(wrapper, "#include \"{}\"", copy.display()).unwrap();
        writeln!(wrapper, "}}").unwrap();
        for kernel in &source.kernels {
            writeln!(
                wrapper,
                "extern \"C\" void mtosi_emu_entry_{name}(void** args) {{ mtosi_emu::invoke(&mtosi_emu_{stem}::{name}, args); }}",
                name = kernel.name,
                stem = source.stem
            )
            .unwrap();
        }
        let path = wrapper_dir.join(format!("{}.cpp", source.stem));
        write_generated(out_dir, &format!("emu/{}.cpp", source.stem), &wrapper);
        build.file(path);
    }
    if sources.is_empty() && !with_runtime {
        return;
    }
    build.compile(library);
}
