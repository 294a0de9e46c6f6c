"""Training on a shared machine: `python bench/load.py` (or `make bench-load`).

Times the default model's epoch, as the product runs it (`cli.py train`, its own "Epoch N (T s)"
line), in each condition, one after another inside every round so that the VM's drift hits all
alike:
  quiet           the training alone;
  beside busy     beside one busy process (`while True: pass`) per spare CPU;
  two at once     two trainings started together (each one's epoch).
Each condition runs with the product's default threads (`auto`: the CPUs the process may use,
shared among pyro-vae processes, and a governor that keeps the faster count as load changes), and
with threads fixed at the CPU count (`PYRO_VAE_THREADS=N`, which is torch's default and what the
product did before) as the reference. `--old TREE` adds a checkout of older code (e.g.
`git worktree add /tmp/old <commit>`) run quiet, interleaved with the new quiet run, for the quiet
old/new ratio. Ratios are against the same round's quiet `auto` epoch; the report is their median.
Needs MNIST (data/mnist, or $PYRO_VAE_DATA).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from step_ab import cpu_name  # noqa: E402

from pyro_vae.runtime import cpus_available  # noqa: E402

EPOCH = re.compile(r"Epoch (\d+) \(([\d.]+)s\)")
BUSY = "while True: pass"


def start_training(tree: Path, folder: Path, *, epochs: int, threads: str | None,
                   env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), **(env or {})}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["PYRO_VAE_THREADS"] = threads
    else:
        env.pop("PYRO_VAE_THREADS", None)
    return subprocess.Popen([sys.executable, str(tree / "cli.py"), "train", "--epochs", str(epochs), "--fresh",
                             "--checkpoint-dir", str(folder / "checkpoints"), "--results-dir", str(folder / "results")],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def epoch_seconds(process: subprocess.Popen) -> list[float]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a training failed:\n{out[-2000:]}")
    return [float(seconds) for _, seconds in EPOCH.findall(out)]


def run(tree: Path, *, epochs: int, threads: str | None, together: int = 1, busy: int = 0,
        env: dict[str, str] | None = None) -> list[float]:
    """Each training's last epoch, in seconds: `together` trainings started at once, beside `busy` busy processes."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        time.sleep(0.5 if busy else 0)
        with tempfile.TemporaryDirectory() as scratch:
            folders = [Path(scratch) / f"run{i}" for i in range(together)]
            for folder in folders:
                folder.mkdir()
            processes = [start_training(tree, folder, epochs=epochs, threads=threads, env=env) for folder in folders]
            return [epoch_seconds(process)[-1] for process in processes]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="epochs a run; the last one is timed")
    parser.add_argument("--old", type=Path, help="a checkout of older code, timed quiet beside the new quiet run")
    parser.add_argument("--only", default="", help="comma-separated conditions to run (default: all)")
    args = parser.parse_args()

    cpus, why = cpus_available()
    fixed = str(cpus)
    spare = max(1, cpus - 1)
    conditions = {
        "quiet, auto": lambda: run(ROOT, epochs=args.epochs, threads=None),
        f"quiet, fixed {fixed}": lambda: run(ROOT, epochs=args.epochs, threads=fixed),
        "beside busy, auto": lambda: run(ROOT, epochs=args.epochs, threads=None, busy=spare),
        f"beside busy, fixed {fixed}": lambda: run(ROOT, epochs=args.epochs, threads=fixed, busy=spare),
        "two at once, auto": lambda: run(ROOT, epochs=args.epochs, threads=None, together=2),
        f"two at once, fixed {fixed}": lambda: run(ROOT, epochs=args.epochs, threads=fixed, together=2),
    }
    if args.old is not None:
        conditions["quiet, old code"] = lambda: run(args.old.resolve(), epochs=args.epochs, threads=None)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",")]
        conditions = {name: go for name, go in conditions.items() if any(name.startswith(w) for w in wanted)}
    print(f"{cpu_name()}; {why}; default model, fp32, epoch {args.epochs} of a run, {args.rounds} rounds", flush=True)
    print("threads fixed at the CPU count is torch's default and what the product did before", flush=True)
    run(ROOT, epochs=1, threads=None)  # warm-up: the kernel choice is measured once and cached
    epochs: dict[str, list[float]] = {name: [] for name in conditions}
    ratios: dict[str, list[float]] = {name: [] for name in conditions}
    for round_ in range(args.rounds):
        names = list(conditions) if round_ % 2 == 0 else list(reversed(conditions))
        got = {name: conditions[name]() for name in names}
        for name, seconds in got.items():
            epochs[name] += seconds
            if "quiet, auto" in got:
                ratios[name] += [s / got["quiet, auto"][0] for s in seconds]
        print(f"round {round_ + 1}: " + "; ".join(f"{n} {' / '.join(f'{s:.1f}' for s in got[n])} s" for n in conditions),
              flush=True)
    print(f"\n{'condition':<26} {'epoch (s), median [min-max]':>30} {'x quiet auto':>14}")
    for name in conditions:
        values, ratio = epochs[name], ratios[name]
        shown = f"{statistics.median(ratio):.2f}" if ratio else "-"
        print(f"{name:<26} {statistics.median(values):>12.1f} [{min(values):.1f}-{max(values):.1f}]{'':>6} {shown:>14}")
    if ratios.get("quiet, old code"):
        new_over_old = statistics.median(1 / r for r in ratios["quiet, old code"])
        print(f"quiet epoch, new / old code: {new_over_old:.3f} (median of the rounds' ratios)")
    print("targets: beside busy <= 1.6x quiet; two at once <= 2.4x each; quiet new/old <= 1.02")


if __name__ == "__main__":
    main()
