#!/usr/bin/env python3
"""Write a random-weight model with the shapes of a real architecture.

Outputs a Hugging Face directory (config.json + model.safetensors, or shards
model-0000i-of-0000n.safetensors + model.safetensors.index.json above
--shard-mb, + tokenizer.gguf) and/or a GGUF file (llama or qwen2 arch, Q/K rows
permuted for llama as llama.cpp's convert_hf_to_gguf.py does), both holding the
same weights. The tokenizer is copied from a real GGUF (--tokenizer-from); the
vocabulary size is that tokenizer's unless --vocab-size pads it (HF pads its
embedding; the GGUF gets [PADi] tokens as llama.cpp's converter adds).

Weights are drawn so that activations and logits look like a trained model's,
whatever the width: projections N(0, (1.28/sqrt(fan_in))^2) (= std 0.02 at
fan_in 4096, HF's initializer_range for Llama), embeddings and lm_head
N(0, (3/sqrt(hidden))^2) (logits of std ~3), norms 1 + N(0, 0.05^2), biases
N(0, 0.1^2). Each tensor comes from its own stream, seeded by (--seed, crc32 of
its HF name), so every output format and dtype holds the same numbers (rounded
to the dtype) and generation streams tensor by tensor in bounded memory.

Only numpy is needed: safetensors and GGUF files are written directly (the
`safetensors` and `gguf` packages read them back identically). On a machine
without the source GGUF, --tokenizer-from can name the 1-4 MB tokenizer.gguf
of an earlier output.

--torch-device DEV (e.g. cuda) draws the tensors with torch on DEV instead
(same distributions, each tensor from a torch.Generator seeded with
seed * 2**32 + crc32 of its name, rounded to the dtype by torch): minutes
faster for an 8B model. Its numbers differ from numpy mode's (but repeat from
run to run on the same kind of device); it writes Hugging Face directories
only (no --gguf). Examples:

  python3 bench/mkmodel.py --shape tiny --out /tmp/tiny --dtype f32 --gguf /tmp/tiny.gguf
  python3 bench/mkmodel.py --shape llama3-8b --out /data/llama3-8b-random   # bf16, sharded
  python3 bench/mkmodel.py --shape llama3-8b --out /tmp/l8b --torch-device cuda --vocab-size real
"""
import argparse
import json
import math
import os
import struct
import sys
import zlib

import numpy as np

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}

# real_vocab: the vocabulary size of the real model (used by --vocab-size real)
PRESETS = {
    "llama3-8b": dict(arch="llama", hidden=4096, ff=14336, heads=32, kv_heads=8, layers=32, rope_theta=500000.0,
                      rope_scaling=LLAMA3_SCALING, max_pos=131072, eps=1e-5, tie=False, real_vocab=128256),
    "llama3.2-1b": dict(arch="llama", hidden=2048, ff=8192, heads=32, kv_heads=8, layers=16, head_dim=64,
                        rope_theta=500000.0, rope_scaling=dict(LLAMA3_SCALING, factor=32.0), max_pos=131072,
                        eps=1e-5, tie=True, real_vocab=128256),
    "smollm2-135m": dict(arch="llama", hidden=576, ff=1536, heads=9, kv_heads=3, layers=30, rope_theta=100000.0,
                         rope_scaling=None, max_pos=8192, eps=1e-5, tie=True, real_vocab=49152),
    "qwen2.5-1.5b": dict(arch="qwen2", hidden=1536, ff=8960, heads=12, kv_heads=2, layers=28, rope_theta=1000000.0,
                         rope_scaling=None, max_pos=32768, eps=1e-6, tie=True, real_vocab=151936),
    # for tests: llama with Llama 3 RoPE scaling and an untied head...
    "tiny": dict(arch="llama", hidden=64, ff=128, heads=4, kv_heads=2, layers=2, rope_theta=500000.0,
                 rope_scaling=LLAMA3_SCALING, max_pos=131072, eps=1e-5, tie=False, real_vocab=None),
    # ... and qwen2 (q/k/v biases) with linear RoPE scaling and a tied head
    "tiny-qwen2": dict(arch="qwen2", hidden=64, ff=128, heads=4, kv_heads=2, layers=2, rope_theta=1000000.0,
                       rope_scaling={"rope_type": "linear", "factor": 2.0}, max_pos=32768, eps=1e-6, tie=True,
                       real_vocab=None),
}

HF_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
DTYPES = {"f32": ("F32", 4), "f16": ("F16", 2), "bf16": ("BF16", 2)}


def tensor_list(p, n_vocab):
    """(HF name, shape, kind, fan_in) for every tensor, in HF order."""
    h, ff, hd = p["hidden"], p["ff"], p["head_dim"]
    q, kv = p["heads"] * hd, p["kv_heads"] * hd
    out = [("model.embed_tokens.weight", (n_vocab, h), "embed", h)]
    for i in range(p["layers"]):
        pre = f"model.layers.{i}."
        out.append((pre + "input_layernorm.weight", (h,), "norm", 0))
        out.append((pre + "self_attn.q_proj.weight", (q, h), "proj", h))
        out.append((pre + "self_attn.k_proj.weight", (kv, h), "proj", h))
        out.append((pre + "self_attn.v_proj.weight", (kv, h), "proj", h))
        if p["arch"] == "qwen2":
            out.append((pre + "self_attn.q_proj.bias", (q,), "bias", 0))
            out.append((pre + "self_attn.k_proj.bias", (kv,), "bias", 0))
            out.append((pre + "self_attn.v_proj.bias", (kv,), "bias", 0))
        out.append((pre + "self_attn.o_proj.weight", (h, q), "proj", q))
        out.append((pre + "post_attention_layernorm.weight", (h,), "norm", 0))
        out.append((pre + "mlp.gate_proj.weight", (ff, h), "proj", h))
        out.append((pre + "mlp.up_proj.weight", (ff, h), "proj", h))
        out.append((pre + "mlp.down_proj.weight", (h, ff), "proj", ff))
    out.append(("model.norm.weight", (h,), "norm", 0))
    if not p["tie"]:
        out.append(("lm_head.weight", (n_vocab, h), "embed", h))
    return out


def init_std(kind, fan_in):
    if kind == "proj":
        return 1.28 / math.sqrt(fan_in)
    if kind == "embed":
        return 3.0 / math.sqrt(fan_in)
    if kind == "norm":
        return 0.05
    return 0.1


def generate(seed, name, shape, kind, fan_in):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    n = int(np.prod(shape))
    std = init_std(kind, fan_in)
    x = rng.standard_normal(n, dtype=np.float32).reshape(shape)
    x *= np.float32(std)
    if kind == "norm":
        x += np.float32(1.0)
    return x


def to_dtype(x, dtype):
    """float32 array -> array whose bytes are the dtype's (bf16 as uint16, round to nearest even)."""
    if dtype == "f32":
        return np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "f16":
        return x.astype(np.float16)
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + (((u >> 16) & 1) + np.uint32(0x7FFF))) >> 16).astype(np.uint16)


def numpy_writer(seed, dtype):
    """f, (name, shape, kind, fan_in) -> writes the tensor's bytes to f."""
    def write(f, name, shape, kind, fan_in):
        to_dtype(generate(seed, name, shape, kind, fan_in), dtype).tofile(f)
    return write


def torch_writer(seed, dtype, device):
    """numpy_writer's counterpart drawing with torch on `device` (a GPU draws and rounds 8e9 values in
    seconds; numpy takes minutes). One tensor is on the device and in host memory at a time."""
    import torch
    tdtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator(device=device)

    def write(f, name, shape, kind, fan_in):
        gen.manual_seed(seed * 2**32 + zlib.crc32(name.encode()))
        x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
        x.mul_(init_std(kind, fan_in))
        if kind == "norm":
            x.add_(1.0)
        # numpy has no bf16: the raw bytes go through a uint8 view
        x.to(tdtype).reshape(-1).view(torch.uint8).cpu().numpy().tofile(f)
    return write


def from_dtype(a, dtype):
    if dtype == "bf16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def hf_config(p, n_vocab, tok_meta):
    cfg = {
        "architectures": [HF_ARCH[p["arch"]]],
        "model_type": p["arch"],
        "hidden_size": p["hidden"],
        "intermediate_size": p["ff"],
        "num_attention_heads": p["heads"],
        "num_key_value_heads": p["kv_heads"],
        "head_dim": p["head_dim"],
        "num_hidden_layers": p["layers"],
        "rms_norm_eps": p["eps"],
        "rope_theta": p["rope_theta"],
        "rope_scaling": p["rope_scaling"],
        "max_position_embeddings": p["max_pos"],
        "vocab_size": n_vocab,
        "tie_word_embeddings": p["tie"],
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[p["dtype"]],
        "bos_token_id": tok_meta.get("bos"),
        "eos_token_id": tok_meta.get("eos"),
    }
    if p["arch"] == "llama":
        cfg.update(attention_bias=False, mlp_bias=False, attention_dropout=0.0, pretraining_tp=1)
    else:
        cfg.update(use_sliding_window=False, sliding_window=p["max_pos"], max_window_layers=p["layers"],
                   attention_dropout=0.0)
    return cfg


def write_safetensors(path, items, dtype, write_tensor, metadata):
    """items: [(name, shape, kind, fan_in)]; streams each tensor through write_tensor (numpy_writer's)."""
    st_dtype, esize = DTYPES[dtype]
    header, off = {}, 0
    for name, shape, _, _ in items:
        nb = int(np.prod(shape)) * esize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    header["__metadata__"] = metadata
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for name, shape, kind, fan_in in items:
            write_tensor(f, name, shape, kind, fan_in)
    return off


def write_hf(out, p, n_vocab, dtype, seed, shard_bytes, tok_meta, tokenizer_src, pad_to, torch_device=None):
    os.makedirs(out, exist_ok=True)
    write_tensor = numpy_writer(seed, dtype) if torch_device is None else torch_writer(seed, dtype, torch_device)
    items = tensor_list(p, n_vocab)
    esize = DTYPES[dtype][1]
    sizes = [int(np.prod(s)) * esize for _, s, _, _ in items]
    total = sum(sizes)
    meta = {"format": "pt", "godwit_mkmodel": f"shape={p['name']} seed={seed} dtype={dtype}"}
    if torch_device is not None:
        meta["godwit_mkmodel"] += f" torch_device={torch_device}"
    shards, cur, cur_b = [], [], 0
    for it, nb in zip(items, sizes):
        if cur and cur_b + nb > shard_bytes:
            shards.append(cur)
            cur, cur_b = [], 0
        cur.append(it)
        cur_b += nb
    shards.append(cur)
    for fn in os.listdir(out):  # stale outputs of an earlier run
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(out, fn))
    if len(shards) == 1:
        write_safetensors(os.path.join(out, "model.safetensors"), items, dtype, write_tensor, meta)
    else:
        weight_map = {}
        for i, sh in enumerate(shards):
            fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(os.path.join(out, fn), sh, dtype, write_tensor, meta)
            for name, _, _, _ in sh:
                weight_map[name] = fn
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(dict(p, dtype=dtype), n_vocab, tok_meta), f, indent=2)
    if tokenizer_src is not None:
        write_tokenizer_gguf(os.path.join(out, "tokenizer.gguf"), tokenizer_src, p["arch"], pad_to)
    return total, len(shards)


# ---------------------------------------------------------------- GGUF
# A small GGUF v3 reader (metadata only) and writer, so that only numpy is
# needed (the `gguf` package's writer produces the same layout).

GGUF_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes
VT_U32, VT_I32, VT_F32, VT_STRING, VT_ARRAY = 4, 5, 6, 8, 9
GGML_TYPE = {"f32": 0, "f16": 1, "bf16": 30, "q4_1": 3, "q8_0": 8}
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "q4_1": 3, "q8_0": 7}  # llama_ftype: ALL_F32, MOSTLY_F16, ...
# GGUF-only quantized matrix types (ggml's block formats, blocks of 32 along a row): q8_0 for
# every matrix; q4_1 for every matrix but attn_v and ffn_down, which get q8_0 as llama.cpp's
# mixes give them more bits (so a q4_1 file mixes two types, as real quantized files do).
QUANT_BYTES = {"q8_0": 34, "q4_1": 20}


def quantize(x, qtype):
    """float32 array (rows a multiple of 32 long) -> the bytes of ggml's Q8_0 or Q4_1 blocks."""
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    out = np.empty((b.shape[0], QUANT_BYTES[qtype]), dtype=np.uint8)
    if qtype == "q8_0":
        d = np.abs(b).max(axis=1) / 127.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
        q = np.clip(np.round(b * inv[:, None]), -127, 127).astype(np.int8)
        out[:, :2] = d.astype(np.float16).reshape(-1, 1).view(np.uint8)
        out[:, 2:] = q.view(np.uint8)
    else:
        lo, hi = b.min(axis=1), b.max(axis=1)
        d = (hi - lo) / 15.0
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
        q = np.clip(np.round((b - lo[:, None]) * inv[:, None]), 0, 15).astype(np.uint8)
        out[:, 0:2] = d.astype(np.float16).reshape(-1, 1).view(np.uint8)
        out[:, 2:4] = lo.astype(np.float16).reshape(-1, 1).view(np.uint8)
        out[:, 4:] = q[:, :16] | (q[:, 16:] << 4)
    return out


def matrix_type(gguf_tensor_name, dtype):
    if dtype == "q4_1" and gguf_tensor_name.endswith(("attn_v.weight", "ffn_down.weight")):
        return "q8_0"
    return dtype
TOKEN_UNUSED = 5
ALIGN = 32


def _skip_value(buf, pos, vt):
    if vt in GGUF_FIXED:
        return pos + GGUF_FIXED[vt]
    if vt == VT_STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return pos + 8 + n
    if vt == VT_ARRAY:
        et, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if et in GGUF_FIXED:
            return pos + n * GGUF_FIXED[et]
        for _ in range(n):
            pos = _skip_value(buf, pos, et)
        return pos
    raise ValueError(f"GGUF value type {vt} unknown")


def read_tokenizer(path):
    """The tokenizer.* metadata of a GGUF: {key: raw value bytes (type + value)}, in file order."""
    import mmap
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
        if magic != b"GGUF" or version not in (2, 3):
            sys.exit(f"mkmodel: {path} is not a GGUF v2/v3 file")
        pos, out = 24, {}
        for _ in range(n_kv):
            (klen,) = struct.unpack_from("<Q", buf, pos)
            key = bytes(buf[pos + 8:pos + 8 + klen]).decode()
            pos += 8 + klen
            (vt,) = struct.unpack_from("<I", buf, pos)
            end = _skip_value(buf, pos + 4, vt)
            if key.startswith("tokenizer."):
                out[key] = bytes(buf[pos:end])
            pos = end
    if "tokenizer.ggml.tokens" not in out:
        sys.exit(f"mkmodel: {path} has no tokenizer")
    return out


def _kv_u32(raw):
    vt = struct.unpack_from("<I", raw, 0)[0]
    return struct.unpack_from("<I" if vt == VT_U32 else "<i", raw, 4)[0] if vt in (VT_U32, VT_I32) else None


def tokenizer_info(fields):
    n = struct.unpack_from("<Q", fields["tokenizer.ggml.tokens"], 8)[0]
    meta = {k: _kv_u32(fields[f"tokenizer.ggml.{k}_token_id"]) for k in ("bos", "eos")
            if f"tokenizer.ggml.{k}_token_id" in fields}
    return n, meta


def _enc_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _pad_array(raw, extra_items):
    """An array value (raw bytes) with encoded items appended."""
    vt, et, n = struct.unpack_from("<IIQ", raw, 0)
    return struct.pack("<IIQ", vt, et, n + len(extra_items)) + raw[16:] + b"".join(extra_items)


def tokenizer_kvs(fields, pad_to):
    """Raw KV entries (key + type + value) of the tokenizer, the vocabulary padded to pad_to with [PADi]
    tokens of type UNUSED, as llama.cpp's converter pads."""
    n, _ = tokenizer_info(fields)
    out = []
    for key, raw in fields.items():
        if pad_to > n and key == "tokenizer.ggml.tokens":
            raw = _pad_array(raw, [_enc_str(f"[PAD{i}]") for i in range(n, pad_to)])
        elif pad_to > n and key == "tokenizer.ggml.token_type":
            raw = _pad_array(raw, [struct.pack("<i", TOKEN_UNUSED)] * (pad_to - n))
        elif pad_to > n and key == "tokenizer.ggml.scores":
            raw = _pad_array(raw, [struct.pack("<f", 0.0)] * (pad_to - n))
        out.append(_enc_str(key) + raw)
    return out


def kv(key, value):
    """A raw KV entry: str -> string, float -> float32, int -> uint32."""
    if isinstance(value, str):
        body = struct.pack("<I", VT_STRING) + _enc_str(value)
    elif isinstance(value, float):
        body = struct.pack("<If", VT_F32, value)
    else:
        body = struct.pack("<II", VT_U32, value)
    return _enc_str(key) + body


def write_gguf_file(path, kvs, tensors):
    """kvs: raw KV entries; tensors: [(name, numpy shape, ggml type, nbytes, producer() -> array)]."""
    infos, off = [], 0
    for name, shape, gtype, nbytes, _ in tensors:
        infos.append(_enc_str(name) + struct.pack("<I", len(shape)) +
                     b"".join(struct.pack("<Q", d) for d in reversed(shape)) + struct.pack("<IQ", gtype, off))
        off += nbytes + (-nbytes % ALIGN)
    with open(path, "wb") as f:
        f.write(struct.pack("<4sIQQ", b"GGUF", 3, len(tensors), len(kvs)))
        for e in kvs:
            f.write(e)
        for e in infos:
            f.write(e)
        f.write(b"\0" * (-f.tell() % ALIGN))
        for name, shape, gtype, nbytes, produce in tensors:
            a = produce()
            assert a.nbytes == nbytes, name
            a.tofile(f)
            f.write(b"\0" * (-nbytes % ALIGN))


def write_tokenizer_gguf(path, fields, arch, pad_to):
    kvs = [kv("general.architecture", arch), kv("general.name", "tokenizer")] + tokenizer_kvs(fields, pad_to)
    write_gguf_file(path, kvs, [])


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (rows of a head -> interleaved rope pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias", "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".", 3)  # model layers N rest
    return f"blk.{parts[2]}.{GGUF_NAMES[parts[3]]}"


def llama3_factors(p):
    s = p["rope_scaling"]
    hd = p["head_dim"]
    base, factor = p["rope_theta"], s["factor"]
    lo, hi, old = s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    out = []
    for i in range(0, hd, 2):
        freq = 1.0 / base ** (i / hd)
        wavelen = 2 * math.pi / freq
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(path, p, n_vocab, dtype, seed, fields, pad_to):
    arch = p["arch"]
    a = lambda k: f"{arch}.{k}"  # noqa: E731
    kvs = [kv("general.architecture", arch), kv("general.name", f"random {p['name']}"),
           kv(a("block_count"), p["layers"]), kv(a("context_length"), p["max_pos"]),
           kv(a("embedding_length"), p["hidden"]), kv(a("feed_forward_length"), p["ff"]),
           kv(a("attention.head_count"), p["heads"]), kv(a("attention.head_count_kv"), p["kv_heads"]),
           kv(a("rope.freq_base"), float(p["rope_theta"])),
           kv(a("attention.layer_norm_rms_epsilon"), float(p["eps"])),
           kv(a("rope.dimension_count"), p["head_dim"]), kv(a("attention.key_length"), p["head_dim"]),
           kv(a("attention.value_length"), p["head_dim"]), kv(a("vocab_size"), n_vocab),
           kv("general.file_type", FILE_TYPE[dtype])]
    rs = p["rope_scaling"]
    if rs and rs["rope_type"] == "linear":
        kvs += [kv(a("rope.scaling.type"), "linear"), kv(a("rope.scaling.factor"), float(rs["factor"]))]
    kvs += tokenizer_kvs(fields, pad_to)

    tensors = []
    if rs and rs["rope_type"] == "llama3":
        tensors.append(("rope_freqs.weight", (p["head_dim"] // 2,), GGML_TYPE["f32"], p["head_dim"] // 2 * 4,
                        lambda: llama3_factors(p)))
    for name, shape, kind, fan_in in tensor_list(p, n_vocab):
        vec = kind in ("norm", "bias")  # small vectors in F32 (holding the dtype's values), as converters do
        t = "f32" if vec else matrix_type(gguf_name(name), dtype)
        if t in QUANT_BYTES:
            nbytes = int(np.prod(shape)) // 32 * QUANT_BYTES[t]
        else:
            nbytes = int(np.prod(shape)) * DTYPES[t][1]
        vec_dtype = dtype if dtype in DTYPES else "f32"

        def produce(name=name, shape=shape, kind=kind, fan_in=fan_in, vec=vec, t=t):
            x = generate(seed, name, shape, kind, fan_in)
            if arch == "llama" and name.endswith("q_proj.weight"):
                x = permute(x, p["heads"])
            elif arch == "llama" and name.endswith("k_proj.weight"):
                x = permute(x, p["kv_heads"])
            if vec:
                return from_dtype(to_dtype(x, vec_dtype), vec_dtype)
            return quantize(x, t) if t in QUANT_BYTES else to_dtype(x, t)
        tensors.append((gguf_name(name), shape, GGML_TYPE[t], nbytes, produce))
    write_gguf_file(path, kvs, tensors)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(PRESETS), help="architecture preset (required unless --tokenizer-into)")
    ap.add_argument("--out", help="Hugging Face directory to write")
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="safetensors dtype (default bf16)")
    ap.add_argument("--gguf", help="also (or only) write this GGUF file")
    ap.add_argument("--gguf-dtype", choices=sorted(DTYPES) + sorted(QUANT_BYTES),
                    help="GGUF matrix type (default: --dtype); q8_0 / q4_1 quantize (see QUANT_BYTES)")
    ap.add_argument("--tokenizer-from", default=os.path.join(root, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"),
                    help="GGUF whose tokenizer is copied (default: models/SmolLM2-135M-Instruct.Q4_1.gguf)")
    ap.add_argument("--vocab-size", default="tokenizer",
                    help="embedding rows: 'tokenizer' (default), 'real' (the preset's real vocabulary), or N; "
                         "rows beyond the tokenizer's get [PADi] tokens in the GGUF")
    ap.add_argument("--layers", type=int, help="override the layer count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-mb", type=float, default=4000, help="safetensors shard size limit in MB (default 4000)")
    ap.add_argument("--torch-device", metavar="DEV",
                    help="draw the weights with torch on DEV (e.g. cuda): much faster, different numbers "
                         "from the default numpy mode; Hugging Face output only")
    ap.add_argument("--tokenizer-into", metavar="DIR",
                    help="only write DIR/tokenizer.gguf from --tokenizer-from (to give a real Hugging Face "
                         "checkpoint the tokenizer godwit reads)")
    a = ap.parse_args()
    if a.tokenizer_into:
        fields = read_tokenizer(a.tokenizer_from)
        arch = "llama"
        try:
            with open(os.path.join(a.tokenizer_into, "config.json")) as f:
                arch = json.load(f).get("model_type", arch)
        except OSError:
            pass
        path = os.path.join(a.tokenizer_into, "tokenizer.gguf")
        write_tokenizer_gguf(path, fields, arch, 0)
        print(f"mkmodel: wrote {path} ({tokenizer_info(fields)[0]} tokens)", file=sys.stderr)
        return
    if not a.shape or (not a.out and not a.gguf):
        ap.error("give --shape and --out DIR and/or --gguf FILE (or --tokenizer-into DIR)")
    if a.torch_device and a.gguf:
        ap.error("--torch-device writes Hugging Face directories only: drop --gguf (numpy mode writes both)")
    if a.torch_device and not 0 <= a.seed < 2**32:
        ap.error("--torch-device needs 0 <= --seed < 2**32 (the generator seed is seed * 2**32 + crc32)")

    p = dict(PRESETS[a.shape], name=a.shape)
    p.setdefault("head_dim", p["hidden"] // p["heads"])
    if a.layers:
        p["layers"] = a.layers
    fields = read_tokenizer(a.tokenizer_from)
    n_tok, tok_meta = tokenizer_info(fields)
    if a.vocab_size == "tokenizer":
        n_vocab = n_tok
    elif a.vocab_size == "real":
        n_vocab = p["real_vocab"] or n_tok
    else:
        n_vocab = int(a.vocab_size)
    if n_vocab < n_tok:
        sys.exit(f"mkmodel: --vocab-size {n_vocab} is below the tokenizer's {n_tok} tokens")
    pad_to = n_vocab if n_vocab > n_tok else 0

    if a.out:
        total, n_shards = write_hf(a.out, p, n_vocab, a.dtype, a.seed, int(a.shard_mb * 1e6), tok_meta, fields,
                                   pad_to, a.torch_device)
        print(f"mkmodel: wrote {a.out}: {a.shape} {a.dtype}, vocab {n_vocab}, {total / 1e6:.1f} MB in "
              f"{n_shards} file(s)" + (f", drawn with torch on {a.torch_device}" if a.torch_device else ""),
              file=sys.stderr)
    if a.gguf:
        write_gguf(a.gguf, p, n_vocab, a.gguf_dtype or a.dtype, a.seed, fields, pad_to)
        print(f"mkmodel: wrote {a.gguf}: {a.shape} {a.gguf_dtype or a.dtype}, vocab {n_vocab}", file=sys.stderr)


if __name__ == "__main__":
    main()
