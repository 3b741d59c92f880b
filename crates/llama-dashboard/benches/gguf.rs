//! Benchmark of the two things that make the model catalog feel instant or sluggish:
//!
//! 1. Reading one GGUF header: our bounded reader ([`gguf::read_header`]) next to
//!    `gguf.GGUFReader`, the reader of llama.cpp's own Python tooling, on the same files: a
//!    header with a 260,000-token vocabulary and a 24-block llama tensor table (the sizes of a
//!    modern model, data section sparse), and ordinary small corpus files. Target: under 5 ms
//!    for the 260k-vocabulary header.
//! 2. Rescanning a models folder of 1,000 unchanged files into a real store database, next to a
//!    cold scan of the same folder and a bare walk + `stat` of its files as the floor. Target:
//!    under 200 ms for the rescan.
//!
//! Input files come from `benches/make_bench_files.py` (llama.cpp's reference writer, the `gguf`
//! PyPI package). Without python3 or `gguf` the Python column is skipped and the files are
//! written by a small GGUF writer here instead, with the same layout. Run with
//! `cargo bench -p llama-dashboard --bench gguf` (or `scripts/bench-llama-dashboard.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use llama_dashboard::db::TOOL;
use llama_dashboard::gguf::{self, GgufInfo};
use llama_dashboard::scan::{self, ScanReport};
use store::{OpenConfig, Store};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/make_bench_files.py");
/// Runs of our parser per file (at least 50, as the percentiles need).
const OUR_RUNS: usize = 200;
/// Runs of the Python reader per file, and the seconds after which it may stop at 3 runs.
const PY_RUNS: usize = 10;
const PY_BUDGET_S: f64 = 15.0;
const RESCAN_FILES: usize = 1_000;
const RESCAN_RUNS: usize = 20;
const COLD_RUNS: usize = 3;
const HEADER_TARGET: Duration = Duration::from_millis(5);
const RESCAN_TARGET: Duration = Duration::from_millis(200);

/// The files the benchmark reads, and who wrote them.
struct Inputs {
    /// The 260k-vocabulary header.
    big: PathBuf,
    /// Ordinary small models.
    ordinary: Vec<PathBuf>,
    /// The small file copied 1,000 times for the rescan.
    seed: PathBuf,
    /// Whether `gguf` (the reference writer and reader) is available.
    python: bool,
}

/// Whether python3 with `gguf` and numpy is usable; `LLAMA_DASHBOARD_BENCH_NO_PYTHON=1` says no,
/// to try the fallback path on a machine that has them.
fn python_has_gguf() -> bool {
    if std::env::var_os("LLAMA_DASHBOARD_BENCH_NO_PYTHON").is_some_and(|v| v == "1") {
        return false;
    }
    Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn make_inputs(dir: &Path) -> Inputs {
    let python = python_has_gguf();
    if python {
        let out = Command::new("python3")
            .arg(SCRIPT)
            .arg("write")
            .arg(dir)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "make_bench_files.py write failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let corpus = dir.join("corpus");
        return Inputs {
            big: dir.join("vocab260k-llama-Q4_K_M.gguf"),
            ordinary: vec![
                corpus.join("llama-tiny.Q4_K_M.gguf"),
                corpus.join("qwen2-tiny.Q8_0.gguf"),
            ],
            seed: dir.join("seed.gguf"),
            python,
        };
    }
    println!(
        "python3 with the `gguf` package not found: the Python column is skipped and the input \
         files are written by this benchmark's own GGUF writer (same layout)."
    );
    let big = dir.join("vocab260k-llama-Q4_K_M.gguf");
    fallback::write_model(&big, 260_000, 24, 2048, 8192, true);
    let seed = dir.join("seed.gguf");
    fallback::write_model(&seed, 512, 2, 16, 32, false);
    let small = dir.join("llama-small.gguf");
    fallback::write_model(&small, 4_096, 4, 64, 128, false);
    Inputs {
        big,
        ordinary: vec![small],
        seed,
        python,
    }
}

/// Median and 99th percentile (nearest rank; the maximum below 100 samples).
fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let n = samples.len();
    let rank = (n * 99).div_ceil(100).max(1);
    (samples[n / 2], samples[rank - 1])
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

fn time_ours(path: &Path) -> (GgufInfo, Vec<Duration>) {
    // Warm-up: page cache and allocator, as the Python side's discarded first read.
    let info = gguf::read_header(path).expect("our reader reads the bench file");
    let samples = (0..OUR_RUNS)
        .map(|_| {
            let start = Instant::now();
            let parsed = gguf::read_header(path).expect("our reader reads the bench file");
            let elapsed = start.elapsed();
            std::hint::black_box(parsed);
            elapsed
        })
        .collect();
    (info, samples)
}

/// The Python reader's run times per file, and the `gguf` version.
fn time_python(files: &[&PathBuf]) -> Option<(String, BTreeMap<PathBuf, Vec<Duration>>)> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg("time")
        .arg(PY_RUNS.to_string())
        .arg(PY_BUDGET_S.to_string())
        .args(files)
        .output()
        .ok()?;
    if !out.status.success() {
        println!(
            "the Python timing failed, its column is skipped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let version = json["gguf_version"].as_str().unwrap_or("?").to_owned();
    let mut times = BTreeMap::new();
    for (file, runs) in json["files"].as_object()? {
        let runs = runs
            .as_array()?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .map(Duration::from_secs_f64)
            .collect();
        times.insert(PathBuf::from(file), runs);
    }
    Some((version, times))
}

fn header_parse(inputs: &Inputs) {
    let files: Vec<&PathBuf> = std::iter::once(&inputs.big)
        .chain(&inputs.ordinary)
        .collect();
    let ours: Vec<(GgufInfo, Vec<Duration>)> = files.iter().map(|f| time_ours(f)).collect();
    let python = if inputs.python {
        println!(
            "timing gguf.GGUFReader (up to {PY_RUNS} runs per file, at least 3; about 10 s a run \
             on the 260k-vocabulary file) ..."
        );
        time_python(&files)
    } else {
        None
    };

    println!();
    match &python {
        Some((version, _)) => println!(
            "1. GGUF header parse: ours (gguf::read_header) vs gguf-py {version} \
             gguf.GGUFReader, same files"
        ),
        None => println!("1. GGUF header parse: ours (gguf::read_header); Python column skipped"),
    }
    println!(
        "{:<30} {:>10} {:>7} {:>7} | {:>10} {:>10} {:>4} | {:>10} {:>10} {:>4} | {:>8}",
        "file",
        "size",
        "vocab",
        "tensors",
        "ours med",
        "ours p99",
        "runs",
        "py med",
        "py p99",
        "runs",
        "py/ours"
    );
    for (path, (info, samples)) in files.iter().zip(ours) {
        let mut samples = samples;
        let (med, p99) = stats(&mut samples);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let vocab = info.vocab_size.map_or("-".into(), |v| v.to_string());
        let py = python
            .as_ref()
            .and_then(|(_, t)| t.get(path.as_path()))
            .filter(|t| !t.is_empty())
            .map(|t| {
                let mut t = t.clone();
                let n = t.len();
                let (pmed, pp99) = stats(&mut t);
                (pmed, pp99, n)
            });
        let (py_med, py_p99, py_runs, ratio) = match py {
            Some((pmed, pp99, n)) => (
                ms(pmed),
                ms(pp99),
                n.to_string(),
                format!("{:.0}x", pmed.as_secs_f64() / med.as_secs_f64()),
            ),
            None => ("skipped".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<30} {:>10} {:>7} {:>7} | {:>10} {:>10} {:>4} | {:>10} {:>10} {:>4} | {:>8}",
            name,
            bytes(size),
            vocab,
            info.tensor_count,
            ms(med),
            ms(p99),
            samples.len(),
            py_med,
            py_p99,
            py_runs,
            ratio
        );
        if path.as_path() == inputs.big {
            println!(
                "   target: 260k-vocabulary header under {} -> median {} ({})",
                ms(HEADER_TARGET),
                ms(med),
                if med < HEADER_TARGET {
                    "met"
                } else {
                    "NOT met"
                }
            );
        }
    }
    println!(
        "   (sizes are logical; the 260k file's data section is sparse; p99 of fewer than 100 runs is their maximum)"
    );
}

/// Prints one row of the rescan table; returns the median.
fn row(label: &str, samples: &mut [Duration]) -> Duration {
    let n = samples.len();
    let (med, p99) = stats(samples);
    println!("{label:<44} {:>10} {:>10} {n:>5}", ms(med), ms(p99));
    med
}

/// Copies `seed` to `count` distinct names in nested folders below `root`.
fn make_models_folder(seed: &Path, root: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let dir = root
                .join(format!("family-{:02}", i / 100))
                .join(format!("variant-{:02}", (i / 10) % 10));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("model-{i:04}.Q4_K_M.gguf"));
            std::fs::copy(seed, &path).unwrap();
            path
        })
        .collect()
}

fn open_store(path: &Path) -> Store {
    let mut config = OpenConfig::for_path(&TOOL, path.to_path_buf());
    config.allow_unsupported_fs = true;
    Store::open(&TOOL, &config).expect("the store opens")
}

fn run_scan(store: &Store, root: &Path) -> (ScanReport, Duration) {
    let start = Instant::now();
    let report = store
        .write(|tx| Ok::<_, store::Error>(scan::scan(tx, root, |_, _| ())))
        .expect("the scan transaction commits")
        .expect("the scan runs");
    (report, start.elapsed())
}

fn rescan(inputs: &Inputs, dir: &Path) {
    let root = dir.join("models");
    let start = Instant::now();
    let files = make_models_folder(&inputs.seed, &root, RESCAN_FILES);
    let copy_time = start.elapsed();
    let seed_size = std::fs::metadata(&inputs.seed)
        .map(|m| m.len())
        .unwrap_or(0);

    // Floor: what any rescan must do, walk the tree and stat every file.
    let mut walk: Vec<Duration> = (0..RESCAN_RUNS)
        .map(|_| {
            let start = Instant::now();
            let found = scan::find_gguf_files(&root).expect("the folder walks");
            let total: u64 = found
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            let elapsed = start.elapsed();
            assert_eq!(found.len(), files.len());
            std::hint::black_box(total);
            elapsed
        })
        .collect();

    // Cold: an empty catalog, every header read and every row inserted.
    let mut cold = Vec::new();
    let mut store = None;
    for i in 0..COLD_RUNS {
        let fresh = open_store(&dir.join(format!("catalog-{i}.sqlite")));
        let (report, elapsed) = run_scan(&fresh, &root);
        assert_eq!((report.added, report.failed.len()), (RESCAN_FILES, 0));
        cold.push(elapsed);
        store = Some(fresh);
    }
    let store = store.expect("at least one cold scan");

    // Warm: nothing changed, nothing read again.
    let mut warm: Vec<Duration> = (0..RESCAN_RUNS)
        .map(|_| {
            let (report, elapsed) = run_scan(&store, &root);
            assert_eq!(report.unchanged, RESCAN_FILES, "{report:?}");
            elapsed
        })
        .collect();

    println!();
    println!(
        "2. Rescan of {RESCAN_FILES} unchanged files ({} each, 10x10 nested folders, copied in {}), \
         store database in a tempdir",
        bytes(seed_size),
        ms(copy_time)
    );
    println!(
        "{:<44} {:>10} {:>10} {:>5}",
        "step", "median", "p99/max", "runs"
    );
    row("baseline: find_gguf_files + fs::metadata", &mut walk);
    row("cold scan (empty catalog, fresh database)", &mut cold);
    let warm_med = row("rescan (all unchanged)", &mut warm);
    println!(
        "   target: rescan under {} -> median {} ({})",
        ms(RESCAN_TARGET),
        ms(warm_med),
        if warm_med < RESCAN_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn main() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a tempdir");
    let inputs = make_inputs(dir.path());
    println!(
        "input files written in {} ({})",
        ms(started.elapsed()),
        if inputs.python {
            "by gguf.GGUFWriter via benches/make_bench_files.py"
        } else {
            "by the fallback writer"
        }
    );
    header_parse(&inputs);
    rescan(&inputs, dir.path());
    println!();
    println!("total {}", ms(started.elapsed()));
}

/// A minimal GGUF v3 writer, used only when the reference writer is not installed, producing
/// the same layout as `make_bench_files.py`: llama metadata, a tokenizer with tokens, scores
/// and types, a 24-block-style tensor table, and a sparse data section.
mod fallback {
    use std::fs::File;
    use std::io::Write;
    use std::path::Path;

    const ALIGN: u64 = 32;
    const F32: u32 = 0;
    const F16: u32 = 1;
    const Q4_K: u32 = 12;
    const Q6_K: u32 = 14;

    #[derive(Default)]
    struct Header {
        kv: Vec<u8>,
        kv_count: u64,
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    impl Header {
        fn key(&mut self, key: &str, ty: u32) {
            string(&mut self.kv, key);
            self.kv.extend_from_slice(&ty.to_le_bytes());
            self.kv_count += 1;
        }
        fn text(&mut self, key: &str, value: &str) {
            self.key(key, 8);
            string(&mut self.kv, value);
        }
        fn u32(&mut self, key: &str, value: u32) {
            self.key(key, 4);
            self.kv.extend_from_slice(&value.to_le_bytes());
        }
        fn array(&mut self, key: &str, elem: u32, count: usize) {
            self.key(key, 9);
            self.kv.extend_from_slice(&elem.to_le_bytes());
            self.kv.extend_from_slice(&(count as u64).to_le_bytes());
        }
    }

    /// Token strings of 1 to 24 characters from a fixed xorshift sequence.
    fn tokens(n: usize) -> Vec<String> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let letters = b"etaoinshrdlcumwfgypbvkjxqzETAOIN0123456789";
        let mut out: Vec<String> = (0..256.min(n)).map(|b| format!("<0x{b:02X}>")).collect();
        while out.len() < n {
            let len = 1 + (next() % 8 + next() % 8 + next() % 9) as usize;
            let mut s = String::with_capacity(len + 2);
            if next() % 2 == 0 {
                s.push('\u{120}');
            }
            for _ in 0..len {
                s.push(char::from(
                    letters[(next() % letters.len() as u64) as usize],
                ));
            }
            out.push(s);
        }
        out
    }

    /// Writes a llama model with `vocab` tokens and `blocks` layers; `quantized` picks the
    /// Q4_K_M layout of a real model (sparse data), else small F16 tensors written out.
    pub fn write_model(
        path: &Path,
        vocab: usize,
        blocks: u64,
        embd: u64,
        ffn: u64,
        quantized: bool,
    ) {
        let mut h = Header::default();
        h.text("general.architecture", "llama");
        h.text("general.name", "Bench Llama");
        h.u32("llama.context_length", 131_072);
        h.u32("llama.embedding_length", embd as u32);
        h.u32("llama.block_count", blocks as u32);
        h.u32("llama.feed_forward_length", ffn as u32);
        h.u32("llama.attention.head_count", 32);
        h.u32("llama.attention.head_count_kv", 8);
        h.u32("general.file_type", 15);
        h.text("tokenizer.ggml.model", "llama");
        let list = tokens(vocab);
        h.array("tokenizer.ggml.tokens", 8, vocab);
        for t in &list {
            string(&mut h.kv, t);
        }
        h.array("tokenizer.ggml.scores", 6, vocab);
        for i in 0..vocab {
            h.kv.extend_from_slice(&(-(i as f32)).to_le_bytes());
        }
        h.array("tokenizer.ggml.token_type", 5, vocab);
        for i in 0..vocab {
            let ty: i32 = if i < 256 { 6 } else { 1 };
            h.kv.extend_from_slice(&ty.to_le_bytes());
        }
        h.text(
            "tokenizer.chat_template",
            "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        );

        let (big, down) = if quantized { (Q4_K, Q6_K) } else { (F16, F16) };
        let kv_dim = embd / 4;
        let vocab = vocab as u64;
        let mut tensors: Vec<(String, Vec<u64>, u32)> =
            vec![("token_embd.weight".into(), vec![vocab, embd], down)];
        for b in 0..blocks {
            let blk = |n: &str| format!("blk.{b}.{n}.weight");
            tensors.extend([
                (blk("attn_norm"), vec![embd], F32),
                (blk("attn_q"), vec![embd, embd], big),
                (blk("attn_k"), vec![kv_dim, embd], big),
                (blk("attn_v"), vec![kv_dim, embd], down),
                (blk("attn_output"), vec![embd, embd], big),
                (blk("ffn_norm"), vec![embd], F32),
                (blk("ffn_gate"), vec![ffn, embd], big),
                (blk("ffn_up"), vec![ffn, embd], big),
                (blk("ffn_down"), vec![embd, ffn], down),
            ]);
        }
        tensors.push(("output_norm.weight".into(), vec![embd], F32));
        tensors.push(("output.weight".into(), vec![vocab, embd], down));

        let mut infos = Vec::new();
        let mut offset = 0u64;
        for (name, shape, ty) in &tensors {
            let elements: u64 = shape.iter().product();
            let nbytes = match *ty {
                Q4_K => elements / 256 * 144,
                Q6_K => elements / 256 * 210,
                F16 => elements * 2,
                _ => elements * 4,
            };
            string(&mut infos, name);
            infos.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for dim in shape.iter().rev() {
                infos.extend_from_slice(&dim.to_le_bytes());
            }
            infos.extend_from_slice(&ty.to_le_bytes());
            infos.extend_from_slice(&offset.to_le_bytes());
            offset += nbytes.div_ceil(ALIGN) * ALIGN;
        }

        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&h.kv_count.to_le_bytes());
        out.extend_from_slice(&h.kv);
        out.extend_from_slice(&infos);
        let start = (out.len() as u64).div_ceil(ALIGN) * ALIGN;
        let mut file = File::create(path).unwrap();
        file.write_all(&out).unwrap();
        // Unquantized (small) models get real zero bytes, quantized ones a sparse hole.
        if quantized {
            file.set_len(start + offset).unwrap();
        } else {
            let pad = usize::try_from(start + offset).unwrap() - out.len();
            file.write_all(&vec![0u8; pad]).unwrap();
        }
    }
}
