#!/usr/bin/env python3
"""Write a GGUF that keeps the first N transformer blocks of a real model (and
its embeddings, output norm and head, tokenizer and metadata, block_count set
to N): a model small enough to take to the GPU machine (at most 64 MiB travel
per call) whose weights are still trained ones, for checking the CPU and CUDA
backends against each other on real weight statistics.

  python3 bench/gpu/truncate_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf .devdata/smollm2-L8.gguf --layers 8
"""
import argparse
import mmap
import os
import re
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mkmodel import ALIGN, VT_U32, _enc_str, _skip_value  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--layers", type=int, required=True)
    a = ap.parse_args()
    with open(a.src, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
        if magic != b"GGUF" or version not in (2, 3):
            sys.exit(f"{a.src}: not a GGUF v2/v3 file")
        pos, kvs, align = 24, [], ALIGN
        for _ in range(n_kv):
            (klen,) = struct.unpack_from("<Q", buf, pos)
            key = bytes(buf[pos + 8:pos + 8 + klen]).decode()
            start = pos
            pos += 8 + klen
            (vt,) = struct.unpack_from("<I", buf, pos)
            end = _skip_value(buf, pos + 4, vt)
            raw = bytes(buf[start:end])
            if key.endswith(".block_count"):
                raw = _enc_str(key) + struct.pack("<II", VT_U32, a.layers)
            if key == "general.alignment":
                align = struct.unpack_from("<I", buf, pos + 4)[0]
            kvs.append(raw)
            pos = end
        infos = []
        for _ in range(n_tensors):
            (nlen,) = struct.unpack_from("<Q", buf, pos)
            name = bytes(buf[pos + 8:pos + 8 + nlen]).decode()
            pos += 8 + nlen
            (nd,) = struct.unpack_from("<I", buf, pos)
            dims = struct.unpack_from(f"<{nd}Q", buf, pos + 4)
            gtype, off = struct.unpack_from("<IQ", buf, pos + 4 + 8 * nd)
            pos += 4 + 8 * nd + 12
            infos.append((name, dims, gtype, off))
        data_start = pos + (-pos % align)
        # a tensor's size: up to the next offset (or the end of the file), less the alignment padding
        offs = sorted(o for _, _, _, o in infos) + [len(buf) - data_start]
        keep = [t for t in infos if not (m := re.match(r"blk\.(\d+)\.", t[0])) or int(m.group(1)) < a.layers]
        out_infos, out_data, off = [], [], 0
        for name, dims, gtype, src_off in keep:
            nxt = offs[offs.index(src_off) + 1]
            chunk = bytes(buf[data_start + src_off:data_start + nxt])
            out_infos.append(_enc_str(name) + struct.pack("<I", len(dims)) +
                             b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", gtype, off))
            out_data.append(chunk)
            off += len(chunk)
    with open(a.dst, "wb") as f:
        f.write(struct.pack("<4sIQQ", b"GGUF", version, len(keep), len(kvs)))
        for e in kvs + out_infos:
            f.write(e)
        f.write(b"\0" * (-f.tell() % align))
        for chunk in out_data:
            f.write(chunk)
    print(f"{a.dst}: {len(keep)} of {n_tensors} tensors, {a.layers} blocks, {os.path.getsize(a.dst) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
