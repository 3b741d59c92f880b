//! Our reader against files written by llama.cpp's own writer (the `gguf` PyPI package, which
//! `.ci/run` installs): `tests/corpus/make_corpus.py` writes several architectures and file types
//! and a manifest of what each holds, and every field we surface must match it. With `--groups`
//! the script also writes a model split into 3 shards by the writer and a model with its
//! `mmproj` projector, so grouping, shard headers and the scanner are checked on real files too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use llama_dashboard::db::{TOOL, models};
use llama_dashboard::gguf::{GgufInfo, group_files, quantization_name, read_header};
use llama_dashboard::scan::{find_gguf_files, scan};
use serde_json::Value;
use store::{OpenConfig, Store};

/// Writes the corpus (with the split and projector files) into a fresh tempdir.
fn corpus() -> (tempfile::TempDir, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/make_corpus.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .arg("--groups")
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
    (dir, manifest)
}

fn of_kind<'a>(manifest: &'a [Value], kind: &str) -> Vec<&'a Value> {
    manifest
        .iter()
        .filter(|e| e["kind"].as_str() == Some(kind))
        .collect()
}

fn file(dir: &Path, entry: &Value) -> PathBuf {
    dir.join(entry["file"].as_str().unwrap())
}

/// Every key of `expected` that names a [`GgufInfo`] field must match that field (JSON `null`
/// meaning `None`); returns how many were compared so callers can insist on a minimum.
fn assert_fields(info: &GgufInfo, expected: &Value) -> usize {
    let got = serde_json::to_value(info).unwrap();
    let file = expected["file"].as_str().unwrap();
    let mut compared = 0;
    for (key, want) in expected.as_object().unwrap() {
        if let Some(have) = got.get(key) {
            assert_eq!(have, want, "{file}: {key}");
            compared += 1;
        }
    }
    compared
}

#[test]
fn files_written_by_the_reference_writer_read_back_exactly() {
    let (dir, manifest) = corpus();
    let plain: Vec<&Value> = manifest
        .iter()
        .filter(|e| e.get("kind").is_none())
        .collect();
    // The four original single-file models and the vision model.
    assert_eq!(plain.len(), 5);
    for expected in plain {
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
        assert_eq!((info.split_no, info.split_count), (None, None), "{file}");
        // The file name carries the label llama.cpp's tools give that file type.
        let label = file.split('.').nth(1).unwrap();
        assert_eq!(info.quantization.as_deref(), Some(label), "{file}");
        assert_eq!(quantization_name(info.file_type.unwrap()), Some(label));
    }
}

#[test]
fn split_shards_and_projector_group_into_models() {
    let (dir, manifest) = corpus();
    let shards = of_kind(&manifest, "shard");
    let projectors = of_kind(&manifest, "mmproj");
    assert_eq!((shards.len(), projectors.len()), (3, 1));

    let found = find_gguf_files(dir.path()).unwrap();
    assert_eq!(found.len(), 9);
    let models = group_files(&found);
    // 4 single files and the split model at the top, the vision model below it.
    assert_eq!(models.len(), 6, "{models:#?}");

    let split = models
        .iter()
        .find(|m| m.primary == file(dir.path(), shards[0]))
        .expect("the first shard is the split model's primary file");
    let in_order: Vec<PathBuf> = shards.iter().map(|e| file(dir.path(), e)).collect();
    assert_eq!(split.shards, in_order);
    assert_eq!(split.shard_count, 3);
    assert!(split.missing_shards.is_empty());
    // Five models share the top directory, so a projector there would not attach; none is.
    assert_eq!(split.mmproj, None);
    for later in &shards[1..] {
        let path = file(dir.path(), later);
        assert!(models.iter().all(|m| m.primary != path), "{path:?}");
    }

    let mmproj = file(dir.path(), projectors[0]);
    let owner = dir.path().join(projectors[0]["model"].as_str().unwrap());
    let vision = models.iter().find(|m| m.primary == owner).unwrap();
    assert_eq!(vision.mmproj.as_ref(), Some(&mmproj));
    assert_eq!((vision.shard_count, vision.shards.len()), (1, 1));
    assert!(models.iter().all(|m| !m.shards.contains(&mmproj)));
    assert_eq!(
        models.iter().filter(|m| m.mmproj.is_some()).count(),
        1,
        "only the vision model has a projector"
    );
}

#[test]
fn shard_headers_read_back_as_the_writer_split_them() {
    let (dir, manifest) = corpus();
    let shards = of_kind(&manifest, "shard");
    let mut summed_params = 0;
    let mut summed_tensors = 0;
    for (no, expected) in shards.iter().enumerate() {
        let info = read_header(&file(dir.path(), expected)).unwrap();
        // The first shard carries all the model's metadata; the writer gives later shards
        // only the `split.*` keys, so they have no architecture.
        let minimum = if no == 0 { 16 } else { 5 };
        assert!(assert_fields(&info, expected) >= minimum, "{expected}");
        assert_eq!(info.split_no, Some(u32::try_from(no).unwrap()));
        assert_eq!(info.split_count, Some(3));
        summed_params += info.parameter_count;
        summed_tensors += info.tensor_count;
    }
    // `GgufInfo::parameter_count` promises this shard's tensors only; the model's count is
    // the sum over its shards, which a caller gets by reading each shard.
    let first = read_header(&file(dir.path(), shards[0])).unwrap();
    assert_eq!(first.architecture.as_deref(), Some("llama"));
    assert!(first.parameter_count < shards[0]["model_parameter_count"].as_u64().unwrap());
    assert_eq!(
        Some(summed_params),
        shards[0]["model_parameter_count"].as_u64()
    );
    assert_eq!(
        Some(summed_tensors),
        shards[0]["model_tensor_count"].as_u64()
    );

    let projector = of_kind(&manifest, "mmproj")[0];
    let info = read_header(&file(dir.path(), projector)).unwrap();
    assert!(assert_fields(&info, projector) >= 8, "{projector}");
    assert_eq!(info.quantization.as_deref(), Some("F16"));
}

#[test]
fn scan_lists_the_split_model_once_and_the_projector_not_at_all() {
    let (dir, manifest) = corpus();
    let shards = of_kind(&manifest, "shard");
    let db = tempfile::tempdir().unwrap();
    let mut config = OpenConfig::for_path(&TOOL, db.path().join("db.sqlite"));
    config.allow_unsupported_fs = true;
    let store = Store::open(&TOOL, &config).unwrap();
    let run = || {
        store
            .write(|tx| Ok::<_, store::Error>(scan(tx, dir.path(), |_, _| ())))
            .unwrap()
            .unwrap()
    };

    let first = run();
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(
        (first.files, first.models, first.added, first.unchanged),
        (9, 6, 6, 0)
    );
    let rows = store
        .read(|c| models::get_all(c).map_err(store::Error::Query))
        .unwrap();
    assert_eq!(rows.len(), 6);
    let path_of = |m: &models::Model| m.model_path.clone().unwrap_or_default();

    let split: Vec<&models::Model> = rows
        .iter()
        .filter(|m| path_of(m).contains("llama-split-Q8_0"))
        .collect();
    assert_eq!(split.len(), 1, "{split:#?}");
    let split = split[0];
    assert_eq!(
        PathBuf::from(path_of(split)),
        file(dir.path(), shards[0]),
        "the row points at shard 1"
    );
    assert_eq!(split.kind, "llama");
    assert_eq!(split.block_count, 4);
    let total: u64 = shards
        .iter()
        .map(|e| std::fs::metadata(file(dir.path(), e)).unwrap().len())
        .sum();
    assert_eq!(split.file_size, Some(i64::try_from(total).unwrap()));
    assert_eq!(
        split.name, "llama-split-Q8_0.gguf",
        "named without the shard suffix"
    );
    let params: Value = serde_json::from_str(split.params.as_deref().unwrap()).unwrap();
    assert_eq!(
        params["parameter_count"], shards[0]["model_parameter_count"],
        "the parameter count covers every shard"
    );
    assert_eq!(params["shard_count"], 3);
    let vision = rows
        .iter()
        .find(|m| m.name.starts_with("llava-tiny"))
        .unwrap();
    let vision_params: Value = serde_json::from_str(vision.params.as_deref().unwrap()).unwrap();
    assert!(
        vision_params["mmproj"]
            .as_str()
            .unwrap()
            .ends_with("mmproj-llava-tiny-f16.gguf"),
        "{vision_params}"
    );

    assert!(
        rows.iter()
            .all(|m| !path_of(m).contains("mmproj") && !m.name.contains("mmproj")),
        "{rows:#?}"
    );

    // Nothing changed: nothing is read again.
    let second = run();
    assert_eq!((second.added, second.updated, second.unchanged), (0, 0, 6));
}
