"""Benchmarks and the long reliability run, each measured beside its baseline in one run: `make bench`.

This machine is shared and noisy, so every figure is a median of interleaved runs and is read as a
ratio to the baseline measured right beside it, never as a lone absolute time. Prints Markdown
tables (BENCHMARKS.md holds one run's output). Run from the repository root: `python -m bench`.
"""

from __future__ import annotations

import argparse
import os
import platform

from bench import cold_start, fan_out, hostile, load, reconcile, storm, throughput, translation


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the long storm, memory and load runs")
    args = parser.parse_args()
    print(
        f"## {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.machine()}"
    )
    translation.run()
    cold_start.run()
    fan_out.run()
    hostile.run()
    if not args.quick:
        storm.run()
        throughput.run()
        load.run()
        reconcile.run()


main()
