#!/usr/bin/env python3
"""Input files and the Python side of `benches/gguf.rs`, which compares our GGUF header reader
with llama.cpp's own Python tooling (the `gguf` PyPI package).

    make_bench_files.py write OUT
        Writes, with the reference writer (`gguf.GGUFWriter`):
        - OUT/vocab260k-llama-Q4_K_M.gguf: a header the size of a modern model's, with a
          260,000-token vocabulary (tokens of varying length, scores, token types) and the
          tensor table of a 24-block llama (219 tensors, Q4_K/Q6_K/F32 shapes as llama.cpp's
          quantizer lays them out). The tensor data section has its full length but is never
          written: the file is sparse, so it costs no disk space and no write time;
        - OUT/seed.gguf: a small complete model the benchmark copies 1,000 times for the rescan;
        - OUT/corpus/: the test corpus of tests/corpus/make_corpus.py (ordinary small models).
        Prints a JSON object naming the files.

    make_bench_files.py time RUNS BUDGET_S FILE...
        Times `gguf.GGUFReader(FILE)` (what llama.cpp's Python tools use to read a model) RUNS
        times per file within one interpreter, so interpreter start and imports are excluded;
        a first read under a second is a discarded warm-up; stops early, after at least 3
        runs, once a file has used BUDGET_S seconds. Prints
        {"gguf_version": ..., "files": {FILE: [seconds per run, ...]}} as JSON.
"""

import json
import os
import random
import subprocess
import sys
import time

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def realistic_tokens(n, seed=260):
    """`n` distinct token strings shaped like a large BPE vocabulary: the 256 byte tokens,
    special tokens, then word pieces of 1 to ~20 characters, many with a leading-space marker."""
    rng = random.Random(seed)
    tokens = [f"<0x{b:02X}>" for b in range(256)]
    tokens += ["<unk>", "<s>", "</s>", "<|begin_of_text|>", "<|end_of_text|>",
               "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    # Mostly lowercase, some capitals and digits, and multi-byte UTF-8 letters.
    alphabet = letters * 4 + letters.upper() + "0123456789" + "éüßçñøåäöàèìòùâêîôûąćęłńśźż"
    seen = set(tokens)
    while len(tokens) < n:
        length = min(1 + int(rng.expovariate(1 / 5.0)), 24)
        piece = "".join(rng.choice(alphabet) for _ in range(length))
        if rng.random() < 0.55:
            piece = "\u0120" + piece  # "Ġ": GPT-2 byte-level BPE's leading space
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
    return tokens


def write_big(path, vocab=260_000, blocks=24, embd=2048, ffn=8192, heads=32, heads_kv=8):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("Bench Llama 260k-vocab")
    w.add_size_label("2.5B")
    w.add_context_length(131072)
    w.add_embedding_length(embd)
    w.add_block_count(blocks)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(heads_kv)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(embd // heads)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    tokens = realistic_tokens(vocab)
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(vocab)])
    types = [gguf.TokenType.NORMAL] * vocab
    for i in range(256):
        types[i] = gguf.TokenType.BYTE
    for i in range(256, 264):
        types[i] = gguf.TokenType.CONTROL
    w.add_token_types(types)
    w.add_bos_token_id(259)
    w.add_eos_token_id(260)
    w.add_chat_template(
        "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
        "\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
    )

    Q = gguf.GGMLQuantizationType
    kv_dim = embd // heads * heads_kv
    tensors = [("token_embd.weight", (vocab, embd), Q.Q6_K)]
    for b in range(blocks):
        tensors += [
            (f"blk.{b}.attn_norm.weight", (embd,), Q.F32),
            (f"blk.{b}.attn_q.weight", (embd, embd), Q.Q4_K),
            (f"blk.{b}.attn_k.weight", (kv_dim, embd), Q.Q4_K),
            (f"blk.{b}.attn_v.weight", (kv_dim, embd), Q.Q6_K),
            (f"blk.{b}.attn_output.weight", (embd, embd), Q.Q4_K),
            (f"blk.{b}.ffn_norm.weight", (embd,), Q.F32),
            (f"blk.{b}.ffn_gate.weight", (ffn, embd), Q.Q4_K),
            (f"blk.{b}.ffn_up.weight", (ffn, embd), Q.Q4_K),
            (f"blk.{b}.ffn_down.weight", (embd, ffn), Q.Q6_K),
        ]
    tensors += [("output_norm.weight", (embd,), Q.F32), ("output.weight", (vocab, embd), Q.Q6_K)]
    data = 0
    params = 0
    for name, shape, qtype in tensors:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        elements = int(np.prod(shape))
        assert shape[-1] % block == 0, name
        nbytes = elements // block * size
        # With a raw dtype and a non-uint8 numpy dtype the writer takes the shape as elements.
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        data += gguf.GGUFWriter.ggml_pad(nbytes, w.data_alignment)
        params += elements
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    # The data section: aligned after the tensor infos, its full length, left as a hole.
    header = os.path.getsize(path)
    start = gguf.GGUFWriter.ggml_pad(header, w.data_alignment)
    os.truncate(path, start + data)
    return {"path": path, "header_bytes": start, "vocab": vocab, "tensors": len(tensors),
            "parameters": params}


def write_seed(path):
    """A small but complete model: the file the rescan benchmark copies 1,000 times."""
    vocab, embd, blocks, ffn = 512, 64, 2, 128
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("Rescan Seed")
    w.add_size_label("tiny")
    w.add_context_length(4096)
    w.add_embedding_length(embd)
    w.add_block_count(blocks)
    w.add_feed_forward_length(ffn)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    w.add_tokenizer_model("llama")
    w.add_token_list(realistic_tokens(vocab, seed=1))
    w.add_token_scores([0.0] * vocab)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tensor("token_embd.weight", np.zeros((vocab, 8), dtype=np.float16))
    for b in range(blocks):
        w.add_tensor(f"blk.{b}.attn_q.weight", np.zeros((8, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"path": path}


def write(out):
    os.makedirs(out, exist_ok=True)
    big = write_big(os.path.join(out, "vocab260k-llama-Q4_K_M.gguf"))
    seed = write_seed(os.path.join(out, "seed.gguf"))
    corpus = os.path.join(out, "corpus")
    subprocess.run([sys.executable, os.path.join(HERE, "..", "tests", "corpus", "make_corpus.py"),
                    corpus], check=True)
    print(json.dumps({"big": big, "seed": seed, "corpus": corpus}))


def timing(runs, budget, files):
    result = {}
    for path in files:
        times = []
        spent = 0.0
        warmed_up = False
        while len(times) < runs and (len(times) < 3 or spent < budget):
            start = time.perf_counter()
            reader = gguf.GGUFReader(path)
            elapsed = time.perf_counter() - start
            assert len(reader.tensors) > 0
            del reader
            if not warmed_up:
                warmed_up = True
                if elapsed < 1.0:
                    # A cheap first read is a warm-up (page cache, numpy's first calls), as on
                    # the Rust side; a slow one is kept: repeating it would cost as much again.
                    continue
            times.append(elapsed)
            spent += elapsed
        result[path] = times
    version = getattr(gguf, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version
            version = dist_version("gguf")
        except Exception:  # noqa: BLE001 - the version is only a label
            version = "unknown"
    print(json.dumps({"gguf_version": version, "files": result}))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "write":
        write(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "time":
        timing(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit(__doc__)
