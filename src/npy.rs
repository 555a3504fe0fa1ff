//! NumPy `.npy` files of float32 arrays (C order), the exchange format for spectrograms and
//! piano rolls: `numpy.load` reads what we write, and we read what numpy writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid .npy file: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// A dense float32 array with its shape (C order).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} does not match {} values",
            data.len()
        );
        Self { shape, data }
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` holding float32 or float64 (converted to float32), little-endian, C order.
pub fn read(path: &Path) -> Result<Array, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|reason| NpyError::Format {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported format version {v}")),
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err("truncated header".into());
    }
    let header = std::str::from_utf8(&bytes[header_start..data_start])
        .map_err(|_| "header is not text".to_string())?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let fortran_order = match fortran.trim() {
        "False" => false,
        "True" => true,
        other => return Err(format!("fortran_order is {other}, not True or False")),
    };
    let shape = parse_shape(shape_text)?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n.checked_mul(8).is_some())
        .ok_or_else(|| format!("shape {shape:?} has more elements than memory can address"))?;
    let payload = &bytes[data_start..];
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let data: Vec<f32> = match descr {
        "<f4" => {
            if payload.len() < count * 4 {
                return Err(format!(
                    "truncated data: shape {shape:?} needs {} bytes, file has {}",
                    count * 4,
                    payload.len()
                ));
            }
            payload[..count * 4]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        }
        "<f8" => {
            if payload.len() < count * 8 {
                return Err(format!(
                    "truncated data: shape {shape:?} needs {} bytes, file has {}",
                    count * 8,
                    payload.len()
                ));
            }
            payload[..count * 8]
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect()
        }
        other => {
            return Err(format!(
                "dtype {other} is not supported (float32 or float64)"
            ))
        }
    };
    let data = if fortran_order {
        fortran_to_c_order(&shape, &data)
    } else {
        data
    };
    Ok(Array { shape, data })
}

/// Reorders a column-major (Fortran-order) array into row-major order, as numpy's `np.load`
/// followed by `np.ascontiguousarray` would: element `(i0, …, i_{n-1})` sits at
/// `i0 + d0·(i1 + d1·(…))` in `data`.
fn fortran_to_c_order(shape: &[usize], data: &[f32]) -> Vec<f32> {
    if shape.len() < 2 {
        return data.to_vec();
    }
    // Column-major strides, then walk the output in row-major order with an odometer.
    let mut strides = vec![1usize; shape.len()];
    for axis in 1..shape.len() {
        strides[axis] = strides[axis - 1] * shape[axis - 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        out.push(
            data[index
                .iter()
                .zip(&strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()],
        );
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Finds `'key': value` in the header dict; the value runs to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("'{key}':");
    let start = header.find(&pattern)? + pattern.len();
    let rest = &header[start..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> Result<Vec<usize>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("shape {text} is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad dimension {s:?} in shape"))
        })
        .collect()
}

/// Serialises a float32 array as `.npy` version 1.0.
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Header + magic + lengths pad to a multiple of 64, ending in a newline, as numpy writes it.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 array to `path` atomically.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let bytes = to_bytes(shape, data);
    fsutil::write_atomic(path, |w| w.write_all(&bytes)).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_shapes_of_every_rank() {
        for shape in [vec![5], vec![3, 4], vec![1, 2, 3]] {
            let n = shape.iter().product::<usize>();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = to_bytes(&shape, &data);
            assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
            let back = parse(&bytes).unwrap();
            assert_eq!(back, Array::new(shape, data));
        }
    }

    #[test]
    fn rejects_truncated_and_foreign_files() {
        let bytes = to_bytes(&[4, 4], &[1.0; 16]);
        assert!(parse(&bytes[..bytes.len() - 3])
            .unwrap_err()
            .contains("truncated"));
        assert!(parse(b"RIFF....WAVEfmt ").unwrap_err().contains("magic"));
    }

    /// The bytes numpy writes for a Fortran-order float32 array: its header says
    /// `'fortran_order': True` and the payload is the memory in column-major order.
    fn fortran_npy(shape: &str, column_major: &[f32]) -> Vec<u8> {
        let mut header = format!("{{'descr': '<f4', 'fortran_order': True, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in column_major {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn fortran_order_arrays_are_transposed_on_load_as_numpy_reads_them() {
        // np.save(f, np.arange(6, dtype=np.float32).reshape(2, 3).T): shape (3, 2), memory
        // 0..6, rows [0, 3], [1, 4], [2, 5].
        let back = parse(&fortran_npy("(3, 2)", &[0., 1., 2., 3., 4., 5.])).unwrap();
        assert_eq!(back, Array::new(vec![3, 2], vec![0., 3., 1., 4., 2., 5.]));
        // Rank 3, shape (2, 2, 2): element (i, j, k) is at i + 2j + 4k in memory.
        let memory: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let back = parse(&fortran_npy("(2, 2, 2)", &memory)).unwrap();
        assert_eq!(back.data, vec![0., 4., 2., 6., 1., 5., 3., 7.]);
        // Rank 1 is the same in both orders.
        let back = parse(&fortran_npy("(3,)", &[7., 8., 9.])).unwrap();
        assert_eq!(back.data, vec![7., 8., 9.]);
    }

    #[test]
    fn a_shape_too_large_to_address_is_refused_before_any_allocation() {
        let err = parse(&fortran_npy("(4294967296, 4294967296)", &[])).unwrap_err();
        assert!(err.contains("more elements"), "{err}");
    }
}
