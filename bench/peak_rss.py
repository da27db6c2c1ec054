"""Peak resident memory of a command and all its child processes, summed.

`/usr/bin/time -v` reports the largest single process; curation runs datatrove workers as
child processes, so what matters for a machine's memory is their sum at the worst moment.
This samples the process tree every `--interval` seconds with psutil.

    python -m bench.peak_rss -- dvc repro curate-web-...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    """Bytes resident in `proc` and its descendants now (processes that vanish count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def measure(cmd: list[str], interval: float) -> tuple[int, int, float]:
    """(exit code, peak summed RSS in bytes, seconds) of running `cmd`."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(proc))
        except psutil.Error:
            pass
        time.sleep(interval)
    return child.returncode, peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.05, help="sampling period (s)")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="command to run (after --)")
    args = parser.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give a command after --")
    code, peak, seconds = measure(cmd, args.interval)
    print(f"peak RSS (process tree, summed): {peak / 2**20:.0f} MiB over {seconds:.1f} s; exit {code}")
    sys.exit(code)


if __name__ == "__main__":
    main()
