"""The product's training step in two source trees, interleaved: `python bench/step_ab.py OLD NEW`.

Each tree is a checkout of pyro-vae (e.g. `git worktree add /tmp/old <commit>` and this clone).
Every round starts one process per tree, in alternating order, that builds the model as the
trainer builds it (kernels included) and times `--steps` steps of its own `run_epoch` on 60000
random images, after `--warmup` steps. The VM's noise drifts from minute to minute, so only
rounds taken side by side are compared: the report is the per-round ratio NEW / OLD and its median.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

# Runs inside each tree's process: its own pyro_vae (the trainer was pyro_vae.train before it was
# pyro_vae.trainer), so the code timed is that tree's code.
_STEP = """
import json, sys, time, torch
sys.path.insert(0, {tree!r})
try:
    from pyro_vae.trainer import build, run_epoch
except ImportError:
    from pyro_vae.train import build, run_epoch  # noqa: F401 (a tree from before the rename)
from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.objectives import loss_fn
import pyro_vae
assert pyro_vae.__file__.startswith({tree!r}), pyro_vae.__file__
config = TrainConfig()
images = torch.randint(0, 256, (60000, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
vae, optimizer, generator = build(ModelConfig(), config, device=torch.device("cpu"))
loss = loss_fn(config.objective, particles=config.particles)
steps = {{"n": 0}}
def stop_after(n):
    def stop():
        steps["n"] += 1
        return steps["n"] >= n
    return stop
run_epoch(vae, optimizer, images, batch_size=config.batch_size, generator=generator, loss=loss,
          precision="fp32", stop=stop_after({warmup}))
steps["n"] = 0
start = time.perf_counter()
run_epoch(vae, optimizer, images, batch_size=config.batch_size, generator=generator, loss=loss,
          precision="fp32", stop=stop_after({steps}))
print(json.dumps({{"ms_per_step": (time.perf_counter() - start) * 1000 / {steps}}}))
"""


def one_block(tree: Path, *, steps: int, warmup: int) -> float:
    code = _STEP.format(tree=str(tree), steps=steps, warmup=warmup)
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["ms_per_step"]


def cpu_name() -> str:
    """The processor's model name (`lscpu`'s), or the machine type where /proc/cpuinfo is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    times: dict[str, list[float]] = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for name in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
            times[name].append(one_block(trees[name], steps=args.steps, warmup=args.warmup))
        print(f"round {round_ + 1}: old {times['old'][-1]:.2f} ms/step, new {times['new'][-1]:.2f} ms/step, "
              f"new/old {times['new'][-1] / times['old'][-1]:.3f}", flush=True)
    ratios = [n / o for n, o in zip(times["new"], times["old"])]
    print(f"machine: {cpu_name()}; median ms/step old "
          f"{statistics.median(times['old']):.2f}, new {statistics.median(times['new']):.2f}; "
          f"median ratio new/old {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
