//! Static `__shared__` memory on emu: the source g++ compiles gets, after every `__shared__`
//! declaration in a function, a call `MTOSI_EMU_SHARED_FRESH(name);` that fills the variable
//! with NaN bytes the first time a thread of a new block passes it, and after one at file scope a
//! registration `MTOSI_EMU_FILE_SHARED(name)` whose variable the runtime fills at the start of
//! every block (kernels/emu/cuemu.h). On emu a `__shared__`
//! variable is a `thread_local` that would otherwise keep the previous block's values, hiding a
//! read before the first write or a missing barrier. Line numbers are unchanged (the calls go
//! right after the declaration's `;`), so errors point at the right line of the `.cu` file.
//!
//! Depends only on `signature` (the comment stripper), so that tests/build_signature.rs tests it.

use crate::signature::{blank_literals, strip_comments};

/// The emu source of `text`: every static `__shared__` declaration followed by its poisoning
/// call (in a function) or registration (at file scope). `extern __shared__` (the one dynamic
/// array, `common.cuh`) is left alone.
pub fn poison_static_shared(rel_path: &str, text: &str) -> Result<String, String> {
    let code = blank_literals(&strip_comments(text));
    let bytes = code.as_bytes();
    // Insertions (offset, text), in order.
    let mut insertions: Vec<(usize, String)> = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("__shared__") {
        let at = from + found;
        from = at + "__shared__".len();
        if !is_word_at(bytes, at, "__shared__".len()) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let here = format!("{rel_path}:{line}");
        let statement_start = code[..at].rfind([';', '}', '{']).map_or(0, |p| p + 1);
        if code[statement_start..at]
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == "extern")
        {
            continue;
        }
        let poison = if inside_function(&code[..at]) {
            "MTOSI_EMU_SHARED_FRESH"
        } else {
            "MTOSI_EMU_FILE_SHARED"
        };
        let end = code[at..]
            .find(';')
            .map(|p| at + p)
            .ok_or_else(|| format!("{here}: __shared__ declaration without a `;`"))?;
        let names =
            declarator_names(&code[from..end]).map_err(|problem| format!("{here}: {problem}"))?;
        let calls: String = names.iter().map(|n| format!(" {poison}({n});")).collect();
        // Right after the `;`: before any later statement, on the same line.
        insertions.push((end + 1, calls));
    }
    let mut out = String::with_capacity(text.len() + insertions.len() * 40);
    let mut copied = 0;
    for (offset, calls) in insertions {
        out.push_str(&text[copied..offset]);
        out.push_str(&calls);
        copied = offset;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

fn is_word_at(bytes: &[u8], at: usize, len: usize) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    (at == 0 || !word(bytes[at - 1])) && bytes.get(at + len).is_none_or(|&b| !word(b))
}

/// Whether the end of `code` lies inside a function body: some open `{` that does not belong to
/// a namespace, an `extern "C"` block, or a struct/class/union/enum.
fn inside_function(code: &str) -> bool {
    let mut stack: Vec<bool> = Vec::new();
    for (i, c) in code.char_indices() {
        match c {
            '{' => {
                let head_start = code[..i].rfind([';', '}', '{']).map_or(0, |p| p + 1);
                let head = &code[head_start..i];
                // `namespace x {`, `struct s {` …, and `extern "C" {`; a head with a parameter
                // list is a function (or a statement inside one).
                let words: Vec<&str> = head
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .collect();
                let is_scope = !head.contains('(')
                    && words.iter().any(|w| {
                        matches!(
                            *w,
                            "namespace" | "extern" | "struct" | "class" | "union" | "enum"
                        )
                    });
                stack.push(!is_scope);
            }
            '}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.iter().any(|&function| function)
}

/// The variable names of a declaration (the text between `__shared__` and `;`): for each
/// declarator (split at commas outside brackets), the last identifier before its first `[`,
/// `=` or the end.
pub fn declarator_names(declaration: &str) -> Result<Vec<String>, String> {
    let mut pieces = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in declaration.char_indices() {
        match c {
            '(' | '[' | '<' | '{' => depth += 1,
            ')' | ']' | '>' | '}' => depth -= 1,
            ',' if depth == 0 => {
                pieces.push(&declaration[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&declaration[start..]);
    let mut names = Vec::new();
    for (k, piece) in pieces.iter().enumerate() {
        let head = piece.split(['[', '=']).next().unwrap_or("");
        let name = head
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .rfind(|w| !w.is_empty())
            .filter(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
            .ok_or_else(|| {
                format!(
                    "cannot read the name of the __shared__ variable `{}`",
                    piece.trim()
                )
            })?;
        // The first declarator carries the type: a lone type word means no name was given.
        if k == 0 && head.split_whitespace().count() < 2 && !head.contains(')') {
            return Err(format!(
                "cannot read the type and name of the __shared__ declaration `{}`",
                piece.trim()
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}
