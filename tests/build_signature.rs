//! The build script's C parsing (build/signature.rs, build/shared_memory.rs), unit-tested here
//! because a build script has no test harness of its own.

#[path = "../build/shared_memory.rs"]
mod shared_memory;
#[path = "../build/signature.rs"]
mod signature;

use shared_memory::{declarator_names, poison_static_shared};
use signature::{parse_kernels, strip_comments};

const FLOAT_OUT: &str = "ParamKind::Pointer { element: Scalar::F32, writes: true }";

#[test]
fn comment_markers_inside_string_and_char_literals_are_not_comments() {
    let text = "const char* url = \"http://x\"; extern \"C\" __global__ void a(float* out) {}\n\
                const char* open = \"/*\"; extern \"C\" __global__ void b(float* out) {}\n\
                char q = '\"'; extern \"C\" __global__ void c(float* out) {} // \"quoted\" comment\n\
                const char* close = \"*/\";\n";
    let names: Vec<String> = parse_kernels("x.cu", text)
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn stripping_keeps_every_offset_and_line() {
    let text = "a /* one\n two × */ b // three → four\n\"// kept\" /* x */\n";
    let stripped = strip_comments(text);
    assert_eq!(stripped.len(), text.len());
    assert_eq!(stripped.lines().count(), text.lines().count());
    assert!(stripped.contains("\"// kept\""), "{stripped}");
    assert!(!stripped.contains("one") && !stripped.contains("three") && !stripped.contains('x'));
    assert_eq!(stripped.find('b'), text.find(" b").map(|p| p + 1));
}

#[test]
fn a_kernel_in_a_string_or_comment_is_not_a_kernel() {
    let text = "// extern \"C\" __global__ void old(int n);\n\
                extern \"C\" __global__ void real(int n) { printf(\"__global__ void fake(int)\"); }\n";
    let kernels = parse_kernels("x.cu", text).unwrap();
    assert_eq!(kernels.len(), 1);
    assert_eq!((kernels[0].name.as_str(), kernels[0].line), ("real", 2));
}

#[test]
fn a_declaration_then_a_definition_is_one_kernel_when_the_signatures_agree() {
    let text = "extern \"C\" __global__ void k(int n, float* out);\n\
                extern \"C\" __global__ void k(int count, float* __restrict__ result) {}\n";
    let kernels = parse_kernels("x.cu", text).unwrap();
    assert_eq!(kernels.len(), 1);
    assert_eq!(kernels[0].params[1].kind, FLOAT_OUT);
}

#[test]
fn a_kernel_name_defined_twice_with_other_parameters_is_an_error() {
    let text = "extern \"C\" __global__ void k(int n, float* out);\n\
                extern \"C\" __global__ void k(int n, const float* out) {}\n";
    let e = parse_kernels("kernels/x.cu", text).unwrap_err();
    assert!(
        e.starts_with(
            "kernels/x.cu:2: kernel `k` was declared at kernels/x.cu:1 with other parameter types"
        ),
        "{e}"
    );
}

#[test]
fn parameter_types_map_to_their_kinds_and_unknown_ones_are_named() {
    let text =
        "extern \"C\" __global__ void k(unsigned char b, const unsigned char* in, size_t n, \
                long long m, double* d) {}";
    let kinds: Vec<String> = parse_kernels("x.cu", text).unwrap()[0]
        .params
        .iter()
        .map(|p| p.kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "ParamKind::Scalar(Scalar::U8)",
            "ParamKind::Pointer { element: Scalar::U8, writes: false }",
            "ParamKind::Scalar(Scalar::U64)",
            "ParamKind::Scalar(Scalar::I64)",
            "ParamKind::Pointer { element: Scalar::F64, writes: true }",
        ]
    );
    let e = parse_kernels("x.cu", "extern \"C\" __global__ void k(short s) {}").unwrap_err();
    assert!(e.contains("parameter `s` has type `short`"), "{e}");
    let e = parse_kernels("x.cu", "__global__ void k(int n) {}").unwrap_err();
    assert!(e.contains("x.cu:1: write kernels as `extern \"C\""), "{e}");
    let e = parse_kernels("x.cu", "extern \"C\" __global__ void k(float** p) {}").unwrap_err();
    assert!(e.contains("pointers to pointers"), "{e}");
}

#[test]
fn static_shared_declarations_get_their_poisoning_call_right_after_them() {
    let text = "extern \"C\" __global__ void k(float* out) {\n\
                \x20   __shared__ float a[32][8], b;\n\
                \x20   __shared__ __align__(16) float tile[256]; // __shared__ in a comment\n\
                \x20   out[0] = a[0][0];\n\
                }\n";
    let emu = poison_static_shared("x.cu", text).unwrap();
    assert_eq!(emu.lines().count(), text.lines().count());
    let lines: Vec<&str> = emu.lines().collect();
    assert!(
        lines[1].ends_with("b; MTOSI_EMU_SHARED_FRESH(a); MTOSI_EMU_SHARED_FRESH(b);"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("tile[256]; MTOSI_EMU_SHARED_FRESH(tile); // __shared__ in a comment"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], text.lines().nth(3).unwrap());
}

#[test]
fn dynamic_and_file_scope_shared_declarations() {
    // The one dynamic array (common.cuh) is left alone, also at file scope.
    let header = "extern __shared__ __align__(16) unsigned char mtosi_dynamic_shared[];\n";
    assert_eq!(poison_static_shared("common.cuh", header).unwrap(), header);
    // At file scope (also inside a namespace) a registration stands in for the call.
    assert_eq!(
        poison_static_shared("x.cu", "namespace n {\n__shared__ float s[4];\n}\n").unwrap(),
        "namespace n {\n__shared__ float s[4]; MTOSI_EMU_FILE_SHARED(s);\n}\n"
    );
    // A helper function counts, and code after the declaration on its line comes after the call.
    let helper = "namespace {\n__device__ float f() { __shared__ float s[4]; return s[0]; }\n}\n";
    assert_eq!(
        poison_static_shared("x.cu", helper).unwrap(),
        "namespace {\n__device__ float f() { __shared__ float s[4]; MTOSI_EMU_SHARED_FRESH(s); return s[0]; }\n}\n"
    );
    assert_eq!(
        declarator_names(" float a[2], b[3][4], c").unwrap(),
        ["a", "b", "c"]
    );
    assert!(declarator_names(" float").is_err());
}
