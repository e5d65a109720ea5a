"""What the pack adds to ComfyUI's start-up time (goal: < 0.5 s).

Three measurements, each the median of --runs fresh processes:
  1. pack import in-process: a fresh interpreter boots ComfyUI with its built-in nodes (not timed), then
     times ``nodes.load_custom_node(<pack>)`` alone: the precise figure;
  2. ComfyUI's own "Import times for custom nodes" line for the pack (main.py prints 0.1 s resolution);
  3. ``main.py --quick-test-for-ci`` wall and CPU time with the pack versus with no custom nodes (noisy on a
     shared machine; the difference is only meaningful when it is large).

Usage:  .venv/bin/python benchmarks/startup_time.py [--runs 3] [--check]
        (COMFYUI_PATH selects another ComfyUI checkout, as for the tests)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from harness.locations import PACK_NAME, SessionDirs, comfyui_path  # noqa: E402
from harness.server import custom_node_import_times, main_command, server_env  # noqa: E402

log = logging.getLogger("microcinema.benchmarks.startup")
GOAL_SECONDS = 0.5

# Run in a fresh interpreter: boot the harness's in-process ComfyUI and report how long the pack took.
_IN_PROCESS = """
import json, logging, pathlib, sys, tempfile
logging.disable(logging.WARNING)
sys.path.insert(0, {tests!r})
from harness import runtime
from harness.locations import SessionDirs
rt = runtime.boot(SessionDirs.create(pathlib.Path(tempfile.mkdtemp(prefix="mc-bench-"))))
print("RESULT " + json.dumps({{"pack": rt.pack_seconds, "boot": rt.boot_seconds, "version": rt.version}}))
"""


def in_process_pack_seconds() -> dict:
    code = _IN_PROCESS.format(tests=str(REPO_ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env=server_env())
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"in-process boot failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def quick_test(dirs: SessionDirs, with_pack: bool) -> dict:
    cmd = main_command(dirs, with_pack=with_pack, extra=["--quick-test-for-ci"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(comfyui_path()), capture_output=True, text=True, timeout=600,
                          env=server_env())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"quick test failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    reported = custom_node_import_times(proc.stdout + proc.stderr).get(PACK_NAME)
    if with_pack and (reported is None or not reported[1]):
        raise RuntimeError("the pack did not import:\n" + (proc.stdout + proc.stderr)[-4000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "reported": reported[0] if reported else None}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per measurement (median)")
    parser.add_argument("--skip-quick-test", action="store_true", help="only the in-process measurement")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the pack takes >= {GOAL_SECONDS} s")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    log.info("ComfyUI at %s; PYTHONDONTWRITEBYTECODE=%s (1: every run compiles the pack's sources again)",
             comfyui_path(), os.environ.get("PYTHONDONTWRITEBYTECODE", ""))
    results: dict = {"runs": args.runs}
    inproc = []
    for i in range(args.runs):
        r = in_process_pack_seconds()
        inproc.append(r["pack"])
        results["version"] = r["version"]
        log.info("  in-process run %d: pack %.3f s (ComfyUI boot %.1f s)", i + 1, r["pack"], r["boot"])
    results["pack_import_s"] = median(inproc)

    if not args.skip_quick_test:
        with tempfile.TemporaryDirectory(prefix="mc-bench-") as tmp:
            dirs = SessionDirs.create(Path(tmp))
            with_pack, without = [], []
            for i in range(args.runs):  # alternate, so drift in machine load hits both sides alike
                without.append(quick_test(dirs, with_pack=False))
                with_pack.append(quick_test(dirs, with_pack=True))
                log.info("  quick-test run %d: without %.2f s wall / %.2f s cpu, with %.2f s wall / %.2f s cpu",
                         i + 1, without[-1]["wall"], without[-1]["cpu"], with_pack[-1]["wall"], with_pack[-1]["cpu"])
        results["comfy_reported_s"] = median([r["reported"] for r in with_pack])
        for key in ("wall", "cpu"):
            results[f"quick_test_{key}_without_s"] = median([r[key] for r in without])
            results[f"quick_test_{key}_with_s"] = median([r[key] for r in with_pack])
            results[f"quick_test_{key}_delta_s"] = results[f"quick_test_{key}_with_s"] - \
                results[f"quick_test_{key}_without_s"]

    print(f"ComfyUI {results.get('version')}: start-up time the pack adds (median of {args.runs})")
    print(f"  pack import, in-process (load_custom_node): {results['pack_import_s']:.3f} s   goal < {GOAL_SECONDS} s")
    if not args.skip_quick_test:
        print(f"  ComfyUI's 'Import times for custom nodes':   {results['comfy_reported_s']:.1f} s")
        for key in ("wall", "cpu"):
            print(f"  --quick-test-for-ci {key:4}: without {results[f'quick_test_{key}_without_s']:.2f} s, "
                  f"with {results[f'quick_test_{key}_with_s']:.2f} s, delta {results[f'quick_test_{key}_delta_s']:+.2f} s")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if args.check and results["pack_import_s"] >= GOAL_SECONDS else 0


if __name__ == "__main__":
    sys.exit(main())
