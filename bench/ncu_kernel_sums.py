#!/usr/bin/env python3
"""Kernel time by kernel name from an Nsight Compute CSV of gpu__time_duration.sum, per pass.

  ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \\
      build-gpu/fp4kit generate MODEL --ids "2 3 4 5" --device cuda --max-new-tokens 5 --ignore-eos > ncu.csv
  bench/ncu_kernel_sums.py ncu.csv 5      # 5 passes: the prompt and 4 decode steps
"""
import collections
import csv
import re
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    passes = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    header, total, calls = None, collections.defaultdict(float), collections.Counter()
    with open(sys.argv[1], newline="") as f:
        for row in csv.reader(f):
            if "Kernel Name" in row:
                header = row
                continue
            if not header or len(row) != len(header):
                continue  # ncu's own lines before the table
            d = dict(zip(header, row))
            if d["Metric Name"] != "gpu__time_duration.sum":
                continue
            name = re.sub(r"\(.*", "", d["Kernel Name"])[:80]  # the kernel without its argument list
            total[name] += float(d["Metric Value"].replace(",", "")) / 1e3  # ns -> us
            calls[name] += 1
    if not calls:
        sys.exit(f"{sys.argv[1]}: no gpu__time_duration.sum rows")
    n = sum(calls.values())
    print(f"kernels {n} ({n / passes:.0f} per pass), {sum(total.values()) / passes:.1f} us per pass")
    for name, us in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"{us / passes:9.1f} us {calls[name] / passes:6.1f}x  {name}")


if __name__ == "__main__":
    main()
