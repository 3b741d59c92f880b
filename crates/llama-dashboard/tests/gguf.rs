//! End-to-end tests of the GGUF header reader on files written by a small writer of our own.
//!
//! The writer below produces GGUF v1, v2 and v3 bytes from a list of metadata pairs and tensor
//! infos, so the tests can cover every value type, real-sized vocabularies and hostile inputs
//! (truncated at every byte, absurd lengths and counts) without shipping binary fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use llama_dashboard::gguf::{self, GgufError, GgufInfo};

/// A metadata value to write.
#[derive(Debug, Clone)]
enum Val {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type code and elements (which must all be of that type).
    Arr(u32, Vec<Val>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Val {
    fn code(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::Str(_) => 8,
            Self::Arr(..) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
}

fn s(text: &str) -> Val {
    Val::Str(text.to_owned())
}

/// Writes GGUF headers of one version.
struct Writer {
    version: u32,
    out: Vec<u8>,
}

impl Writer {
    /// Starts a file: magic, version and the two counts.
    fn new(version: u32, tensors: u64, kvs: u64) -> Self {
        let mut w = Self {
            version,
            out: b"GGUF".to_vec(),
        };
        w.u32(version);
        w.len(tensors);
        w.len(kvs);
        w
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// A length or count: `u32` in v1, `u64` later.
    fn len(&mut self, n: u64) {
        if self.version == 1 {
            self.u32(u32::try_from(n).unwrap());
        } else {
            self.u64(n);
        }
    }

    fn string(&mut self, text: &str) {
        self.len(text.len() as u64);
        self.out.extend_from_slice(text.as_bytes());
    }

    fn value(&mut self, v: &Val) {
        match v {
            Val::U8(x) => self.out.push(*x),
            Val::I8(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Val::U16(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Val::I16(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Val::U32(x) => self.u32(*x),
            Val::I32(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Val::F32(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Val::Bool(x) => self.out.push(u8::from(*x)),
            Val::Str(x) => self.string(x),
            Val::Arr(code, items) => {
                self.u32(*code);
                self.len(items.len() as u64);
                for item in items {
                    assert_eq!(item.code(), *code, "array element of the wrong type");
                    self.value(item);
                }
            }
            Val::U64(x) => self.u64(*x),
            Val::I64(x) => self.out.extend_from_slice(&x.to_le_bytes()),
            Val::F64(x) => self.out.extend_from_slice(&x.to_le_bytes()),
        }
    }

    fn kv(&mut self, key: &str, v: &Val) -> &mut Self {
        self.string(key);
        self.u32(v.code());
        self.value(v);
        self
    }

    fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.string(name);
        self.u32(u32::try_from(dims.len()).unwrap());
        for &d in dims {
            self.len(d);
        }
        self.u32(ggml_type);
        self.u64(offset);
        self
    }
}

/// A complete file of `version` with the given pairs and tensors.
fn file(version: u32, kvs: &[(&str, Val)], tensors: &[(&str, &[u64])]) -> Vec<u8> {
    let mut w = Writer::new(version, tensors.len() as u64, kvs.len() as u64);
    for (k, v) in kvs {
        w.kv(k, v);
    }
    for (i, (name, dims)) in tensors.iter().enumerate() {
        w.tensor(name, dims, 0, i as u64 * 1024);
    }
    w.out
}

/// A small llama-like model's metadata.
fn llama_kvs() -> Vec<(&'static str, Val)> {
    vec![
        ("general.architecture", s("llama")),
        ("general.name", s("Tiny Llama")),
        ("general.size_label", s("1.1B")),
        ("general.file_type", Val::U32(15)),
        ("llama.context_length", Val::U32(2048)),
        ("llama.embedding_length", Val::U32(64)),
        ("llama.block_count", Val::U32(2)),
        ("llama.attention.head_count", Val::U32(4)),
        ("llama.attention.head_count_kv", Val::U32(2)),
        ("llama.feed_forward_length", Val::U32(256)),
        ("llama.rope.freq_base", Val::F32(10_000.0)),
        (
            "tokenizer.ggml.tokens",
            Val::Arr(8, vec![s("<s>"), s("</s>"), s("a"), s("b")]),
        ),
        ("tokenizer.ggml.scores", Val::Arr(6, vec![Val::F32(0.0); 4])),
        (
            "tokenizer.ggml.token_type",
            Val::Arr(5, vec![Val::I32(1); 4]),
        ),
        ("tokenizer.ggml.merges", Val::Arr(8, vec![s("a b")])),
        (
            "tokenizer.chat_template",
            s("{% for m in messages %}{{ m }}{% endfor %}"),
        ),
    ]
}

const LLAMA_TENSORS: &[(&str, &[u64])] = &[
    ("token_embd.weight", &[64, 4]),
    ("blk.0.attn_q.weight", &[64, 64]),
    ("blk.0.ffn_up.weight", &[64, 256]),
    ("output_norm.weight", &[64]),
];

fn expected_llama(version: u32) -> GgufInfo {
    GgufInfo {
        version,
        architecture: Some("llama".into()),
        name: Some("Tiny Llama".into()),
        size_label: Some("1.1B".into()),
        context_length: Some(2048),
        embedding_length: Some(64),
        block_count: Some(2),
        head_count: Some(4),
        head_count_kv: Some(2),
        feed_forward_length: Some(256),
        feed_forward_length_per_layer: None,
        file_type: Some(15),
        quantization: Some("Q4_K_M".into()),
        parameter_count: 64 * 4 + 64 * 64 + 64 * 256 + 64,
        tensor_count: 4,
        vocab_size: Some(4),
        has_chat_template: true,
        split_no: None,
        split_count: None,
        metadata_keys: 16,
    }
}

#[test]
fn reads_a_llama_header_in_every_version() {
    for version in 1..=3 {
        let bytes = file(version, &llama_kvs(), LLAMA_TENSORS);
        let info = gguf::parse(&bytes[..]).unwrap();
        assert_eq!(info, expected_llama(version), "version {version}");
    }
}

#[test]
fn read_header_opens_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    // Tensor data after the header is never looked at.
    let mut bytes = file(3, &llama_kvs(), LLAMA_TENSORS);
    bytes.extend(std::iter::repeat_n(0xAB, 100_000));
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(gguf::read_header(&path).unwrap(), expected_llama(3));

    let missing = dir.path().join("nope.gguf");
    let err = gguf::read_header(&missing).unwrap_err();
    assert!(
        matches!(err, GgufError::Open { ref path, .. } if *path == missing),
        "{err}"
    );
}

#[test]
fn every_value_type_is_read_and_skipped_in_step() {
    let every = vec![
        ("t.u8", Val::U8(1)),
        ("t.i8", Val::I8(-1)),
        ("t.u16", Val::U16(2)),
        ("t.i16", Val::I16(-2)),
        ("t.u32", Val::U32(3)),
        ("t.i32", Val::I32(-3)),
        ("t.f32", Val::F32(1.5)),
        ("t.bool", Val::Bool(true)),
        ("t.string", s("text")),
        ("t.u64", Val::U64(4)),
        ("t.i64", Val::I64(-4)),
        ("t.f64", Val::F64(2.5)),
        (
            "t.array.nested",
            Val::Arr(
                9,
                vec![Val::Arr(8, vec![s("x"), s("yz")]), Val::Arr(0, vec![])],
            ),
        ),
        ("t.array.bool", Val::Arr(7, vec![Val::Bool(false); 3])),
        ("t.array.f64", Val::Arr(12, vec![Val::F64(0.5); 3])),
        ("t.array.i16", Val::Arr(3, vec![Val::I16(-7); 3])),
        ("t.array.empty", Val::Arr(8, vec![])),
        ("general.architecture", s("gemma")),
    ];
    for version in 1..=3 {
        let bytes = file(version, &every, &[("w", &[3, 5])]);
        let info = gguf::parse(&bytes[..]).unwrap();
        assert_eq!(info.architecture.as_deref(), Some("gemma"));
        assert_eq!(info.metadata_keys, every.len());
        assert_eq!(info.parameter_count, 15);
    }

    // Each integer type is accepted where a count is expected; negatives are ignored.
    let counts = [
        (Val::U8(200), Some(200)),
        (Val::I8(100), Some(100)),
        (Val::I8(-1), None),
        (Val::U16(4096), Some(4096)),
        (Val::I16(-4096), None),
        (Val::U32(131_072), Some(131_072)),
        (Val::I32(8192), Some(8192)),
        (Val::U64(1 << 40), Some(1 << 40)),
        (Val::I64(1 << 20), Some(1 << 20)),
        (Val::I64(-5), None),
        (Val::F32(2048.0), None),
        (Val::F64(2048.0), None),
        (Val::Bool(true), None),
        (s("2048"), None),
    ];
    for (value, expected) in counts {
        let bytes = file(
            3,
            &[
                ("general.architecture", s("qwen2")),
                ("qwen2.context_length", value.clone()),
                ("general.name", s("after")),
            ],
            &[],
        );
        let info = gguf::parse(&bytes[..]).unwrap();
        assert_eq!(info.context_length, expected, "{value:?}");
        assert_eq!(info.name.as_deref(), Some("after"), "{value:?}");
    }
}

#[test]
fn per_layer_feed_forward_lengths_report_the_largest() {
    let layers: Vec<Val> = [1024u32, 4096, 2048].iter().map(|&n| Val::U32(n)).collect();
    let kvs = [
        ("general.architecture", s("openelm")),
        ("openelm.feed_forward_length", Val::Arr(4, layers)),
        (
            "openelm.attention.head_count",
            Val::Arr(5, vec![Val::I32(12), Val::I32(16), Val::I32(20)]),
        ),
        (
            "openelm.attention.head_count_kv",
            Val::Arr(2, vec![Val::U16(3), Val::U16(4)]),
        ),
    ];
    for version in 1..=3 {
        let info = gguf::parse(&file(version, &kvs, &[])[..]).unwrap();
        assert_eq!(info.feed_forward_length, Some(4096));
        assert_eq!(
            info.feed_forward_length_per_layer,
            Some(vec![1024, 4096, 2048])
        );
        assert_eq!(info.head_count, Some(20));
        assert_eq!(info.head_count_kv, Some(4));
    }
}

#[test]
fn a_260k_token_vocabulary_is_counted_not_kept() {
    const VOCAB: usize = 260_000;
    let mut w = Writer::new(3, 1, 5);
    w.kv("general.architecture", &s("gemma3"));
    // Written by hand rather than through `Val` to keep the test itself quick.
    w.string("tokenizer.ggml.tokens");
    w.u32(9);
    w.u32(8);
    w.u64(VOCAB as u64);
    for i in 0..VOCAB {
        w.string(&format!("tok{i}"));
    }
    w.string("tokenizer.ggml.scores");
    w.u32(9);
    w.u32(6);
    w.u64(VOCAB as u64);
    w.out.extend(std::iter::repeat_n(0u8, VOCAB * 4));
    w.string("tokenizer.ggml.merges");
    w.u32(9);
    w.u32(8);
    w.u64(2);
    w.string("t o");
    w.string("to k");
    w.kv("general.file_type", &Val::U32(7));
    w.tensor("token_embd.weight", &[1152, VOCAB as u64], 8, 0);

    let info = gguf::parse(&w.out[..]).unwrap();
    assert_eq!(info.vocab_size, Some(VOCAB as u64));
    assert_eq!(info.quantization.as_deref(), Some("Q8_0"));
    assert_eq!(info.parameter_count, 1152 * VOCAB as u64);
    assert!(!info.has_chat_template);
}

#[test]
fn split_metadata_is_reported() {
    let kvs = [
        ("general.architecture", s("llama")),
        ("split.no", Val::U16(1)),
        ("split.count", Val::U16(3)),
        ("split.tensors.count", Val::I32(700)),
    ];
    let info = gguf::parse(&file(3, &kvs, &[])[..]).unwrap();
    assert_eq!((info.split_no, info.split_count), (Some(1), Some(3)));
}

#[test]
fn file_types_map_to_llama_cpp_labels() {
    for (code, label) in [
        (0, Some("F32")),
        (1, Some("F16")),
        (7, Some("Q8_0")),
        (9, Some("Q5_1")),
        (19, Some("IQ2_XXS")),
        (32, Some("BF16")),
        (37, Some("TQ2_0")),
        (38, Some("MXFP4_MOE")),
        (5, None),
        (99, None),
    ] {
        let kvs = [("general.file_type", Val::U32(code))];
        let info = gguf::parse(&file(2, &kvs, &[])[..]).unwrap();
        assert_eq!(info.file_type, Some(code));
        assert_eq!(info.quantization.as_deref(), label, "code {code}");
    }
}

#[test]
fn info_serialises_to_json() {
    let info = gguf::parse(&file(3, &llama_kvs(), LLAMA_TENSORS)[..]).unwrap();
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["quantization"], "Q4_K_M");
    assert_eq!(json["vocab_size"], 4);
}

// ---- hostile input -------------------------------------------------------------------------

fn parse_err(bytes: &[u8]) -> GgufError {
    gguf::parse(bytes).unwrap_err()
}

#[test]
fn bad_magic_and_versions_are_refused() {
    let mut bytes = file(3, &[], &[]);
    bytes[0] = b'g';
    assert!(matches!(parse_err(&bytes), GgufError::BadMagic(m) if &m == b"gGUF"));
    for version in [0, 4, u32::MAX] {
        let mut bytes = file(3, &[], &[]);
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        assert!(matches!(parse_err(&bytes), GgufError::UnsupportedVersion(v) if v == version));
    }
    assert!(matches!(
        parse_err(b""),
        GgufError::Truncated { what: "magic", .. }
    ));
}

#[test]
fn every_truncation_is_an_error() {
    for version in 1..=3 {
        let kvs = llama_kvs()
            .into_iter()
            .chain([
                (
                    "t.nested",
                    Val::Arr(9, vec![Val::Arr(4, vec![Val::U32(1), Val::U32(2)])]),
                ),
                ("t.f64", Val::F64(1.0)),
                ("t.bool", Val::Bool(false)),
            ])
            .collect::<Vec<_>>();
        let bytes = file(version, &kvs, LLAMA_TENSORS);
        assert!(gguf::parse(&bytes[..]).is_ok());
        for len in 0..bytes.len() {
            let err = gguf::parse(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, GgufError::Truncated { .. }),
                "v{version}, {len} bytes: {err}"
            );
        }
    }
}

#[test]
fn huge_string_lengths_are_refused_without_allocating() {
    // A key claiming 2^62 bytes.
    let mut w = Writer::new(3, 0, 1);
    w.u64(1 << 62);
    assert!(matches!(parse_err(&w.out), GgufError::StringTooLong { len, .. } if len == 1 << 62));

    // A kept value just over the limit.
    let mut w = Writer::new(3, 0, 1);
    w.string("general.name");
    w.u32(8);
    w.u64(gguf::MAX_STRING_LEN + 1);
    assert!(matches!(parse_err(&w.out), GgufError::StringTooLong { .. }));

    // A skipped value of absurd length runs into the header budget before any read.
    let mut w = Writer::new(3, 0, 1);
    w.string("tokenizer.chat_template");
    w.u32(8);
    w.u64(u64::MAX);
    assert!(matches!(parse_err(&w.out), GgufError::HeaderTooLarge));

    // A tensor name over the limit.
    let mut w = Writer::new(3, 1, 0);
    w.u64(gguf::MAX_STRING_LEN + 1);
    assert!(matches!(parse_err(&w.out), GgufError::StringTooLong { .. }));
}

#[test]
fn large_skipped_string_values_are_fine() {
    // A 2 MiB chat template is over the kept-string limit but is skipped, not kept.
    let template = "x".repeat(2 << 20);
    let kvs = [
        ("tokenizer.chat_template", Val::Str(template)),
        ("general.name", s("big template")),
    ];
    let info = gguf::parse(&file(3, &kvs, &[])[..]).unwrap();
    assert!(info.has_chat_template);
    assert_eq!(info.name.as_deref(), Some("big template"));
}

#[test]
fn huge_array_counts_are_refused() {
    for (elem, count) in [(8u32, 1u64 << 40), (9, gguf::MAX_ARRAY_LEN + 1)] {
        let mut w = Writer::new(3, 0, 1);
        w.string("tokenizer.ggml.tokens");
        w.u32(9);
        w.u32(elem);
        w.u64(count);
        assert!(
            matches!(parse_err(&w.out), GgufError::ArrayTooLong { len, .. } if len == count),
            "{elem}"
        );
    }
    // Fixed-size elements: the byte budget refuses them, however the product comes out.
    for count in [1u64 << 40, u64::MAX] {
        let mut w = Writer::new(3, 0, 1);
        w.string("tokenizer.ggml.scores");
        w.u32(9);
        w.u32(6);
        w.u64(count);
        let err = parse_err(&w.out);
        assert!(
            matches!(
                err,
                GgufError::HeaderTooLarge | GgufError::ArrayTooLong { .. }
            ),
            "{err}"
        );
    }
    // A kept per-layer array over the limit.
    let mut w = Writer::new(3, 0, 1);
    w.string("llama.feed_forward_length");
    w.u32(9);
    w.u32(4);
    w.u64(gguf::MAX_ARRAY_LEN + 1);
    assert!(matches!(parse_err(&w.out), GgufError::ArrayTooLong { .. }));
}

#[test]
fn huge_counts_and_shapes_are_refused() {
    let w = Writer::new(3, gguf::MAX_TENSORS + 1, 0);
    assert!(matches!(parse_err(&w.out), GgufError::TooManyTensors(_)));
    let w = Writer::new(3, 0, u64::MAX);
    assert!(matches!(
        parse_err(&w.out),
        GgufError::TooManyMetadataPairs(_)
    ));

    let mut w = Writer::new(3, 1, 0);
    w.string("t");
    w.u32(100);
    assert!(matches!(
        parse_err(&w.out),
        GgufError::TooManyDims {
            index: 0,
            n_dims: 100
        }
    ));

    let mut w = Writer::new(3, 1, 0);
    w.tensor("t", &[1 << 32, 1 << 32], 0, 0);
    assert!(matches!(
        parse_err(&w.out),
        GgufError::ParameterOverflow { index: 0 }
    ));

    let mut w = Writer::new(3, 2, 0);
    w.tensor("a", &[1 << 63], 0, 0);
    w.tensor("b", &[1 << 63], 0, 0);
    assert!(matches!(
        parse_err(&w.out),
        GgufError::ParameterOverflow { index: 1 }
    ));

    let mut w = Writer::new(3, 0, 1);
    w.string("k");
    w.u32(13);
    assert!(matches!(
        parse_err(&w.out),
        GgufError::BadValueType { value_type: 13, .. }
    ));
}

#[test]
fn deeply_nested_arrays_are_refused() {
    let mut w = Writer::new(3, 0, 1);
    w.string("k");
    w.u32(9);
    for _ in 0..1000 {
        w.u32(9);
        w.u64(1);
    }
    assert!(matches!(
        parse_err(&w.out),
        GgufError::NestingTooDeep { .. }
    ));
}

#[test]
fn errors_explain_themselves() {
    let err = parse_err(b"GGUF\x04\0\0\0");
    assert_eq!(err.to_string(), "unsupported GGUF version 4");
    let err = parse_err(b"GGUF\x03\0\0");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn grouping_is_exposed() {
    let paths: Vec<PathBuf> = [
        "/m/a-00001-of-00002.gguf",
        "/m/a-00002-of-00002.gguf",
        "/m/mmproj-a.gguf",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let models = gguf::group_files(&paths);
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].shards.len(), 2);
    assert_eq!(models[0].mmproj, Some(PathBuf::from("/m/mmproj-a.gguf")));
}

#[test]
fn corrupted_bytes_never_panic() {
    // A poor man's fuzzer for machines without cargo-fuzz: overwrite every byte of a valid
    // file with values that turn lengths, counts and type codes hostile.
    for version in [1, 3] {
        let bytes = file(version, &llama_kvs(), LLAMA_TENSORS);
        for at in 0..bytes.len() {
            for value in [0x00, 0x01, 0x09, 0x0D, 0x7F, 0x80, 0xFF] {
                let mut broken = bytes.clone();
                broken[at] = value;
                let _ = gguf::parse(&broken[..]);
            }
        }
    }
}
