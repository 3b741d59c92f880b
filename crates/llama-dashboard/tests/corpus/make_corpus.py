#!/usr/bin/env python3
"""Writes a small GGUF corpus with llama.cpp's own writer (the `gguf` PyPI package) into the
directory given as the first argument, plus `manifest.json` saying what each file holds, so the
Rust tests can check our reader against files made by the reference implementation.

Usage: make_corpus.py OUT [--groups]

Without `--groups` it writes four single-file models, one manifest entry each (no `kind` key).
With `--groups` it also writes files that must be grouped into models:
- a llama model split by the writer into 3 shards named the way llama.cpp names them
  (`llama-split-Q8_0-00001-of-00003.gguf` …), next to the four single files; one manifest entry
  per shard with `kind: "shard"`, this shard's `split_no`, `tensor_count` and `parameter_count`,
  and the whole model's `model_tensor_count` and `model_parameter_count`;
- in `vision/`, a single-file model (an ordinary entry) and its `mmproj-*.gguf` projector (arch
  `clip`), whose entry has `kind: "mmproj"` and `model`: the file it belongs with.
"""

import json
import os
import sys

import gguf
import numpy as np

out = sys.argv[1]
groups = "--groups" in sys.argv[2:]
os.makedirs(out, exist_ok=True)
manifest = []


def model(file_name, arch, ftype, *, ctx, embd, blocks, heads, heads_kv, ffn, vocab, template, name,
          split_max_tensors=0):
    path = os.path.join(out, file_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
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
    # The writer's shard plan (one dict of tensor infos per file), taken before writing empties it.
    plan = [[(tname, int(np.prod(ti.shape))) for tname, ti in shard.items()] for shard in w.tensors]
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    entry = {
        "file": file_name, "architecture": arch, "name": name, "size_label": "tiny",
        "context_length": ctx, "embedding_length": embd, "block_count": blocks,
        "head_count": heads, "head_count_kv": heads_kv, "feed_forward_length": ffn,
        "file_type": int(ftype), "parameter_count": params, "tensor_count": len(tensors),
        "vocab_size": vocab, "has_chat_template": template,
    }
    if len(plan) == 1:
        manifest.append(entry)
        return
    # A split model: the writer named the files `<stem>-%05d-of-%05d.gguf` and put every key but
    # the `split.*` ones into the first shard only.
    stem = file_name[:-len(".gguf")]
    assert sum(len(p) for p in plan) == len(tensors)
    for no, shard in enumerate(plan):
        shard_name = f"{stem}-{no + 1:05d}-of-{len(plan):05d}.gguf"
        assert os.path.exists(os.path.join(out, shard_name)), shard_name
        shard_entry = dict(entry) if no == 0 else {"architecture": None}
        shard_entry.update({
            "file": shard_name, "kind": "shard", "split_no": no, "split_count": len(plan),
            "split_tensors_count": len(tensors), "tensor_count": len(shard),
            "parameter_count": sum(n for _, n in shard), "model_tensor_count": len(tensors),
            "model_parameter_count": params,
        })
        manifest.append(shard_entry)


def projector(file_name, model_file, *, embd, blocks, image_size, patch_size, proj_dim, name):
    """A CLIP vision projector laid out the way llama.cpp's mmproj converters write one."""
    path = os.path.join(out, file_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w = gguf.GGUFWriter(path, "clip")
    w.add_type("mmproj")
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_bool(gguf.Keys.Clip.HAS_VISION_ENCODER, True)
    w.add_string(gguf.Keys.Clip.PROJECTOR_TYPE, "mlp")
    w.add_uint32(gguf.Keys.ClipVision.IMAGE_SIZE, image_size)
    w.add_uint32(gguf.Keys.ClipVision.PATCH_SIZE, patch_size)
    w.add_uint32(gguf.Keys.ClipVision.EMBEDDING_LENGTH, embd)
    w.add_uint32(gguf.Keys.ClipVision.FEED_FORWARD_LENGTH, 4 * embd)
    w.add_uint32(gguf.Keys.ClipVision.PROJECTION_DIM, proj_dim)
    w.add_uint32(gguf.Keys.ClipVision.BLOCK_COUNT, blocks)
    w.add_uint32(gguf.Keys.ClipVision.Attention.HEAD_COUNT, 2)
    w.add_float32(gguf.Keys.ClipVision.Attention.LAYERNORM_EPS, 1e-6)
    patches = (image_size // patch_size) ** 2
    tensors = [
        ("v.patch_embd.weight", (embd, 3, patch_size, patch_size)),
        ("v.position_embd.weight", (patches + 1, embd)),
        ("v.class_embd", (embd,)),
    ]
    for b in range(blocks):
        tensors.append((f"v.blk.{b}.attn_q.weight", (embd, embd)))
        tensors.append((f"v.blk.{b}.ffn_up.weight", (4 * embd, embd)))
    tensors.append(("mm.0.weight", (proj_dim, embd)))
    tensors.append(("mm.2.weight", (proj_dim, proj_dim)))
    for tname, shape in tensors:
        w.add_tensor(tname, np.zeros(shape, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    manifest.append({
        "file": file_name, "kind": "mmproj", "model": model_file, "architecture": "clip",
        "name": name, "file_type": int(gguf.LlamaFileType.MOSTLY_F16),
        "tensor_count": len(tensors), "parameter_count": sum(int(np.prod(s)) for _, s in tensors),
        "vocab_size": None, "context_length": None, "block_count": None,
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

if groups:
    # 1 + 2 * 4 = 9 tensors, at most 3 per file: 3 shards.
    model("llama-split-Q8_0.gguf", "llama", F.MOSTLY_Q8_0, ctx=4096, embd=48, blocks=4, heads=4,
          heads_kv=2, ffn=112, vocab=200, template=True, name="Llama Split", split_max_tensors=3)
    model("vision/llava-tiny.Q4_0.gguf", "llama", F.MOSTLY_Q4_0, ctx=4096, embd=32, blocks=2,
          heads=4, heads_kv=4, ffn=64, vocab=150, template=True, name="Llava Tiny")
    projector("vision/mmproj-llava-tiny-f16.gguf", "vision/llava-tiny.Q4_0.gguf", embd=32,
              blocks=2, image_size=64, patch_size=16, proj_dim=32, name="Llava Tiny Projector")

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
