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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::{env, fs};

/// Architectures that get a CUBIN (no JIT, loads on any 12.x+ driver): A100, A10/3090, L4/4090, H100.
const CUBIN_ARCHS: [u32; 4] = [80, 86, 89, 90];
/// PTX for every other GPU (JIT-compiled by a driver at least as new as this NVRTC).
const PTX_ARCH: u32 = 80;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for path in ["kernels", "tests/kernels", "build.rs"] {
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
            let images = compile_all(&nvrtc, &kernels, &headers, &out_dir);
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
                &rust_table(&kernels, Some(&images), "crate", None),
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
                &rust_table(&kernels, None, "crate", None),
            );
            format!("NvrtcReport::NotFound({reason:?})")
        }
    };
    // After NVRTC, so that a kernel that does not compile fails with NVRTC's log.
    build_emu(&manifest_dir, &out_dir, &kernels, "mtosi_emu_kernels", true);
    build_emu(
        &manifest_dir,
        &out_dir,
        &test_kernels,
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
        &rust_table(&test_kernels, None, "mtosi", Some("mtosi_emu_test_kernels")),
    );
}

/// One `.cu` file and the kernels it defines.
struct Source {
    /// Path relative to the crate root, as it appears in error messages.
    rel_path: String,
    /// File stem; names the emu namespace and the generated statics.
    stem: String,
    text: String,
    kernels: Vec<Signature>,
}

struct Signature {
    name: String,
    line: usize,
    params: Vec<Param>,
}

struct Param {
    name: String,
    /// Rust expression of type `mtosi::device::ParamKind`, without the path prefix.
    kind: String,
}

fn fail(message: &str) -> ! {
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
            let kernels = parse_kernels(&rel_path, &text);
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

/// Blanks out comments, keeping newlines so that line numbers stay right.
fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            i += 2;
            while i < bytes.len() && !bytes[i..].starts_with(b"*/") {
                if bytes[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

fn parse_kernels(rel_path: &str, text: &str) -> Vec<Signature> {
    let code = strip_comments(text);
    let mut kernels: Vec<Signature> = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("__global__") {
        let at = from + found;
        from = at + "__global__".len();
        let line = code[..at].matches('\n').count() + 1;
        let here = format!("{rel_path}:{line}");
        let statement_start = code[..at].rfind([';', '}']).map_or(0, |p| p + 1);
        if !code[statement_start..at].contains("extern \"C\"") {
            fail(&format!(
                "{here}: write kernels as `extern \"C\" __global__ void name(...)` so that both devices find them by name"
            ));
        }
        let mut rest = code[from..].trim_start();
        if let Some(after) = rest.strip_prefix("__launch_bounds__") {
            let close = after
                .find(')')
                .unwrap_or_else(|| fail(&format!("{here}: unclosed __launch_bounds__")));
            rest = after[close + 1..].trim_start();
        }
        let Some(rest) = rest.strip_prefix("void") else {
            fail(&format!("{here}: a kernel must return void"));
        };
        let open = rest
            .find('(')
            .unwrap_or_else(|| fail(&format!("{here}: no parameter list")));
        let name = rest[..open].trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            fail(&format!(
                "{here}: cannot read the kernel name `{name}` (templates are not supported)"
            ));
        }
        let close = rest[open..]
            .find(')')
            .unwrap_or_else(|| fail(&format!("{here}: unclosed parameter list")));
        let param_text = &rest[open + 1..open + close];
        let params = if param_text.trim().is_empty() || param_text.trim() == "void" {
            Vec::new()
        } else {
            param_text
                .split(',')
                .map(|p| parse_param(&here, &name, p))
                .collect()
        };
        if kernels.iter().any(|k| k.name == name) {
            continue;
        }
        kernels.push(Signature { name, line, params });
    }
    kernels
}

fn parse_param(here: &str, kernel: &str, text: &str) -> Param {
    let spaced = text.replace('*', " * ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let Some((&name, type_tokens)) = tokens.split_last() else {
        fail(&format!("{here}: kernel `{kernel}` has an empty parameter"));
    };
    let stars = type_tokens.iter().filter(|t| **t == "*").count();
    let first_star = type_tokens
        .iter()
        .position(|t| *t == "*")
        .unwrap_or(type_tokens.len());
    let const_element = type_tokens[..first_star].contains(&"const");
    let base: Vec<&str> = type_tokens
        .iter()
        .copied()
        .filter(|t| !matches!(*t, "*" | "const" | "__restrict__" | "volatile"))
        .collect();
    let scalar = match base.join(" ").as_str() {
        "float" => "F32",
        "double" => "F64",
        "int" | "signed" | "signed int" => "I32",
        "unsigned" | "unsigned int" => "U32",
        "long long" | "long long int" => "I64",
        "unsigned long long" | "unsigned long long int" | "size_t" => "U64",
        "unsigned char" => "U8",
        other => fail(&format!(
            "{here}: kernel `{kernel}` parameter `{name}` has type `{other}`; supported: float, double, int, unsigned, long long, unsigned long long, size_t, unsigned char, and pointers to them"
        )),
    };
    let kind = match stars {
        0 => format!("ParamKind::Scalar(Scalar::{scalar})"),
        1 => format!(
            "ParamKind::Pointer {{ element: Scalar::{scalar}, writes: {} }}",
            !const_element
        ),
        _ => fail(&format!(
            "{here}: kernel `{kernel}` parameter `{name}`: pointers to pointers are not supported"
        )),
    };
    Param {
        name: name.to_string(),
        kind,
    }
}

/// g++ builds one wrapper per kernel file: the file inside its own namespace (so that helpers of
/// the same name in two files cannot clash; `extern "C"` kernels stay global) plus an entry per
/// kernel that unpacks CUDA-style `void** args`.
fn build_emu(
    manifest_dir: &Path,
    out_dir: &Path,
    sources: &[Source],
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
    for source in sources {
        let mut wrapper = String::new();
        writeln!(wrapper, "#include \"cuemu.h\"").unwrap();
        writeln!(wrapper, "namespace mtosi_emu_{} {{", source.stem).unwrap();
        writeln!(wrapper, "#include \"{}\"", source.rel_path).unwrap();
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

/// Compiled images of one kernel file.
struct Images {
    cubins: Vec<(u32, PathBuf)>,
    ptx: PathBuf,
}

fn compile_all(
    nvrtc: &nvrtc::Nvrtc,
    sources: &[Source],
    headers: &[(String, String)],
    out_dir: &Path,
) -> BTreeMap<String, Images> {
    let image_dir = out_dir.join("nvrtc");
    fs::create_dir_all(&image_dir)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", image_dir.display())));
    let mut jobs: Vec<(usize, Option<u32>)> = Vec::new();
    for index in 0..sources.len() {
        jobs.extend(CUBIN_ARCHS.iter().map(|a| (index, Some(*a))));
        jobs.push((index, None));
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Option<u32>, PathBuf)>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let warnings: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(index, arch)) = jobs.get(job) else {
                    break;
                };
                let source = &sources[index];
                let target = match arch {
                    Some(a) => format!("sm_{a}"),
                    None => format!("compute_{PTX_ARCH}"),
                };
                // Unchanged source, headers, target and NVRTC: reuse the image of an earlier build.
                let extension = if arch.is_some() { "cubin" } else { "ptx" };
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                (&source.text, headers, &target, nvrtc.version, &nvrtc.path).hash(&mut hasher);
                let path = image_dir.join(format!(
                    "{}.{target}.{:016x}.{extension}",
                    source.stem,
                    hasher.finish()
                ));
                if path.exists() {
                    done.lock().unwrap().push((index, arch, path));
                    continue;
                }
                match nvrtc.compile(
                    &source.rel_path,
                    &source.text,
                    headers,
                    &target,
                    arch.is_some(),
                ) {
                    Ok((image, log)) => {
                        // Write then rename, so that an interrupted build leaves no partial image.
                        let partial = path.with_extension("partial");
                        fs::write(&partial, &image)
                            .and_then(|()| fs::rename(&partial, &path))
                            .unwrap_or_else(|e| {
                                fail(&format!("cannot write {}: {e}", path.display()))
                            });
                        if !log.trim().is_empty() {
                            warnings
                                .lock()
                                .unwrap()
                                .insert(source.rel_path.clone(), log);
                        }
                        done.lock().unwrap().push((index, arch, path));
                    }
                    Err(log) => failures.lock().unwrap().push(format!(
                        "NVRTC failed to compile {} for {target}:\n{log}",
                        source.rel_path
                    )),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        let mut failures = failures;
        failures.sort();
        failures.dedup_by(|a, b| a.lines().nth(1) == b.lines().nth(1));
        fail(&failures.join("\n"));
    }
    for (file, log) in warnings.into_inner().unwrap() {
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            println!("cargo:warning=NVRTC ({file}): {line}");
        }
    }
    let mut images: BTreeMap<String, Images> = BTreeMap::new();
    let mut done = done.into_inner().unwrap();
    done.sort();
    for (index, arch, path) in done {
        let entry = images
            .entry(sources[index].stem.clone())
            .or_insert_with(|| Images {
                cubins: Vec::new(),
                ptx: PathBuf::new(),
            });
        match arch {
            Some(a) => entry.cubins.push((a, path)),
            None => entry.ptx = path,
        }
    }
    images
}

/// The Rust table of kernels: name, source, parameters, emu entry and (when NVRTC ran) images.
/// `prefix` is how the generated code names this crate (`crate` inside it, `mtosi` in a test).
fn rust_table(
    sources: &[Source],
    images: Option<&BTreeMap<String, Images>>,
    prefix: &str,
    link: Option<&str>,
) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "// Generated by build.rs from the kernel sources; do not edit."
    )
    .unwrap();
    if let Some(library) = link {
        writeln!(out, "#[link(name = \"{library}\", kind = \"static\")]").unwrap();
    }
    writeln!(out, "extern \"C\" {{").unwrap();
    for source in sources {
        for kernel in &source.kernels {
            writeln!(
                out,
                "    fn mtosi_emu_entry_{}(args: *mut *mut ::std::ffi::c_void);",
                kernel.name
            )
            .unwrap();
        }
    }
    writeln!(out, "}}").unwrap();
    for source in sources {
        let images_expr = match images.and_then(|m| m.get(&source.stem)) {
            Some(images) => {
                let cubins: Vec<String> = images
                    .cubins
                    .iter()
                    .map(|(arch, path)| {
                        format!(
                            "({arch}, include_bytes!({:?}) as &[u8])",
                            path.display().to_string()
                        )
                    })
                    .collect();
                format!(
                    "{prefix}::device::ModuleImages {{ cubins: &[{}], ptx: Some(({PTX_ARCH}, include_bytes!({:?}) as &[u8])) }}",
                    cubins.join(", "),
                    images.ptx.display().to_string()
                )
            }
            None => format!("{prefix}::device::ModuleImages {{ cubins: &[], ptx: None }}"),
        };
        writeln!(
            out,
            "static IMAGES_{}: {prefix}::device::ModuleImages = {images_expr};",
            source.stem.to_uppercase()
        )
        .unwrap();
    }
    let table_name = if link.is_some() {
        "TEST_KERNELS"
    } else {
        "KERNELS"
    };
    writeln!(
        out,
        "pub static {table_name}: &[{prefix}::device::Kernel] = &["
    )
    .unwrap();
    for source in sources {
        for kernel in &source.kernels {
            let params: Vec<String> = kernel
                .params
                .iter()
                .map(|p| {
                    let kind = p
                        .kind
                        .replace("ParamKind::", &format!("{prefix}::device::ParamKind::"))
                        .replace("Scalar::", &format!("{prefix}::device::Scalar::"));
                    format!(
                        "{prefix}::device::Param {{ name: {:?}, kind: {kind} }}",
                        p.name
                    )
                })
                .collect();
            writeln!(
                out,
                "    {prefix}::device::Kernel {{ name: {:?}, source: {:?}, line: {}, params: &[{}], emu_entry: mtosi_emu_entry_{}, images: &IMAGES_{} }},",
                kernel.name,
                source.rel_path,
                kernel.line,
                params.join(", "),
                kernel.name,
                source.stem.to_uppercase()
            )
            .unwrap();
        }
    }
    writeln!(out, "];").unwrap();
    out
}

/// Writes a generated file only when its content changed, so that unchanged output does not
/// trigger recompilation.
fn write_generated(out_dir: &Path, name: &str, content: &str) {
    let path = out_dir.join(name);
    if fs::read_to_string(&path).is_ok_and(|old| old == content) {
        return;
    }
    fs::write(&path, content)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", path.display())));
}

mod nvrtc {
    //! NVRTC loaded with dlopen: the build needs no CUDA toolkit, only `libnvrtc.so`.
    use std::ffi::{c_char, c_int, c_void, CString};
    use std::path::{Path, PathBuf};

    type Program = *mut c_void;
    type CreateProgram = unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int;
    type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
    type GetSize = unsafe extern "C" fn(Program, *mut usize) -> c_int;
    type GetBytes = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
    type DestroyProgram = unsafe extern "C" fn(*mut Program) -> c_int;
    type Version = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;

    pub struct Nvrtc {
        pub path: PathBuf,
        pub version: (i32, i32),
        _library: libloading::Library,
        create: CreateProgram,
        compile: CompileProgram,
        log_size: GetSize,
        log: GetBytes,
        ptx_size: GetSize,
        ptx: GetBytes,
        cubin_size: GetSize,
        cubin: GetBytes,
        destroy: DestroyProgram,
    }

    // NVRTC is thread-safe for distinct programs.
    unsafe impl Sync for Nvrtc {}

    impl Nvrtc {
        /// `MTOSI_NVRTC` (a libnvrtc.so file or its folder), then CUDA_PATH / CUDA_HOME /
        /// /usr/local/cuda, then the system library path, then `./.venv`'s pip package.
        pub fn find(manifest_dir: &Path) -> Result<Nvrtc, String> {
            if let Some(named) = std::env::var_os("MTOSI_NVRTC") {
                let named = PathBuf::from(named);
                if !named.exists() {
                    return Err(format!("MTOSI_NVRTC={} does not exist", named.display()));
                }
                let file = if named.is_dir() {
                    library_in(&named)
                } else {
                    Some(named.clone())
                };
                let file = file.ok_or_else(|| {
                    format!("MTOSI_NVRTC={} holds no libnvrtc.so*", named.display())
                })?;
                return Nvrtc::open(&file)
                    .map_err(|e| format!("MTOSI_NVRTC={}: {e}", named.display()));
            }
            let mut tried: Vec<String> = Vec::new();
            let mut folders: Vec<PathBuf> = Vec::new();
            for var in ["CUDA_PATH", "CUDA_HOME"] {
                if let Some(root) = std::env::var_os(var) {
                    folders.push(PathBuf::from(&root).join("lib64"));
                    folders.push(PathBuf::from(&root).join("lib"));
                }
            }
            folders.push(PathBuf::from("/usr/local/cuda/lib64"));
            folders.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
            folders.push(PathBuf::from("/usr/lib/aarch64-linux-gnu"));
            for folder in &folders {
                if let Some(file) = library_in(folder) {
                    match Nvrtc::open(&file) {
                        Ok(nvrtc) => return Ok(nvrtc),
                        Err(e) => tried.push(format!("{}: {e}", file.display())),
                    }
                }
            }
            if let Ok(entries) = std::fs::read_dir(manifest_dir.join(".venv/lib")) {
                for python in entries.flatten() {
                    let folder = python.path().join("site-packages/nvidia/cuda_nvrtc/lib");
                    if let Some(file) = library_in(&folder) {
                        match Nvrtc::open(&file) {
                            Ok(nvrtc) => return Ok(nvrtc),
                            Err(e) => tried.push(format!("{}: {e}", file.display())),
                        }
                    }
                }
            }
            let mut reason = String::from(
                "NVRTC not found (set MTOSI_NVRTC to a libnvrtc.so, or `pip install nvidia-cuda-nvrtc-cu12` into ./.venv)",
            );
            if !tried.is_empty() {
                reason.push_str(&format!("; could not load: {}", tried.join("; ")));
            }
            Err(reason)
        }

        fn open(file: &Path) -> Result<Nvrtc, String> {
            // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
            let library = unsafe { libloading::Library::new(file) }.map_err(|e| e.to_string())?;
            macro_rules! symbol {
                ($name:literal) => {
                    // SAFETY: the type matches NVRTC's documented C signature.
                    *unsafe { library.get($name) }
                        .map_err(|e| format!("{}: {e}", file.display()))?
                };
            }
            let version: Version = symbol!(b"nvrtcVersion\0");
            let mut major = 0;
            let mut minor = 0;
            // SAFETY: two valid out-pointers.
            unsafe { version(&mut major, &mut minor) };
            Ok(Nvrtc {
                path: file.to_path_buf(),
                version: (major, minor),
                create: symbol!(b"nvrtcCreateProgram\0"),
                compile: symbol!(b"nvrtcCompileProgram\0"),
                log_size: symbol!(b"nvrtcGetProgramLogSize\0"),
                log: symbol!(b"nvrtcGetProgramLog\0"),
                ptx_size: symbol!(b"nvrtcGetPTXSize\0"),
                ptx: symbol!(b"nvrtcGetPTX\0"),
                cubin_size: symbol!(b"nvrtcGetCUBINSize\0"),
                cubin: symbol!(b"nvrtcGetCUBIN\0"),
                destroy: symbol!(b"nvrtcDestroyProgram\0"),
                _library: library,
            })
        }

        /// Compiles one source for `target` (sm_XX → CUBIN, compute_XX → PTX, NUL-terminated).
        /// Returns the image and NVRTC's log, or the log on failure.
        pub fn compile(
            &self,
            name: &str,
            text: &str,
            headers: &[(String, String)],
            target: &str,
            cubin: bool,
        ) -> Result<(Vec<u8>, String), String> {
            let c_text =
                CString::new(text).map_err(|_| "source contains a NUL byte".to_string())?;
            let c_name = CString::new(name).unwrap();
            let header_texts: Vec<CString> = headers
                .iter()
                .map(|(_, t)| CString::new(t.as_str()).unwrap())
                .collect();
            let header_names: Vec<CString> = headers
                .iter()
                .map(|(n, _)| CString::new(n.as_str()).unwrap())
                .collect();
            let header_text_ptrs: Vec<*const c_char> =
                header_texts.iter().map(|c| c.as_ptr()).collect();
            let header_name_ptrs: Vec<*const c_char> =
                header_names.iter().map(|c| c.as_ptr()).collect();
            let options: Vec<CString> = [
                format!("--gpu-architecture={target}"),
                "--std=c++17".to_string(),
                // Helpers without __device__ are device code too, as in the emu build.
                "-default-device".to_string(),
                // Source lines for compute-sanitizer and Nsight.
                "-lineinfo".to_string(),
            ]
            .into_iter()
            .map(|o| CString::new(o).unwrap())
            .collect();
            let option_ptrs: Vec<*const c_char> = options.iter().map(|c| c.as_ptr()).collect();
            let mut program: Program = std::ptr::null_mut();
            // SAFETY: all pointers are valid NUL-terminated strings that outlive the calls.
            unsafe {
                let status = (self.create)(
                    &mut program,
                    c_text.as_ptr(),
                    c_name.as_ptr(),
                    headers.len() as c_int,
                    header_text_ptrs.as_ptr(),
                    header_name_ptrs.as_ptr(),
                );
                if status != 0 {
                    return Err(format!("nvrtcCreateProgram failed with status {status}"));
                }
                let status =
                    (self.compile)(program, option_ptrs.len() as c_int, option_ptrs.as_ptr());
                let mut log_bytes = 0usize;
                (self.log_size)(program, &mut log_bytes);
                let mut log = vec![0u8; log_bytes.max(1)];
                (self.log)(program, log.as_mut_ptr() as *mut c_char);
                let log = String::from_utf8_lossy(&log)
                    .trim_end_matches('\0')
                    .to_string();
                if status != 0 {
                    (self.destroy)(&mut program);
                    return Err(log);
                }
                let (size_fn, get_fn) = if cubin {
                    (self.cubin_size, self.cubin)
                } else {
                    (self.ptx_size, self.ptx)
                };
                let mut size = 0usize;
                size_fn(program, &mut size);
                let mut image = vec![0u8; size];
                let status = get_fn(program, image.as_mut_ptr() as *mut c_char);
                (self.destroy)(&mut program);
                if status != 0 || size == 0 {
                    return Err(format!("NVRTC produced no image (status {status})"));
                }
                Ok((image, log))
            }
        }
    }

    fn library_in(folder: &Path) -> Option<PathBuf> {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(folder)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                name.starts_with("libnvrtc.so")
                    && !name.contains("builtins")
                    && !name.contains(".alt.")
            })
            .collect();
        candidates.sort();
        candidates.into_iter().next()
    }
}
