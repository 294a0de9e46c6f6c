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
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyro_vae import data  # noqa: E402
from pyro_vae.config import ModelConfig, Paths, TrainConfig, default_data_dir  # noqa: E402
from pyro_vae.model import VAE  # noqa: E402
from pyro_vae.runtime import native_bf16  # noqa: E402
from pyro_vae.train import train  # noqa: E402


def product(*, precision: str, epochs: int, data_dir: Path, workdir: Path) -> dict:
    """Train with the product's own `train` (what the CLI calls); steady state excludes epoch 1."""
    paths = Paths(data_dir=data_dir, checkpoint_dir=workdir / f"ck-{precision}-{epochs}",
                  results_dir=workdir / f"res-{precision}-{epochs}")
    start = time.perf_counter()
    result = train(TrainConfig(epochs=epochs, save_every=epochs, precision=precision), paths=paths,
                   device=torch.device("cpu"))
    total = time.perf_counter() - start
    seconds = [m.seconds for m in result.metrics]
    return {
        "epoch_s": statistics.median(seconds[1:]),
        "epochs_s": [round(s, 3) for s in seconds],
        "startup_s": round(total - sum(seconds), 3),  # data, model, checkpoints: all but the epochs
        "lower_bounds": [round(m.lower_bound, 3) for m in result.metrics],
        "checkpoint_dir": str(paths.checkpoint_dir),
    }


def handwritten(images: torch.Tensor, *, epochs: int, fused: bool) -> dict:
    """A minimal eager PyTorch loop of the same model and loss, with the KL term in closed form."""
    torch.manual_seed(0)
    vae = VAE(ModelConfig())  # only its two plain torch networks are used
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused or None)
    generator = torch.Generator().manual_seed(0)
    seconds, bounds = [], []
    for _ in range(epochs):
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
        seconds.append(time.perf_counter() - start)
        bounds.append(-total / len(images))
    return {"epoch_s": statistics.median(seconds[1:]), "epochs_s": [round(s, 3) for s in seconds],
            "lower_bounds": [round(b, 3) for b in bounds]}


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
    parser.add_argument("--epochs", type=int, default=4, help="epochs per timed run (median of all but the first)")
    parser.add_argument("--quality-epochs", type=int, default=20,
                        help="epochs for the fp32 vs bf16 lower-bound comparison (0 skips it)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "bench" / "train_speed.json")
    args = parser.parse_args()
    data_dir = args.data_dir or default_data_dir()
    images, _ = data.ensure_split(data_dir, "train")
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                                "torch": torch.__version__, "native_bf16": native_bf16(torch.device("cpu"))}}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Memory first: RUSAGE_CHILDREN keeps the maximum over all children waited for.
        report["peak_train_memory_mb"] = round(peak_training_memory_mb(data_dir, workdir), 1)
        report["product_fp32"] = product(precision="fp32", epochs=args.epochs, data_dir=data_dir, workdir=workdir)
        if report["machine"]["native_bf16"]:
            report["product_bf16"] = product(precision="bf16", epochs=args.epochs, data_dir=data_dir, workdir=workdir)
        report["handwritten"] = handwritten(images, epochs=args.epochs, fused=False)
        report["handwritten_fused_adam"] = handwritten(images, epochs=args.epochs, fused=True)
        report["matmul"] = matmul_floor()
        report["cli"] = cli_times(report["product_fp32"]["checkpoint_dir"], workdir)
        if args.quality_epochs and report["machine"]["native_bf16"]:
            quality = {p: product(precision=p, epochs=args.quality_epochs, data_dir=data_dir, workdir=workdir)
                       for p in ("fp32", "bf16")}
            report["quality"] = {
                "epochs": args.quality_epochs,
                "fp32_lower_bound": quality["fp32"]["lower_bounds"][-1],
                "bf16_lower_bound": quality["bf16"]["lower_bounds"][-1],
                "fp32_epoch_s": quality["fp32"]["epoch_s"], "bf16_epoch_s": quality["bf16"]["epoch_s"],
            }

    fp32 = report["product_fp32"]["epoch_s"]
    report["ratios"] = {
        "product_fp32_over_handwritten": round(fp32 / report["handwritten"]["epoch_s"], 3),
        "product_fp32_over_fp32_floor": round(fp32 / report["matmul"]["fp32"]["floor_epoch_s"], 3),
    }
    if "product_bf16" in report:
        report["ratios"]["product_bf16_over_product_fp32"] = round(report["product_bf16"]["epoch_s"] / fp32, 3)
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def print_table(report: dict) -> None:
    rows = [("product, fp32 (python cli.py train)", f"{report['product_fp32']['epoch_s']:.2f} s/epoch",
             f"start-up {report['product_fp32']['startup_s']:.2f} s")]
    if "product_bf16" in report:
        rows.append(("product, --precision bf16", f"{report['product_bf16']['epoch_s']:.2f} s/epoch",
                     f"start-up {report['product_bf16']['startup_s']:.2f} s"))
    rows += [
        ("hand-written PyTorch loop (Adam)", f"{report['handwritten']['epoch_s']:.2f} s/epoch", "analytic KL, no Pyro"),
        ("hand-written, fused Adam", f"{report['handwritten_fused_adam']['epoch_s']:.2f} s/epoch", ""),
    ]
    for name in ("fp32", "bf16"):
        mm = report["matmul"][name]
        rows.append((f"matmul floor, {name}", f"{mm['floor_epoch_s']:.2f} s/epoch",
                     f"{mm['gflops']:.0f} GFLOP/s over {mm['gflop_per_epoch']:.0f} GFLOP"))
    ratios = report["ratios"]
    rows.append(("product fp32 / hand-written", f"{ratios['product_fp32_over_handwritten']:.2f}x", "target <= 1.0"))
    rows.append(("product fp32 / fp32 floor", f"{ratios['product_fp32_over_fp32_floor']:.2f}x", "target <= 1.5"))
    if "product_bf16_over_product_fp32" in ratios:
        rows.append(("product bf16 / product fp32", f"{ratios['product_bf16_over_product_fp32']:.2f}x",
                     "target <= 0.6"))
    if "quality" in report:
        q = report["quality"]
        rows.append((f"lower bound after {q['epochs']} epochs", f"fp32 {q['fp32_lower_bound']:.2f}",
                     f"bf16 {q['bf16_lower_bound']:.2f} (target: within 0.5 nats)"))
    rows.append(("peak memory, training", f"{report['peak_train_memory_mb']:.0f} MB", "target < 1024"))
    rows.append(("python cli.py --help", f"{report['cli']['help_s']:.2f} s", "target < 0.5"))
    rows.append(("python cli.py generate --mode prior", f"{report['cli']['generate_prior_s']:.2f} s", "target < 3"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    print()


if __name__ == "__main__":
    main()
