#!/usr/bin/env python3
"""Kernel time by kernel name from an Nsight Compute CSV of gpu__time_duration.sum.

  ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \\
      build-gpu/fp4kit generate MODEL --ids "2 3 4 5" --device cuda --max-new-tokens 5 --ignore-eos > ncu.csv
  bench/ncu_kernel_sums.py ncu.csv 5         # averaged over 5 passes: the prompt and 4 decode steps
  bench/ncu_kernel_sums.py ncu.csv --last    # the last pass alone (a decode step), by kernel and grid

A pass starts at the embedding lookup (gather_widen_kernel), the first kernel of every forward pass.
"""
import collections
import csv
import re
import sys

PASS_START = "gather_widen_kernel"


def read(path):
    """[(kernel name without arguments, grid, microseconds)] in launch order."""
    header, out = None, []
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if "Kernel Name" in row:
                header = row
                continue
            if not header or len(row) != len(header):
                continue  # ncu's own lines before the table
            d = dict(zip(header, row))
            if d["Metric Name"] != "gpu__time_duration.sum":
                continue
            name = re.sub(r"\(.*", "", d["Kernel Name"])[:80]
            out.append((name, d.get("Grid Size", ""), float(d["Metric Value"].replace(",", "")) / 1e3))
    if not out:
        sys.exit(f"{path}: no gpu__time_duration.sum rows")
    return out


def report(launches, passes, key):
    total, calls = collections.defaultdict(float), collections.Counter()
    for name, grid, us in launches:
        k = key(name, grid)
        total[k] += us
        calls[k] += 1
    n = len(launches)
    print(f"kernels {n} ({n / passes:.0f} per pass), {sum(total.values()) / passes:.1f} us per pass")
    for k, us in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{us / passes:9.1f} us {calls[k] / passes:6.1f}x  {k}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    launches = read(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "--last":
        starts = [i for i, (name, _, _) in enumerate(launches) if PASS_START in name]
        if not starts:
            sys.exit(f"{sys.argv[1]}: no {PASS_START} launch to mark a pass")
        report(launches[starts[-1]:], 1.0, lambda name, grid: f"{name} grid {grid}")
        return
    passes = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    report(launches, passes, lambda name, grid: name)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # piped into head
        pass
