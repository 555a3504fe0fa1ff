//! NVRTC loaded with dlopen (the build needs no CUDA toolkit, only `libnvrtc.so`), and the
//! compilation of every kernel file to CUBINs and PTX with it.
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CString};
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::{fail, Source, CUBIN_ARCHS, PTX_ARCH};

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
            let file = file
                .ok_or_else(|| format!("MTOSI_NVRTC={} holds no libnvrtc.so*", named.display()))?;
            return Nvrtc::open(&file).map_err(|e| format!("MTOSI_NVRTC={}: {e}", named.display()));
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
                *unsafe { library.get($name) }.map_err(|e| format!("{}: {e}", file.display()))?
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
        let c_text = CString::new(text).map_err(|_| "source contains a NUL byte".to_string())?;
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
            let status = (self.compile)(program, option_ptrs.len() as c_int, option_ptrs.as_ptr());
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
            name.starts_with("libnvrtc.so") && !name.contains("builtins") && !name.contains(".alt.")
        })
        .collect();
    candidates.sort();
    candidates.into_iter().next()
}

/// Compiled images of one kernel file.
pub struct Images {
    pub cubins: Vec<(u32, PathBuf)>,
    pub ptx: PathBuf,
}

/// Compiles every source for every CUBIN architecture and PTX, in parallel, reusing images
/// of unchanged sources; fails the build with NVRTC's log.
pub fn compile_all(
    nvrtc: &Nvrtc,
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
