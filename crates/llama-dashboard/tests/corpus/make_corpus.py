#!/usr/bin/env python3
"""Writes a small GGUF corpus with llama.cpp's own writer (the `gguf` PyPI package) into the
directory given as the only argument, plus `manifest.json` saying what each file holds, so the
Rust tests can check our reader against files made by the reference implementation."""

import json
import os
import sys

import gguf
import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
manifest = []


def model(file_name, arch, ftype, *, ctx, embd, blocks, heads, heads_kv, ffn, vocab, template, name):
    path = os.path.join(out, file_name)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_size_label("tiny")
    w.add_context_length(ctx)
    w.add_embedding_length(embd)
    w.add_block_count(blocks)
    w.add_head_count(heads)
    w.add_head_count_kv(heads_kv)
    w.add_feed_forward_length(ffn)
    w.add_file_type(ftype)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    if template:
        w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    params = 0
    tensors = [("token_embd.weight", (vocab, embd))]
    for b in range(blocks):
        tensors.append((f"blk.{b}.attn_q.weight", (embd, embd)))
        tensors.append((f"blk.{b}.ffn_up.weight", (ffn, embd)))
    for tname, shape in tensors:
        w.add_tensor(tname, np.zeros(shape, dtype=np.float32))
        params += shape[0] * shape[1]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    manifest.append({
        "file": file_name, "architecture": arch, "name": name, "size_label": "tiny",
        "context_length": ctx, "embedding_length": embd, "block_count": blocks,
        "head_count": heads, "head_count_kv": heads_kv, "feed_forward_length": ffn,
        "file_type": int(ftype), "parameter_count": params, "tensor_count": len(tensors),
        "vocab_size": vocab, "has_chat_template": template,
    })


F = gguf.LlamaFileType
model("llama-tiny.Q4_K_M.gguf", "llama", F.MOSTLY_Q4_K_M, ctx=2048, embd=64, blocks=2, heads=4,
      heads_kv=2, ffn=128, vocab=300, template=True, name="Llama Tiny")
model("qwen2-tiny.Q8_0.gguf", "qwen2", F.MOSTLY_Q8_0, ctx=32768, embd=32, blocks=3, heads=4,
      heads_kv=4, ffn=96, vocab=500, template=True, name="Qwen2 Tiny")
model("gemma-tiny.BF16.gguf", "gemma", F.MOSTLY_BF16, ctx=8192, embd=16, blocks=1, heads=2,
      heads_kv=1, ffn=64, vocab=260, template=False, name="Gemma Tiny")
model("phi3-tiny.IQ4_XS.gguf", "phi3", F.MOSTLY_IQ4_XS, ctx=4096, embd=32, blocks=2, heads=8,
      heads_kv=8, ffn=80, vocab=128, template=False, name="Phi3 Tiny")

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
