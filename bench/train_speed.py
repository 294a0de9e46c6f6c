"""Training speed on the machine at hand, in one run: `make bench` (or `python bench/train_speed.py`).

Measures the product's own training epoch (the code path `python cli.py train` takes), a minimal
hand-written PyTorch loop of the same model and loss as the eager reference, the machine's matrix
multiply throughput at the model's shapes and the floor it puts on an epoch, peak memory, and
the CLI's start-up times. Prints a table, then the same figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyro_vae import data  # noqa: E402
from pyro_vae.config import ModelConfig, Paths, TrainConfig, default_data_dir  # noqa: E402
from pyro_vae.model import VAE  # noqa: E402
from pyro_vae.runtime import native_bf16  # noqa: E402
from pyro_vae.train import build, run_epoch, train  # noqa: E402


def product_runner(images: torch.Tensor, *, precision: str) -> Callable[[], tuple[float, float]]:
    """One epoch of the product's own trainer (`build` and `run_epoch`, what `cli.py train` runs)."""
    config = TrainConfig(precision=precision)
    vae, optimizer, generator = build(ModelConfig(), config, device=torch.device("cpu"))

    def epoch() -> tuple[float, float]:
        start = time.perf_counter()
        reached = run_epoch(vae, optimizer, images, batch_size=config.batch_size, generator=generator,
                            precision=precision)
        # .item() is the epoch's one host sync, as in the trainer
        return time.perf_counter() - start, -reached.loss_sum.item() / len(images)

    return epoch


def handwritten_runner(images: torch.Tensor, *, fused: bool) -> Callable[[], tuple[float, float]]:
    """A minimal eager PyTorch loop of the same model and loss, with the KL term in closed form."""
    torch.manual_seed(0)
    vae = VAE(ModelConfig())  # only its two plain torch networks are used
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused or None)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> tuple[float, float]:
        start, total = time.perf_counter(), 0.0
        for x in data.epoch_batches(images, batch_size=128, generator=generator):
            z_loc, z_logstd = vae.encoder(x)
            z = z_loc + torch.exp(z_logstd) * torch.randn_like(z_loc)
            nll = F.binary_cross_entropy_with_logits(vae.decoder(z), x, reduction="sum")
            kl = 0.5 * (z_loc.pow(2) + torch.exp(2 * z_logstd) - 1 - 2 * z_logstd).sum()
            loss = nll + kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        return time.perf_counter() - start, -total / len(images)

    return epoch


def interleaved(runners: dict[str, Callable[[], tuple[float, float | None]]], *, epochs: int) -> dict:
    """Run every runner's epochs in turn, so all of them see the same machine (its noise included).

    Returns name -> steady-state median seconds (epoch 1 excluded), all seconds, lower bounds.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    bounds: dict[str, list[float | None]] = {name: [] for name in runners}
    for epoch in range(1, epochs + 1):
        for name, run in runners.items():
            s, lb = run()
            seconds[name].append(s)
            bounds[name].append(lb)
        print(f"epoch {epoch}/{epochs}: " + ", ".join(f"{n} {seconds[n][-1]:.2f}s" for n in runners), flush=True)
    return {name: {"epoch_s": round(statistics.median(seconds[name][1:]), 3),
                   "epochs_s": [round(x, 3) for x in seconds[name]],
                   "lower_bounds": [None if x is None else round(x, 3) for x in bounds[name]]} for name in runners}


def round_ratio(report: dict, a: str, b: str) -> float:
    """Median over rounds (epoch 1 excluded) of a's seconds over b's in the same round."""
    pairs = zip(report[a]["epochs_s"][1:], report[b]["epochs_s"][1:])
    return round(statistics.median(x / y for x, y in pairs), 3)


def startup(data_dir: Path, workdir: Path) -> dict:
    """What a `train` call spends outside its epochs: reading and verifying data, building, saving."""
    paths = Paths(data_dir=data_dir, checkpoint_dir=workdir / "ck-startup", results_dir=workdir / "res-startup")
    start = time.perf_counter()
    result = train(TrainConfig(epochs=1), paths=paths, device=torch.device("cpu"))
    total = time.perf_counter() - start
    return {"startup_s": round(total - result.metrics[0].seconds, 3), "checkpoint_dir": str(paths.checkpoint_dir),
            "compile_s": 0.0}  # the default path compiles nothing


def _layer_shapes(config: ModelConfig) -> list[tuple[int, int, bool]]:
    """(in, out, needs input gradient) for every linear layer of the VAE."""
    h, z = config.hidden_dim, config.z_dim
    x = data.IMAGE_PIXELS
    return [(x, h, False), (h, h, True), (h, z, True), (h, z, True),  # encoder: body, loc, logstd heads
            (z, h, True), (h, h, True), (h, x, True)]  # decoder


def _time_mm(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    for _ in range(3):
        torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return (time.perf_counter() - start) / repeats


def matmul_floor(*, batch: int = 128, n_images: int = 60000, repeats: int = 200) -> dict:
    """Time every matrix product of one training step at the model's shapes; the sum is a floor."""
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        flops, seconds = 0.0, 0.0
        for fan_in, fan_out, input_grad in _layer_shapes(ModelConfig()):
            products = [((batch, fan_in), (fan_in, fan_out)),  # forward
                        ((fan_out, batch), (batch, fan_in))]  # weight gradient
            if input_grad:
                products.append(((batch, fan_out), (fan_out, fan_in)))
            for (m, k), (_, n) in products:
                a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                seconds += _time_mm(a, b, repeats)
                flops += 2.0 * m * k * n
        steps = -(-n_images // batch)
        name = "fp32" if dtype == torch.float32 else "bf16"
        out[name] = {"gflop_per_epoch": round(flops * steps / 1e9, 1), "gflops": round(flops / seconds / 1e9, 1),
                     "floor_epoch_s": round(seconds * steps, 3)}
    return out


def floor_runner(precision: str) -> Callable[[], tuple[float, None]]:
    """The matmul floor, measured afresh each round so it sees the same machine as the epochs."""
    def measure() -> tuple[float, None]:
        return matmul_floor(repeats=50)[precision]["floor_epoch_s"], None

    return measure


def _best_wall(command: list[str], *, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def cli_times(checkpoint_dir: str, workdir: Path) -> dict:
    python = [sys.executable, str(ROOT / "cli.py")]
    return {
        "help_s": round(_best_wall([*python, "--help"]), 3),
        "generate_prior_s": round(_best_wall([*python, "generate", "--mode", "prior", "--checkpoint-dir",
                                              checkpoint_dir, "--results-dir", str(workdir / "gen")]), 3),
    }


def peak_training_memory_mb(data_dir: Path, workdir: Path) -> float:
    """Peak resident memory of `python cli.py train --epochs 1`, run as a user would."""
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--epochs", "1", "--data-dir", str(data_dir),
                    "--checkpoint-dir", str(workdir / "ck-mem"), "--results-dir", str(workdir / "res-mem")],
                   cwd=ROOT, check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs for each contender, taken in turn; also the fp32 vs bf16 lower-bound comparison")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "bench" / "train_speed.json")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up")
    data_dir = args.data_dir or default_data_dir()
    images, _ = data.ensure_split(data_dir, "train")
    bf16 = native_bf16(torch.device("cpu"))
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                                "torch": torch.__version__, "native_bf16": bf16}}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Memory first: RUSAGE_CHILDREN keeps the maximum over all children waited for.
        report["peak_train_memory_mb"] = round(peak_training_memory_mb(data_dir, workdir), 1)
        report["startup"] = startup(data_dir, workdir)
        report["cli"] = cli_times(report["startup"]["checkpoint_dir"], workdir)
        runners = {"product_fp32": product_runner(images, precision="fp32")}
        if bf16:
            runners["product_bf16"] = product_runner(images, precision="bf16")
        runners["handwritten"] = handwritten_runner(images, fused=False)
        runners["handwritten_fused_adam"] = handwritten_runner(images, fused=True)
        runners["floor_fp32"] = floor_runner("fp32")
        if bf16:
            runners["floor_bf16"] = floor_runner("bf16")
        report.update(interleaved(runners, epochs=args.epochs))
    report["matmul"] = matmul_floor()

    # Ratios are taken round by round (each round's contenders ran back to back), then the median.
    report["ratios"] = {
        "product_fp32_over_handwritten": round_ratio(report, "product_fp32", "handwritten"),
        "product_fp32_over_fp32_floor": round_ratio(report, "product_fp32", "floor_fp32"),
    }
    if bf16:
        report["ratios"]["product_bf16_over_product_fp32"] = round_ratio(report, "product_bf16", "product_fp32")
        report["ratios"]["bf16_minus_fp32_lower_bound"] = round(
            report["product_bf16"]["lower_bounds"][-1] - report["product_fp32"]["lower_bounds"][-1], 3)
    print()
    print_table(report, epochs=args.epochs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"(also written to {args.json})")


def print_table(report: dict, *, epochs: int) -> None:
    median = f"median of epochs 2-{epochs}"
    rows = [("product, fp32 (python cli.py train)", f"{report['product_fp32']['epoch_s']:.2f} s/epoch", median)]
    if "product_bf16" in report:
        rows.append(("product, --precision bf16", f"{report['product_bf16']['epoch_s']:.2f} s/epoch", median))
    rows += [
        ("hand-written PyTorch loop", f"{report['handwritten']['epoch_s']:.2f} s/epoch", "analytic KL, no Pyro, Adam"),
        ("hand-written, fused Adam", f"{report['handwritten_fused_adam']['epoch_s']:.2f} s/epoch", ""),
        ("train start-up (outside epochs)", f"{report['startup']['startup_s']:.2f} s",
         "data check, build, checkpoint; no compilation"),
    ]
    for name in ("fp32", "bf16"):
        mm = report["matmul"][name]
        floor = report.get(f"floor_{name}", {}).get("epoch_s", mm["floor_epoch_s"])
        rows.append((f"matmul floor, {name}", f"{floor:.2f} s/epoch",
                     f"{mm['gflop_per_epoch'] / floor:.0f} GFLOP/s at the model's shapes, {mm['gflop_per_epoch']:.0f} GFLOP"))
    ratios = report["ratios"]
    rows.append(("ratios below: median over rounds", "", "each round runs every contender back to back"))
    rows.append(("product fp32 / hand-written", f"{ratios['product_fp32_over_handwritten']:.2f}x", "target <= 1.0"))
    rows.append(("product fp32 / fp32 floor", f"{ratios['product_fp32_over_fp32_floor']:.2f}x", "target <= 1.5"))
    if "product_bf16_over_product_fp32" in ratios:
        rows.append(("product bf16 / product fp32", f"{ratios['product_bf16_over_product_fp32']:.2f}x",
                     "target <= 0.6"))
        rows.append((f"lower bound at epoch {epochs}, bf16 - fp32", f"{ratios['bf16_minus_fp32_lower_bound']:+.2f} nats",
                     f"fp32 {report['product_fp32']['lower_bounds'][-1]:.2f}, target within 0.5"))
    rows.append(("peak memory, training", f"{report['peak_train_memory_mb']:.0f} MB", "target < 1024"))
    rows.append(("python cli.py --help", f"{report['cli']['help_s']:.2f} s", "target < 0.5"))
    rows.append(("python cli.py generate --mode prior", f"{report['cli']['generate_prior_s']:.2f} s", "target < 3"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    print()


if __name__ == "__main__":
    main()
