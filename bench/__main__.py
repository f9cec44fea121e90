"""Benchmarks and the long reliability run, each measured beside its baseline in one run: `make bench`.

This machine is shared and noisy, so every figure is a median of interleaved runs and is read as a
ratio to the baseline measured right beside it, never as a lone absolute time. Prints Markdown
tables (BENCHMARKS.md holds one run's output). Run from the repository root: `python -m bench`.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from bench import cold_start, fan_out, hostile, load, reconcile, storm, throughput, translation
from bench.common import table

IMPORT_BUDGET = 1.25  # cold `import main` at most this times `import requests`
THROUGHPUT_BUDGET = 0.95  # through run.sh at least this times the bare forwarder, at concurrency 8


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the long storm, memory and load runs")
    args = parser.parse_args()
    print(
        f"## {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.machine()}"
    )
    started = time.monotonic()
    translation.run()
    import_ratio = cold_start.run()
    fan_out.run()
    hostile.run()
    budgets = [
        (
            "cold `import main` / `import requests`",
            import_ratio,
            f"<= {IMPORT_BUDGET}",
            "yes" if import_ratio <= IMPORT_BUDGET else "no",
        )
    ]
    if not args.quick:
        storm.run()
        through = throughput.run()[8]
        budgets.append(
            (
                "relay / bare forwarder, cb/s at concurrency 8",
                through,
                f">= {THROUGHPUT_BUDGET}",
                "yes" if through >= THROUGHPUT_BUDGET else "no",
            )
        )
        load.run()
        reconcile.run()
        reconcile.event_storm()
    table("Budgets: this run's ratios side by side", ("ratio", "this run", "budget", "within"), budgets)
    minutes, seconds = divmod(round(time.monotonic() - started), 60)
    print(f"\nThe run took {minutes} min {seconds} s.")


main()
