//! The scanner over a real folder of GGUF files written by llama.cpp's own writer: models are
//! added with their header fields, an unchanged rescan reads nothing, a changed file is read
//! again, a bad file is reported without stopping the scan, and cleanup drops vanished files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use llama_dashboard::db::{TOOL, models};
use llama_dashboard::scan::scan;
use store::{OpenConfig, Store};

#[test]
fn scan_rescan_change_and_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("models");
    let nested = root.join("family/sub");
    std::fs::create_dir_all(&nested).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/make_corpus.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&nested)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(
        nested.join("qwen2-tiny.Q8_0.gguf"),
        root.join("qwen2-tiny.Q8_0.gguf"),
    )
    .unwrap();
    std::fs::write(root.join("broken.gguf"), b"GGUF\x03\x00\x00\x00truncated").unwrap();
    std::fs::write(root.join("notes.txt"), b"not a model").unwrap();

    let mut config = OpenConfig::for_path(&TOOL, dir.path().join("db.sqlite"));
    config.allow_unsupported_fs = true;
    let store = Store::open(&TOOL, &config).unwrap();
    let mut calls = 0;
    let first = store
        .write(|tx| Ok::<_, store::Error>(scan(tx, &root, |_, _| calls += 1)))
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.files, first.models, first.added, first.unchanged),
        (5, 5, 4, 0)
    );
    assert_eq!(first.failed.len(), 1, "{:?}", first.failed);
    assert!(first.failed[0].0.ends_with("broken.gguf"));
    assert_eq!(calls, 5);
    let all = store
        .read(|c| models::get_all(c).map_err(store::Error::Query))
        .unwrap();
    let llama = all
        .iter()
        .find(|m| m.name == "llama-tiny.Q4_K_M.gguf")
        .unwrap();
    assert_eq!(
        (
            llama.kind.as_str(),
            llama.quantization.as_deref(),
            llama.ctx_size,
            llama.block_count,
            llama_dashboard::scan::size_label(llama.params.as_deref())
        ),
        ("llama", Some("Q4_K_M"), 2048, 2, Some("tiny".to_string()))
    );
    // `params` is the documented JSON object of architecture parameters.
    let params: serde_json::Value = serde_json::from_str(llama.params.as_deref().unwrap()).unwrap();
    assert_eq!(params["num_hidden_layers"], 2);
    assert_eq!(params["hidden_size"], llama.embedding_size);
    assert_eq!(params["intermediate_size"], llama.ffn_dim);
    assert_eq!(params["num_attention_heads"], llama.head_count);
    assert!(params["vocab_size"].as_u64().unwrap() > 0);
    assert!(params["parameter_count"].as_u64().unwrap() > 0);
    assert_eq!(
        llama.file_size,
        Some(
            std::fs::metadata(nested.join("llama-tiny.Q4_K_M.gguf"))
                .unwrap()
                .len() as i64
        )
    );

    // Unchanged files are not read again: garble one but keep its size and mtime.
    let victim = nested.join("gemma-tiny.BF16.gguf");
    let meta = std::fs::metadata(&victim).unwrap();
    std::fs::write(&victim, vec![0u8; meta.len() as usize]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    let second = rescan(&store, &root);
    assert_eq!((second.added, second.updated, second.unchanged), (0, 0, 4));

    // A changed file is read again (and this one is now garbage: reported, row kept).
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let third = rescan(&store, &root);
    assert_eq!(third.unchanged, 3);
    assert!(
        third
            .failed
            .iter()
            .any(|(p, _)| p.ends_with("gemma-tiny.BF16.gguf"))
    );

    // Cleanup drops the rows of files that are gone.
    std::fs::remove_file(root.join("qwen2-tiny.Q8_0.gguf")).unwrap();
    let removed = store
        .write(|tx| models::cleanup_missing_files(tx).map_err(store::Error::Query))
        .unwrap();
    assert_eq!(removed, 1);
}

fn rescan(store: &Store, root: &std::path::Path) -> llama_dashboard::scan::ScanReport {
    store
        .write(|tx| Ok::<_, store::Error>(scan(tx, root, |_, _| ())))
        .unwrap()
        .unwrap()
}
