//! The C side of a kernel: `extern "C" __global__ void name(params)` signatures read from a
//! `.cu` file, and the comment stripper they are read through. No dependencies on the rest of
//! the build script, so that `tests/build_signature.rs` unit-tests it.

/// One kernel's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    /// 1-based line of its first `__global__`.
    pub line: usize,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// Rust expression of type `mtosi::device::ParamKind`, without the path prefix.
    pub kind: String,
}

/// Blanks out comments (each byte becomes a space, newlines stay), so that offsets into the
/// result are offsets into `text` and line numbers stay right. String and character literals
/// are kept as they are: a `//` or `/*` inside one is not a comment, and a quote inside a
/// comment does not start one.
pub fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = bytes.to_vec();
    let blank = |out: &mut Vec<u8>, at: usize| {
        if out[at] != b'\n' {
            out[at] = b' ';
        }
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                blank(&mut out, i);
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            let end = bytes[i + 2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(bytes.len(), |p| i + 2 + p + 2);
            for at in i..end {
                blank(&mut out, at);
            }
            i = end;
        } else if bytes[i] == b'"' || bytes[i] == b'\'' {
            i = literal_end(bytes, i);
        } else {
            i += 1;
        }
    }
    // Whole multi-byte characters were blanked byte by byte into ASCII spaces: still UTF-8.
    String::from_utf8(out).expect("blanking comments keeps UTF-8 intact")
}

/// The index just past the string or character literal that starts at `start` (at its closing
/// quote, or at the end of its line when unterminated).
fn literal_end(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    (i + 1).min(bytes.len())
}

/// Blanks the contents of string and character literals (keeping the quotes and every offset),
/// so that a search for keywords in code does not find them in text. Expects comments stripped.
pub fn blank_literals(code: &str) -> String {
    let bytes = code.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' || bytes[i] == b'\'' {
            let end = literal_end(bytes, i);
            let inside = i + 1..end.saturating_sub(1).max(i + 1);
            out[inside].fill(b' ');
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking literals keeps UTF-8 intact")
}

/// Every `extern "C" __global__` kernel of a file. A kernel may be declared before it is
/// defined; every declaration of one name must have the same parameter types.
pub fn parse_kernels(rel_path: &str, text: &str) -> Result<Vec<Signature>, String> {
    let stripped = strip_comments(text);
    let code = blank_literals(&stripped);
    let mut kernels: Vec<Signature> = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("__global__") {
        let at = from + found;
        from = at + "__global__".len();
        let line = code[..at].matches('\n').count() + 1;
        let here = format!("{rel_path}:{line}");
        let statement_start = code[..at].rfind([';', '}']).map_or(0, |p| p + 1);
        // `extern "C"` is the one literal that matters: read it from the unblanked text.
        if !stripped[statement_start..at].contains("extern \"C\"") {
            return Err(format!(
                "{here}: write kernels as `extern \"C\" __global__ void name(...)` so that both devices find them by name"
            ));
        }
        let mut rest = code[from..].trim_start();
        if let Some(after) = rest.strip_prefix("__launch_bounds__") {
            let close = after
                .find(')')
                .ok_or_else(|| format!("{here}: unclosed __launch_bounds__"))?;
            rest = after[close + 1..].trim_start();
        }
        let Some(rest) = rest.strip_prefix("void") else {
            return Err(format!("{here}: a kernel must return void"));
        };
        let open = rest
            .find('(')
            .ok_or_else(|| format!("{here}: no parameter list"))?;
        let name = rest[..open].trim().to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{here}: cannot read the kernel name `{name}` (templates are not supported)"
            ));
        }
        let close = rest[open..]
            .find(')')
            .ok_or_else(|| format!("{here}: unclosed parameter list"))?;
        let param_text = &rest[open + 1..open + close];
        let params = if param_text.trim().is_empty() || param_text.trim() == "void" {
            Vec::new()
        } else {
            param_text
                .split(',')
                .map(|p| parse_param(&here, &name, p))
                .collect::<Result<Vec<_>, _>>()?
        };
        if let Some(earlier) = kernels.iter().find(|k| k.name == name) {
            let kinds = |ps: &[Param]| ps.iter().map(|p| p.kind.clone()).collect::<Vec<_>>();
            if kinds(&earlier.params) != kinds(&params) {
                return Err(format!(
                    "{here}: kernel `{name}` was declared at {rel_path}:{} with other parameter types ({}) than here ({})",
                    earlier.line,
                    describe(&earlier.params),
                    describe(&params)
                ));
            }
            continue;
        }
        kernels.push(Signature { name, line, params });
    }
    Ok(kernels)
}

fn describe(params: &[Param]) -> String {
    params
        .iter()
        .map(|p| format!("{}: {}", p.name, p.kind))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One parameter: its name and `ParamKind` expression.
pub fn parse_param(here: &str, kernel: &str, text: &str) -> Result<Param, String> {
    let spaced = text.replace('*', " * ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let Some((&name, type_tokens)) = tokens.split_last() else {
        return Err(format!("{here}: kernel `{kernel}` has an empty parameter"));
    };
    if name == "*" || type_tokens.is_empty() {
        return Err(format!(
            "{here}: kernel `{kernel}` has a parameter without a name (`{}`)",
            text.trim()
        ));
    }
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
        other => return Err(format!(
            "{here}: kernel `{kernel}` parameter `{name}` has type `{other}`; supported: float, double, int, unsigned, long long, unsigned long long, size_t, unsigned char, and pointers to them"
        )),
    };
    let kind = match stars {
        0 => format!("ParamKind::Scalar(Scalar::{scalar})"),
        1 => format!(
            "ParamKind::Pointer {{ element: Scalar::{scalar}, writes: {} }}",
            !const_element
        ),
        _ => {
            return Err(format!(
            "{here}: kernel `{kernel}` parameter `{name}`: pointers to pointers are not supported"
        ))
        }
    };
    Ok(Param {
        name: name.to_string(),
        kind,
    })
}
