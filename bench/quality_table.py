#!/usr/bin/env python3
"""The KV-policy quality table of bench/NOTES.md from `godwit eval ruler` result
files: for each file (one engine configuration) and length, the mean score over
the samples whose (task, index) the dense file also has, the same for the NIAH
tasks alone, the dense mean over exactly those samples, and the KV bytes a
prompt token costs (bytes per cached token x tokens kept / prompt tokens).

  python3 bench/quality_table.py --dense bench/results/ruler-smollm2-dense.jsonl \\
      bench/results/ruler-smollm2-*.jsonl [--length 4096] [--samples 2]
"""
import argparse
import collections
import json
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                rows[(r["task"], r["length"], r["index"])] = r
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dense", required=True)
    ap.add_argument("--length", type=int, action="append", help="lengths to show (default: all)")
    ap.add_argument("--samples", type=int, default=2, help="sample indices 0..N-1 are compared (default 2)")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    dense = load(a.dense)
    print("| config | length | samples | mean | dense (same samples) | NIAH mean | dense NIAH | KV bytes per prompt token |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in a.files:
        if path == a.dense:
            continue
        rows = load(path)
        by_len = collections.defaultdict(list)
        for key, r in rows.items():
            if key in dense and r["index"] < a.samples and (not a.length or r["length"] in a.length):
                by_len[r["length"]].append((r, dense[key]))
        for length in sorted(by_len):
            pairs = by_len[length]
            niah = [p for p in pairs if p[0]["task"].startswith("niah")]
            mean = lambda xs, i: sum(x[i]["score"] for x in xs) / len(xs) if xs else float("nan")
            cfg = pairs[0][0]["config"]
            kv = sum(r["kv_bytes_per_token"] * r.get("n_kv_kept", r["n_prompt_tokens"]) / r["n_prompt_tokens"]
                     for r, _ in pairs) / len(pairs)
            print(f"| {cfg} | {length} | {len(pairs)} | {mean(pairs, 0):.1f} | {mean(pairs, 1):.1f} | "
                  f"{mean(niah, 0):.1f} | {mean(niah, 1):.1f} | {kv:,.0f} |")


if __name__ == "__main__":
    sys.exit(main())
