//! The GGUF header walk: metadata pairs, then tensor infos.
//!
//! This is where the format is interpreted. Each metadata key is classified first — kept as
//! text, kept as a count (scalar or per-layer array), or skipped — so values we do not need
//! are passed over without being materialised, and values we keep are bounded by
//! [`MAX_STRING_LEN`] and [`MAX_ARRAY_LEN`]. Keys under `{arch}.` are collected by suffix and
//! resolved once `general.architecture` is known, since the format does not promise it comes
//! first.

use std::collections::HashMap;
use std::io::BufRead;

use super::ftype::quantization_name;
use super::reader::Source;
use super::{
    GgufError, GgufInfo, MAX_ARRAY_LEN, MAX_DIMS, MAX_METADATA_PAIRS, MAX_NESTING, MAX_STRING_LEN,
    MAX_TENSORS,
};

/// The value types of GGUF metadata, codes 0..=12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn read<R: BufRead>(src: &mut Source<R>) -> Result<Self, GgufError> {
        let code = src.u32("value type")?;
        Ok(match code {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => {
                return Err(GgufError::BadValueType {
                    value_type: code,
                    offset: src.offset(),
                });
            }
        })
    }

    /// The encoded size of a fixed-size value; `None` for strings and arrays.
    fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }
}

/// What we want from a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Nothing: skip it.
    Skip,
    /// A string.
    Text,
    /// A non-negative integer, or an array of them (one per layer).
    Count,
}

/// A value we kept, or what remains of one we skipped.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// Skipped, or of a type we cannot use.
    Other,
    /// A string.
    Text(String),
    /// A non-negative integer.
    Count(u64),
    /// An array of non-negative integers.
    Counts(Vec<u64>),
    /// A skipped array and its element count.
    ArrayLen(u64),
}

impl Value {
    fn text(&self) -> Option<String> {
        match self {
            Self::Text(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// A scalar count, or the largest of a per-layer array.
    fn max_count(&self) -> Option<u64> {
        match self {
            Self::Count(n) => Some(*n),
            Self::Counts(v) => v.iter().copied().max(),
            _ => None,
        }
    }
}

/// `{arch}.…` keys we keep, by the suffix after the architecture.
const ARCH_SUFFIXES: [&str; 6] = [
    ".context_length",
    ".embedding_length",
    ".block_count",
    ".attention.head_count",
    ".attention.head_count_kv",
    ".feed_forward_length",
];

fn want(key: &str) -> Want {
    match key {
        "general.architecture" | "general.name" | "general.size_label" => Want::Text,
        "general.file_type" | "split.no" | "split.count" => Want::Count,
        _ if ARCH_SUFFIXES.iter().any(|s| key.ends_with(s)) => Want::Count,
        _ => Want::Skip,
    }
}

/// Reads the length of a string and checks it against [`MAX_STRING_LEN`].
fn bounded_len<R: BufRead>(src: &mut Source<R>, what: &'static str) -> Result<u64, GgufError> {
    let len = src.len(what)?;
    if len > MAX_STRING_LEN {
        return Err(GgufError::StringTooLong {
            len,
            limit: MAX_STRING_LEN,
            offset: src.offset(),
        });
    }
    Ok(len)
}

/// Reads a string we keep (at most [`MAX_STRING_LEN`] bytes; invalid UTF-8 is replaced).
fn read_string<R: BufRead>(src: &mut Source<R>, what: &'static str) -> Result<String, GgufError> {
    let len = bounded_len(src, what)?;
    let bytes = src.bytes(len, what)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Passes over a string of any length the byte budget allows.
fn skip_string<R: BufRead>(src: &mut Source<R>) -> Result<(), GgufError> {
    let len = src.len("string length")?;
    src.skip(len, "string")
}

/// Reads a scalar integer as a non-negative count; `None` for negative values.
fn read_integer<R: BufRead>(src: &mut Source<R>, ty: ValueType) -> Result<Option<u64>, GgufError> {
    const WHAT: &str = "integer value";
    Ok(match ty {
        ValueType::U8 => Some(u64::from(src.u8(WHAT)?)),
        ValueType::I8 => u64::try_from(i8::from_le_bytes(src.array(WHAT)?)).ok(),
        ValueType::U16 => Some(u64::from(src.u16(WHAT)?)),
        ValueType::I16 => u64::try_from(i16::from_le_bytes(src.array(WHAT)?)).ok(),
        ValueType::U32 => Some(u64::from(src.u32(WHAT)?)),
        ValueType::I32 => u64::try_from(i32::from_le_bytes(src.array(WHAT)?)).ok(),
        ValueType::U64 => Some(src.u64(WHAT)?),
        ValueType::I64 => u64::try_from(i64::from_le_bytes(src.array(WHAT)?)).ok(),
        ValueType::F32
        | ValueType::F64
        | ValueType::Bool
        | ValueType::String
        | ValueType::Array => {
            return Ok(None);
        }
    })
}

fn is_integer(ty: ValueType) -> bool {
    !matches!(
        ty,
        ValueType::F32 | ValueType::F64 | ValueType::Bool | ValueType::String | ValueType::Array
    )
}

/// Reads (or skips) one value of type `ty`, at array nesting `depth`.
fn read_value<R: BufRead>(
    src: &mut Source<R>,
    ty: ValueType,
    want: Want,
    depth: u32,
) -> Result<Value, GgufError> {
    match ty {
        ValueType::String if want == Want::Text => {
            read_string(src, "string value").map(Value::Text)
        }
        ValueType::String => skip_string(src).map(|()| Value::Other),
        ValueType::Array => read_array(src, want, depth),
        _ if want == Want::Count && is_integer(ty) => {
            Ok(read_integer(src, ty)?.map_or(Value::Other, Value::Count))
        }
        _ => {
            // Fixed-size scalars always have a size; strings and arrays are handled above.
            let size = ty.fixed_size().unwrap_or(0);
            src.skip(size, "scalar value").map(|()| Value::Other)
        }
    }
}

fn read_array<R: BufRead>(src: &mut Source<R>, want: Want, depth: u32) -> Result<Value, GgufError> {
    if depth >= MAX_NESTING {
        return Err(GgufError::NestingTooDeep {
            offset: src.offset(),
        });
    }
    let elem = ValueType::read(src)?;
    let count = src.len("array length")?;
    let too_long = |src: &Source<R>| GgufError::ArrayTooLong {
        len: count,
        limit: MAX_ARRAY_LEN,
        offset: src.offset(),
    };

    if want == Want::Count && is_integer(elem) {
        if count > MAX_ARRAY_LEN {
            return Err(too_long(src));
        }
        let mut values = Vec::new();
        let mut all_non_negative = true;
        for _ in 0..count {
            match read_integer(src, elem)? {
                Some(v) => values.push(v),
                None => all_non_negative = false,
            }
        }
        return Ok(if all_non_negative {
            Value::Counts(values)
        } else {
            Value::Other
        });
    }

    if let Some(size) = elem.fixed_size() {
        // One step; the byte budget rejects absurd counts before anything is read.
        let bytes = count.checked_mul(size).ok_or_else(|| too_long(src))?;
        src.skip(bytes, "array")?;
    } else if count > MAX_ARRAY_LEN {
        return Err(too_long(src));
    } else if elem == ValueType::String {
        src.skip_strings(count)?;
    } else {
        for _ in 0..count {
            read_value(src, elem, Want::Skip, depth + 1)?;
        }
    }
    Ok(Value::ArrayLen(count))
}

/// Walks a whole header; see [`super::parse`].
pub(crate) fn parse_header<R: BufRead>(inner: R) -> Result<GgufInfo, GgufError> {
    let mut src = Source::new(inner);

    let magic: [u8; 4] = src.array("magic")?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic(magic));
    }
    let version = src.u32("version")?;
    if !(1..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    src.narrow = version == 1;

    let tensor_count = src.len("tensor count")?;
    if tensor_count > MAX_TENSORS {
        return Err(GgufError::TooManyTensors(tensor_count));
    }
    let kv_count = src.len("metadata count")?;
    if kv_count > MAX_METADATA_PAIRS {
        return Err(GgufError::TooManyMetadataPairs(kv_count));
    }

    let mut kept: HashMap<String, Value> = HashMap::new();
    let mut vocab_size = None;
    let mut has_chat_template = false;
    for _ in 0..kv_count {
        let key = read_string(&mut src, "metadata key")?;
        let ty = ValueType::read(&mut src)?;
        let value = read_value(&mut src, ty, want(&key), 0)?;
        match key.as_str() {
            "tokenizer.ggml.tokens" => {
                if let Value::ArrayLen(n) = value {
                    vocab_size = Some(n);
                }
            }
            "tokenizer.chat_template" => has_chat_template = true,
            _ if value != Value::Other => {
                kept.insert(key, value);
            }
            _ => {}
        }
    }

    let mut parameter_count: u64 = 0;
    for index in 0..tensor_count {
        let name_len = bounded_len(&mut src, "tensor name")?;
        src.skip(name_len, "tensor name")?;
        let n_dims = src.u32("tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { index, n_dims });
        }
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let dim = src.len("tensor dimension")?;
            elements = elements
                .checked_mul(dim)
                .ok_or(GgufError::ParameterOverflow { index })?;
        }
        let _ggml_type = src.u32("tensor type")?;
        let _offset = src.u64("tensor offset")?;
        parameter_count = parameter_count
            .checked_add(elements)
            .ok_or(GgufError::ParameterOverflow { index })?;
    }

    let architecture = kept.get("general.architecture").and_then(Value::text);
    let arch_value = |suffix: &str| -> Option<&Value> {
        let arch = architecture.as_deref()?;
        kept.get(&format!("{arch}{suffix}"))
    };
    let arch_count = |suffix: &str| arch_value(suffix).and_then(Value::max_count);
    let small = |key: &str| {
        kept.get(key)
            .and_then(Value::max_count)
            .and_then(|n| u32::try_from(n).ok())
    };
    let file_type = small("general.file_type");

    Ok(GgufInfo {
        version,
        name: kept.get("general.name").and_then(Value::text),
        size_label: kept.get("general.size_label").and_then(Value::text),
        context_length: arch_count(".context_length"),
        embedding_length: arch_count(".embedding_length"),
        block_count: arch_count(".block_count"),
        head_count: arch_count(".attention.head_count"),
        head_count_kv: arch_count(".attention.head_count_kv"),
        feed_forward_length: arch_count(".feed_forward_length"),
        feed_forward_length_per_layer: match arch_value(".feed_forward_length") {
            Some(Value::Counts(v)) => Some(v.clone()),
            _ => None,
        },
        file_type,
        quantization: file_type.and_then(quantization_name).map(str::to_owned),
        parameter_count,
        tensor_count,
        vocab_size,
        has_chat_template,
        split_no: small("split.no"),
        split_count: small("split.count"),
        // `kv_count <= MAX_METADATA_PAIRS`, far below `usize::MAX` on any target we build for.
        metadata_keys: usize::try_from(kv_count).unwrap_or(usize::MAX),
        architecture,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn v3(body: &[u8], tensors: u64, kvs: u64) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&tensors.to_le_bytes());
        out.extend_from_slice(&kvs.to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    #[test]
    fn classifies_keys() {
        assert_eq!(want("general.architecture"), Want::Text);
        assert_eq!(want("general.file_type"), Want::Count);
        assert_eq!(want("qwen2.attention.head_count_kv"), Want::Count);
        assert_eq!(want("llama.feed_forward_length"), Want::Count);
        assert_eq!(want("tokenizer.ggml.tokens"), Want::Skip);
        assert_eq!(want("tokenizer.chat_template"), Want::Skip);
    }

    #[test]
    fn empty_header() {
        let info = parse_header(&v3(&[], 0, 0)[..]).unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.tensor_count, 0);
        assert_eq!(info.metadata_keys, 0);
        assert_eq!(info.architecture, None);
    }

    #[test]
    fn arch_keys_resolve_after_architecture() {
        let mut body = Vec::new();
        string(&mut body, "phi3.block_count");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&32u32.to_le_bytes());
        string(&mut body, "llama.block_count");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&7u32.to_le_bytes());
        string(&mut body, "general.architecture");
        body.extend_from_slice(&8u32.to_le_bytes());
        string(&mut body, "phi3");
        let info = parse_header(&v3(&body, 0, 3)[..]).unwrap();
        assert_eq!(info.architecture.as_deref(), Some("phi3"));
        assert_eq!(info.block_count, Some(32));
    }

    #[test]
    fn negative_counts_are_ignored() {
        let mut body = Vec::new();
        string(&mut body, "general.file_type");
        body.extend_from_slice(&5u32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        let info = parse_header(&v3(&body, 0, 1)[..]).unwrap();
        assert_eq!(info.file_type, None);
        assert_eq!(info.quantization, None);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut body = Vec::new();
        string(&mut body, "deep");
        body.extend_from_slice(&9u32.to_le_bytes()); // the value is an array
        for _ in 0..=MAX_NESTING {
            body.extend_from_slice(&9u32.to_le_bytes()); // array
            body.extend_from_slice(&1u64.to_le_bytes()); // of one element
        }
        let err = parse_header(&v3(&body, 0, 1)[..]).unwrap_err();
        assert!(matches!(err, GgufError::NestingTooDeep { .. }), "{err}");
    }
}
