#!/usr/bin/env python3
"""Serving load generator for `godwit serve` (or any OpenAI-compatible server):
streams requests to /v1/completions at a Poisson rate and prints what
`vllm bench serve` prints: request/output/total throughput, TTFT, TPOT, ITL
and end-to-end latency (mean, median, P99 by default).

Synthetic dataset (like vLLM's "random" dataset, but sent as token ids so
that the server sees exactly the lengths asked for): every prompt is
--input-len token ids, the first --prefix-len of them (or
--shared-prefix-ratio x --input-len) the same for all prompts, the rest
random; --range-ratio R draws each input and output length uniformly from
[len * (1 - R), len * (1 + R)]. Requests ask for --output-len tokens with
ignore_eos, greedy, so the output length is controlled.

Only the Python standard library (asyncio with raw HTTP/1.1 over sockets).

usage:
  python3 bench/bench_serve.py --url http://127.0.0.1:8080 --num-prompts 64 \\
      --rate 2 --input-len 1024 --output-len 128 [--prefix-len 512] \\
      [--max-concurrency 8] [--seed 0] [--save-result out.json]
"""
import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime


# ------------------------------------------------------------------ dataset

def make_dataset(args):
    """[(prompt_ids, output_len)] with a shared prefix and random rest."""
    rng = random.Random(args.seed)
    lo, hi = args.vocab_min, args.vocab_max
    prefix_len = args.prefix_len
    if args.shared_prefix_ratio is not None:
        prefix_len = int(round(args.shared_prefix_ratio * args.input_len))
    prefix = [rng.randrange(lo, hi) for _ in range(prefix_len)]

    def draw(n):
        if args.range_ratio <= 0:
            return n
        return max(1, rng.randint(int(n * (1 - args.range_ratio)), int(n * (1 + args.range_ratio))))

    data = []
    for _ in range(args.num_prompts):
        n_in = max(draw(args.input_len), prefix_len + 1)
        rest = [rng.randrange(lo, hi) for _ in range(n_in - prefix_len)]
        data.append((prefix + rest, draw(args.output_len)))
    return data, prefix_len


# ------------------------------------------------------------- HTTP client

class Result:
    def __init__(self, prompt_len):
        self.prompt_len = prompt_len
        self.success = False
        self.error = ""
        self.ttft = 0.0
        self.latency = 0.0
        self.itl = []
        self.output_tokens = 0
        self.text = ""


async def read_http_body(reader, headers):
    """Yields body pieces as they arrive (chunked or until close)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            line = await reader.readline()
            if not line:
                return
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)  # CRLF
            yield data
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


async def request_stream(url, api_key, body, prompt_len, timeout):
    """One streamed completion; fills a Result with the timings."""
    res = Result(prompt_len)
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    payload = json.dumps(body).encode()
    head = (f"POST {u.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n")
    if api_key:
        head += f"Authorization: Bearer {api_key}\r\n"
    start = time.perf_counter()
    last = start
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(head.encode() + b"\r\n" + payload)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.decode("latin-1").split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        buf = b""
        body_iter = read_http_body(reader, headers).__aiter__()
        while True:
            try:
                piece = await asyncio.wait_for(body_iter.__anext__(), timeout)
            except StopAsyncIteration:
                break
            if status != 200:
                buf += piece
                continue
            buf += piece
            # server-sent events are separated by a blank line
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue  # comments (keep-alive) and other fields
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    msg = json.loads(data)
                    if "error" in msg:
                        raise RuntimeError(msg["error"].get("message", "error in stream"))
                    now = time.perf_counter()
                    choices = msg.get("choices")
                    if choices:
                        # as vllm bench serve: the first chunk with choices is
                        # the first token; every later one adds an ITL sample
                        if res.ttft == 0.0:
                            res.ttft = now - start
                        else:
                            res.itl.append(now - last)
                        last = now
                        res.text += choices[0].get("text") or ""
                    elif msg.get("usage"):
                        res.output_tokens = msg["usage"].get("completion_tokens", 0)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {buf[:300].decode('utf-8', 'replace')}")
        res.latency = time.perf_counter() - start
        res.success = res.ttft > 0
        if not res.success:
            res.error = "no tokens received"
    except Exception as e:  # noqa: BLE001 -- every failure is a failed request
        res.error = f"{type(e).__name__}: {e}"
    finally:
        if writer is not None:
            writer.close()
    return res


# ---------------------------------------------------------------- metrics

def percentile(xs, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def scrape_prefix_counters(base):
    """(queries, hits) of the server's prefix cache, or None."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except Exception:  # noqa: BLE001
        return None
    vals = {}
    for line in text.splitlines():
        for name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
            if line.startswith(name + "{") or line.startswith(name + " "):
                vals[name] = float(line.rsplit(" ", 1)[1])
    if len(vals) != 2:
        return None
    return vals["vllm:prefix_cache_queries_total"], vals["vllm:prefix_cache_hits_total"]


# -------------------------------------------------------------------- main

async def run(args, data):
    url = args.url.rstrip("/") + args.endpoint
    sem = asyncio.Semaphore(args.max_concurrency) if args.max_concurrency else None
    rng = random.Random(args.seed + 1)

    async def one(prompt, out_len):
        body = {"model": args.model, "prompt": prompt, "max_tokens": out_len, "temperature": 0.0,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        if sem is None:
            return await request_stream(url, args.api_key, body, len(prompt), args.timeout)
        async with sem:
            return await request_stream(url, args.api_key, body, len(prompt), args.timeout)

    tasks = []
    start = time.perf_counter()
    for prompt, out_len in data:
        tasks.append(asyncio.create_task(one(prompt, out_len)))
        if args.rate != float("inf"):
            await asyncio.sleep(rng.expovariate(args.rate))  # Poisson arrivals
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    ap.add_argument("--endpoint", default="/v1/completions")
    ap.add_argument("--model", default=None, help="model name sent (default: the first of /v1/models)")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"),
                    help="bearer token (default: $OPENAI_API_KEY)")
    ap.add_argument("--num-prompts", type=int, default=100)
    ap.add_argument("--rate", "--request-rate", dest="rate", type=float, default=float("inf"),
                    help="requests per second, Poisson arrivals; inf: all at once (default)")
    ap.add_argument("--max-concurrency", type=int, default=None, help="most requests in flight")
    ap.add_argument("--input-len", type=int, default=1024, help="prompt tokens, prefix included")
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--prefix-len", type=int, default=0, help="leading prompt tokens shared by all prompts")
    ap.add_argument("--shared-prefix-ratio", type=float, default=None,
                    help="shared prefix as a fraction of --input-len (overrides --prefix-len)")
    ap.add_argument("--range-ratio", type=float, default=0.0,
                    help="lengths uniform in [len*(1-R), len*(1+R)] (default 0: fixed)")
    ap.add_argument("--vocab-min", type=int, default=1000, help="random token ids are drawn from")
    ap.add_argument("--vocab-max", type=int, default=20000, help="[vocab-min, vocab-max)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--percentiles", default="99", help="comma-separated percentiles to print")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds without progress before a request fails")
    ap.add_argument("--save-result", default=None, metavar="FILE", help="write the metrics and raw samples as JSON")
    args = ap.parse_args()
    if args.num_prompts < 1 or args.input_len < 1 or args.output_len < 1:
        ap.error("--num-prompts, --input-len and --output-len must be >= 1")
    if args.shared_prefix_ratio is not None and not 0 <= args.shared_prefix_ratio < 1:
        ap.error("--shared-prefix-ratio must be in [0, 1)")
    if not 0 <= args.prefix_len < args.input_len and args.shared_prefix_ratio is None:
        ap.error("--prefix-len must be in [0, --input-len)")
    if not args.rate > 0:
        ap.error("--rate must be > 0")
    base = args.url.rstrip("/")
    if args.model is None:
        try:
            req = urllib.request.Request(base + "/v1/models")
            if args.api_key:
                req.add_header("Authorization", "Bearer " + args.api_key)
            with urllib.request.urlopen(req, timeout=30) as r:
                args.model = json.load(r)["data"][0]["id"]
        except Exception as e:  # noqa: BLE001
            sys.exit(f"bench_serve: cannot read {base}/v1/models: {e}")

    data, prefix_len = make_dataset(args)
    print(f"Model: {args.model}  dataset: {args.num_prompts} prompts, input {args.input_len} tokens "
          f"(shared prefix {prefix_len}), output {args.output_len} tokens, range ratio {args.range_ratio}")
    print(f"Traffic request rate: {args.rate}")
    print(f"Maximum request concurrency: {args.max_concurrency}")
    pc0 = scrape_prefix_counters(base)
    results, duration = asyncio.run(run(args, data))
    pc1 = scrape_prefix_counters(base)

    ok = [r for r in results if r.success]
    failed = [r for r in results if not r.success]
    for r in failed[:5]:
        print(f"failed request: {r.error}", file=sys.stderr)
    total_in = sum(r.prompt_len for r in ok)
    # output tokens from the server's usage; the count of chunks otherwise
    out_lens = [r.output_tokens or (len(r.itl) + 1) for r in ok]
    total_out = sum(out_lens)
    ttfts = [r.ttft for r in ok]
    tpots = [(r.latency - r.ttft) / (n - 1) for r, n in zip(ok, out_lens) if n > 1]
    itls = [x for r in ok for x in r.itl]
    e2els = [r.latency for r in ok]
    pcts = [float(p) for p in args.percentiles.split(",") if p.strip()]

    def row(label, value, fmt="{:<10.2f}"):
        print(("{:<40} " + fmt).format(label, value))

    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    row("Successful requests:", len(ok), "{:<10}")
    row("Failed requests:", len(failed), "{:<10}")
    if args.max_concurrency:
        row("Maximum request concurrency:", args.max_concurrency, "{:<10}")
    if args.rate != float("inf"):
        row("Request rate configured (RPS):", args.rate)
    row("Benchmark duration (s):", duration)
    row("Total input tokens:", total_in, "{:<10}")
    row("Total generated tokens:", total_out, "{:<10}")
    row("Request throughput (req/s):", len(ok) / duration)
    row("Output token throughput (tok/s):", total_out / duration)
    row("Total Token throughput (tok/s):", (total_in + total_out) / duration)
    metrics = {}
    for key, name, header, xs in (("ttft", "TTFT", "Time to First Token", ttfts),
                                  ("tpot", "TPOT", "Time per Output Token (excl. 1st token)", tpots),
                                  ("itl", "ITL", "Inter-token Latency", itls),
                                  ("e2el", "E2EL", "End-to-end Latency", e2els)):
        print("{s:{c}^{n}}".format(s=header, n=50, c="-"))
        ms = [x * 1000 for x in xs]
        metrics[f"mean_{key}_ms"] = mean(ms)
        metrics[f"median_{key}_ms"] = percentile(ms, 50)
        row(f"Mean {name} (ms):", metrics[f"mean_{key}_ms"])
        row(f"Median {name} (ms):", metrics[f"median_{key}_ms"])
        for p in pcts:
            word = str(int(p)) if int(p) == p else str(p)
            metrics[f"p{word}_{key}_ms"] = percentile(ms, p)
            row(f"P{word} {name} (ms):", metrics[f"p{word}_{key}_ms"])
    print("=" * 50)
    hit_info = None
    if pc0 and pc1 and pc1[0] > pc0[0]:
        q, h = pc1[0] - pc0[0], pc1[1] - pc0[1]
        hit_info = {"queried_tokens": q, "hit_tokens": h}
        print(f"Server prefix cache: {int(h)} of {int(q)} prompt tokens from the cache ({100 * h / q:.1f} %)")

    if args.save_result:
        out = {
            "date": datetime.now().strftime("%Y%m%d-%H%M%S"), "model_id": args.model, "url": base,
            "num_prompts": args.num_prompts, "request_rate": str(args.rate),
            "max_concurrency": args.max_concurrency, "input_len": args.input_len, "output_len": args.output_len,
            "prefix_len": prefix_len, "range_ratio": args.range_ratio, "seed": args.seed,
            "duration": duration, "completed": len(ok), "failed": len(failed),
            "total_input_tokens": total_in, "total_output_tokens": total_out,
            "request_throughput": len(ok) / duration, "output_throughput": total_out / duration,
            "total_token_throughput": (total_in + total_out) / duration, **metrics,
            "prefix_cache": hit_info,
            "input_lens": [r.prompt_len for r in results], "output_lens": [r.output_tokens for r in results],
            "ttfts": [r.ttft for r in results], "itls": [r.itl for r in results],
            "e2els": [r.latency for r in results], "errors": [r.error for r in results],
        }
        with open(args.save_result, "w") as f:
            json.dump(out, f)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
