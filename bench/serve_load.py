#!/usr/bin/env python3
"""A bounded load test of `fp4kit serve` for machines without Node (bench/serve_load.mjs does the
same with Node): C concurrent clients send R streamed completions in total and measure, per request,
the time to the first token (TTFT), the mean time between its later tokens and the tokens it
generated. Each request asks for logprobs, so that the server sends one chunk per generated token
even where the token's text is empty (a synthetic model's ids past the tokenizer's vocabulary). Prints one table row and writes JSON; exits 1 on any error or non-200 reply.
The server's RSS (/proc/PID/status) is read before and after the run, and its /metrics: the mean
engine time of a decode step and the mean time to draw its tokens during the run (the server's
fp4kit:decode_step_seconds and fp4kit:sampling_seconds histograms).
  bench/serve_load.py --url URL --pid PID --clients C --requests R --max-tokens N [--json FILE]
Standard library only."""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def histogram_sums(url):
    """(sum, count) of the server's decode-step and sampling histograms, from /metrics."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", "/metrics")
    page = conn.getresponse().read().decode()
    conn.close()
    values = {}
    for line in page.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            values[parts[0]] = float(parts[1])
    return {k: (values.get(f"fp4kit:{k}_seconds_sum", 0.0), values.get(f"fp4kit:{k}_seconds_count", 0.0))
            for k in ("decode_step", "sampling")}


def mean_ms(before, after):
    (s0, n0), (s1, n1) = before, after
    return 1e3 * (s1 - s0) / (n1 - n0) if n1 > n0 else float("nan")


def percentile(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))] if s else float("nan")


def one(url, i, max_tokens):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"prompt": f"Request {i}: tell a story", "max_tokens": max_tokens, "temperature": 0.8,
                       "seed": i, "ignore_eos": True, "stream": True, "logprobs": 1})
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    res = conn.getresponse()
    if res.status != 200:
        raise RuntimeError(f"request {i}: HTTP {res.status} {res.read()[:300]!r}")
    times, usage, buffer = [], None, b""
    while True:
        data = res.read1(65536)
        if not data:
            break
        buffer += data
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if not event.startswith(b"data: "):
                raise RuntimeError(f"request {i}: bad event {event[:100]!r}")
            if event == b"data: [DONE]":
                continue
            chunk = json.loads(event[6:])
            if "error" in chunk:
                raise RuntimeError(f"request {i}: {chunk['error']['message']}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            choice = chunk["choices"][0] if chunk.get("choices") else {}
            if choice.get("text") or choice.get("logprobs"):
                times.append(time.perf_counter() - start)
    conn.close()
    if usage is None:
        raise RuntimeError(f"request {i}: no usage in the final chunk")
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"ttft": times[0] if times else float("nan"), "tokens": usage["completion_tokens"],
            "inter_token": sum(gaps) / len(gaps) if gaps else float("nan")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", required=True)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--json")
    a = ap.parse_args()
    results, errors, lock = [], [], threading.Lock()
    next_request = iter(range(a.requests))

    def client():
        while True:
            with lock:
                i = next(next_request, None)
            if i is None:
                return
            try:
                r = one(a.url, i, a.max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # every failure counts; the run goes on
                with lock:
                    errors.append(str(e))

    rss_before = rss_mb(a.pid)
    sums_before = histogram_sums(a.url)
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    sums_after = histogram_sums(a.url)
    step_ms = mean_ms(sums_before["decode_step"], sums_after["decode_step"])
    sampling_ms = mean_ms(sums_before["sampling"], sums_after["sampling"])
    tokens = sum(r["tokens"] for r in results)
    ttft = [r["ttft"] * 1e3 for r in results]
    gaps = [r["inter_token"] * 1e3 for r in results if r["inter_token"] == r["inter_token"]]
    out = {"clients": a.clients, "requests": a.requests, "max_tokens": a.max_tokens, "errors": len(errors),
           "error_messages": errors[:5], "ttft_p50_ms": percentile(ttft, 50), "ttft_p99_ms": percentile(ttft, 99),
           "inter_token_p50_ms": percentile(gaps, 50), "tokens_per_second": tokens / seconds, "seconds": seconds,
           "rss_before_mb": rss_before, "rss_after_mb": rss_mb(a.pid), "decode_step_mean_ms": step_ms,
           "sampling_mean_ms": sampling_ms}
    print(f"| {a.clients} | {a.requests} | {a.max_tokens} | {len(errors)} | {out['ttft_p50_ms']:.1f} | "
          f"{out['ttft_p99_ms']:.1f} | {out['inter_token_p50_ms']:.2f} | {step_ms:.2f} | {sampling_ms:.2f} | "
          f"{out['tokens_per_second']:.1f} | {rss_before:.0f} / {out['rss_after_mb']:.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
