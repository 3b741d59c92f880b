//! Our reader against files written by llama.cpp's own writer (the `gguf` PyPI package, which
//! `.ci/run` installs): `tests/corpus/make_corpus.py` writes several architectures and file types
//! and a manifest of what each holds, and every field we surface must match it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use llama_dashboard::gguf::{quantization_name, read_header};
use serde_json::Value;

#[test]
fn files_written_by_the_reference_writer_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/make_corpus.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the corpus script failed (is the `gguf` PyPI package installed? .ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.len(), 4);
    for expected in &manifest {
        let file = expected["file"].as_str().unwrap();
        let info = read_header(&dir.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let u = |k: &str| expected[k].as_u64();
        assert_eq!(info.version, 3, "{file}");
        assert_eq!(
            info.architecture.as_deref(),
            expected["architecture"].as_str(),
            "{file}"
        );
        assert_eq!(info.name.as_deref(), expected["name"].as_str(), "{file}");
        assert_eq!(
            info.size_label.as_deref(),
            expected["size_label"].as_str(),
            "{file}"
        );
        assert_eq!(info.context_length, u("context_length"), "{file}");
        assert_eq!(info.embedding_length, u("embedding_length"), "{file}");
        assert_eq!(info.block_count, u("block_count"), "{file}");
        assert_eq!(info.head_count, u("head_count"), "{file}");
        assert_eq!(info.head_count_kv, u("head_count_kv"), "{file}");
        assert_eq!(info.feed_forward_length, u("feed_forward_length"), "{file}");
        assert_eq!(info.file_type.map(u64::from), u("file_type"), "{file}");
        assert_eq!(Some(info.parameter_count), u("parameter_count"), "{file}");
        assert_eq!(Some(info.tensor_count), u("tensor_count"), "{file}");
        assert_eq!(info.vocab_size, u("vocab_size"), "{file}");
        assert_eq!(
            Some(info.has_chat_template),
            expected["has_chat_template"].as_bool(),
            "{file}"
        );
        // The file name carries the label llama.cpp's tools give that file type.
        let label = file.split('.').nth(1).unwrap();
        assert_eq!(info.quantization.as_deref(), Some(label), "{file}");
        assert_eq!(quantization_name(info.file_type.unwrap()), Some(label));
    }
}
