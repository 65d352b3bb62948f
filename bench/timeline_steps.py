#!/usr/bin/env python3
"""Where a forward pass's time goes on a real run: the device timeline that bench/cuda_timeline
records (kernels, copies and memsets with their device times; the host's CUDA calls with theirs).

  bench/timeline_steps.py timeline.csv [--pass-start NAME] [--top N]

A pass starts at the embedding lookup (gather_widen_kernel, the first kernel of every forward pass),
together with the copies and memsets queued for it after the previous pass's last copy to the host.
The passes with the most common number of device operations (decode steps of one batch size) are
summed; for each: its device span, the time the device was busy, the idle time between operations
and the part of it spent waiting for a launch (the operation's launch call returned on the host
after the previous operation had ended: the host was late), and the lead (from the previous pass's
last operation to this pass's first: the host between passes). Then the idle time by place (the
operations either side) and the busy time by kernel, in one median pass.
"""
import collections
import csv
import statistics
import subprocess
import sys

PASS_START = "gather_widen_kernel"
DEVICE = {"K", "C", "S"}
COPY_TO_HOST = "copy kind 2"


def short_names(names):
    """Demangled, namespaces dropped, template arguments shortened."""
    names = sorted(set(names))
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        out = names
    short = {}
    for raw, d in zip(names, out):
        for ns in ("(anonymous namespace)::", "fp4kit::cuda::", "fp4kit::", "void "):
            d = d.replace(ns, "")
        d = d.split("(")[0] if "(" in d else d  # the parameters
        short[raw] = d if len(d) <= 70 else d[:67] + "..."
    return short


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    path, start_name, top = args[0], PASS_START, 12
    if "--pass-start" in args:
        start_name = args[args.index("--pass-start") + 1]
    if "--top" in args:
        top = int(args[args.index("--top") + 1])
    ops, api = [], {}
    try:
        with open(path, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    t, s, e, c = row["type"], int(row["start_ns"]), int(row["end_ns"]), int(row["correlation"])
                except (KeyError, TypeError, ValueError):
                    print(f"{path}:{line}: not a timeline row (type,start_ns,end_ns,correlation,name,extent)", file=sys.stderr)
                    return 1
                if t in DEVICE:
                    ops.append((s, e, c, t, row["name"], row["extent"]))
                elif t in ("R", "D") and (t == "R" or c not in api):
                    api[c] = (s, e)  # the runtime call where there is one, else the driver's
    except OSError as err:
        print(f"{path}: {err.strerror}", file=sys.stderr)
        return 1
    if not ops:
        print(f"{path}: no device operations recorded", file=sys.stderr)
        return 1
    ops.sort()
    names = short_names(o[4] for o in ops if o[3] == "K")
    label = lambda o: names.get(o[4], o[4]) if o[3] == "K" else ("memset" if o[3] == "S" else o[4].replace("copy kind", "copy"))

    starts = [i for i, o in enumerate(ops) if o[3] == "K" and start_name in o[4]]
    if len(starts) < 2:
        print(f"{path}: fewer than two passes (kernels named {start_name})", file=sys.stderr)
        return 1
    # Each pass from the first operation after the previous pass's last copy to the host.
    bounds = []
    for n, i in enumerate(starts):
        lo = starts[n - 1] if n else 0
        first = i
        for j in range(i - 1, lo, -1):
            if ops[j][3] == "C" and COPY_TO_HOST in ops[j][4]:
                break
            first = j
        bounds.append(first)
    passes = [(bounds[n], bounds[n + 1] if n + 1 < len(bounds) else len(ops)) for n in range(len(bounds))]
    counts = collections.Counter(b - a for a, b in passes)
    size = counts.most_common(1)[0][0]
    chosen = [n for n, (a, b) in enumerate(passes) if b - a == size and n > 0]
    print(f"{len(passes)} passes; {len(chosen)} with the most common count of {size} device operations (the first pass left out)")
    if not chosen:
        print(f"{path}: no pass after the first has the most common count of operations", file=sys.stderr)
        return 1

    rows, gaps, busy_by = [], collections.Counter(), collections.defaultdict(list)
    for n in chosen:
        a, b = passes[n]
        p = ops[a:b]
        # Busy: the union of the operations' times (a kernel launched as a dependent starts before
        # the one it waits for ends, so their durations overlap).
        busy, reach = 0, p[0][0]
        for o in p:
            if o[1] > reach:
                busy += o[1] - max(o[0], reach)
                reach = o[1]
        span = p[-1][1] - p[0][0]
        lead = p[0][0] - ops[a - 1][1]
        late = 0
        for prev, o in zip(p, p[1:]):
            idle = max(0, o[0] - prev[1])
            gaps[(label(prev), label(o))] += idle
            call = api.get(o[2])
            if call and call[1] > prev[1]:
                late += idle
        rows.append((span, busy, span - busy, late, lead))
        for o in p:
            busy_by[(label(o), o[5] if o[3] == "K" else "")].append(o[1] - o[0])
    med = lambda i: statistics.median(r[i] for r in rows) / 1e3
    print(f"per pass, median µs: span {med(0):.1f}, busy {med(1):.1f}, idle {med(2):.1f} "
          f"(waiting for a launch {med(3):.1f}), lead from the previous pass {med(4):.1f}; "
          f"span + lead {statistics.median(r[0] + r[4] for r in rows) / 1e3:.1f}")
    print(f"\nidle between operations, µs per pass (top {top}):")
    for (x, y), t in gaps.most_common(top):
        print(f"  {t / len(chosen) / 1e3:8.2f}  {x}  ->  {y}")
    print(f"\nbusy by operation, µs per pass (median over passes; calls per pass; a dependent launch's time includes its wait):")
    total = 0.0
    table = []
    for (name, grid), times in busy_by.items():
        per = statistics.median(times) * len(times) / len(chosen) / 1e3
        table.append((per, name, grid, len(times) / len(chosen)))
        total += per
    for per, name, grid, calls in sorted(table, reverse=True):
        print(f"  {per:8.2f}  {calls:4.0f}×  {name}  {grid}")
    print(f"  {total:8.2f}  sum")
    return 0


if __name__ == "__main__":
    sys.exit(main())
