"""Training speed on the machine at hand, in one run: `make bench` (or `python bench/train_speed.py`).

Measures the product's own training epoch (the code path `python cli.py train` takes), a minimal
hand-written PyTorch loop of the same model and loss as the eager reference, the machine's matrix
multiply throughput at the model's shapes and the floor it puts on an epoch, peak memory, and
the CLI's start-up times. Prints a table, then the same figures as JSON.
"""

from __future__ import annotations

import argparse
import functools
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

from pyro_vae import data, kernels
from pyro_vae.config import EVAL_CHUNK, ModelConfig, Paths, TrainConfig, default_data_dir
from pyro_vae.evaluate import evaluate
from pyro_vae.model import VAE
from pyro_vae.objectives import loss_fn
from pyro_vae.runtime import native_bf16
from pyro_vae.trainer import build, run_epoch, train

ROOT = Path(__file__).resolve().parent.parent  # the repository: cli.py, and where results/ go


def product_runner(images: torch.Tensor, *, precision: str, objective: str = "elbo",
                   particles: int = 1) -> Callable[[], tuple[float, float]]:
    """One epoch of the product's own trainer (`build` and `run_epoch`, what `cli.py train` runs),
    its matrix kernels calibrated as `train` calibrates them."""
    config = TrainConfig(precision=precision, objective=objective, particles=particles)
    vae, optimizer, generator = build(ModelConfig(), config, device=torch.device("cpu"))
    loss = loss_fn(objective, particles=particles)

    def epoch() -> tuple[float, float]:
        start = time.perf_counter()
        reached = run_epoch(vae, optimizer, images, batch_size=config.batch_size, generator=generator,
                            precision=precision, loss=loss)
        # .item() is the epoch's one host sync, as in the trainer
        return time.perf_counter() - start, -reached.loss_sum.item() / len(images)

    epoch.vae = vae  # type: ignore[attr-defined]  # the evaluation bench scores the trained model
    return epoch


def handwritten_runner(images: torch.Tensor, *, fused: bool) -> Callable[[], tuple[float, float]]:
    """A minimal eager PyTorch loop of the same model and loss, with the KL term in closed form."""
    torch.manual_seed(0)
    vae = VAE(ModelConfig())  # only its two plain torch networks are used
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused or None)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> tuple[float, float]:
        start, total = time.perf_counter(), 0.0
        for x in data.batches(images, data.shuffle(len(images), generator=generator), batch_size=128,
                              generator=generator):
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


def _time(run: Callable[[], torch.Tensor], repeats: int) -> float:
    for _ in range(3):
        run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def _products(rows: int, fan_in: int, fan_out: int, *, backward: bool, input_grad: bool,
              dtype: torch.dtype) -> dict[str, dict[str, Callable[[], torch.Tensor]]]:
    """product -> kernel -> a call of that product at these shapes (the trainer's own functions)."""
    x, w = torch.randn(rows, fan_in, dtype=dtype), torch.randn(fan_out, fan_in, dtype=dtype)
    b, g = torch.randn(fan_out, dtype=dtype), torch.randn(rows, fan_out, dtype=dtype)
    names = [k for k in kernels.KERNELS if k == kernels.DEFAULT or kernels.onednn_available(torch.device("cpu"))]
    operands = {"forward": (x, w, b), "grad_weight": (g, x), "grad_input": (g, w)}
    wanted = ["forward"] + (["grad_weight"] + (["grad_input"] if input_grad else []) if backward else [])
    return {product: {k: functools.partial(kernels.PRODUCTS_ON[product][k], *operands[product]) for k in names}
            for product in wanted}


def matmul_floor(*, rows: int = 128, steps: int = 469, repeats: int = 200, backward: bool = True,
                 dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16), decoder_rows: int | None = None) -> dict:
    """Time every matrix product of one step at the model's shapes on each kernel; x steps is a floor.

    fp32 gets one floor per kernel (torch's default, oneDNN) and `fastest`, the fastest kernel of
    each product (what the trainer's calibration can reach); bf16 runs on torch's default.
    `decoder_rows` (particles x batch) serves the IWAE objective and evaluation, where the decoder
    sees more rows than the encoder.
    """
    out = {}
    for dtype in dtypes:
        flops, seconds = 0.0, {}
        best = 0.0
        for index, (fan_in, fan_out, input_grad) in enumerate(_layer_shapes(ModelConfig())):
            decoder = index >= 4
            n = decoder_rows if decoder and decoder_rows else rows
            table = _products(n, fan_in, fan_out, backward=backward, input_grad=input_grad, dtype=dtype)
            for product, by_kernel in table.items():
                if dtype != torch.float32:
                    by_kernel = {kernels.DEFAULT: by_kernel[kernels.DEFAULT]}
                timed = {k: _time(run, repeats) for k, run in by_kernel.items()}
                for k, t in timed.items():
                    seconds[k] = seconds.get(k, 0.0) + t
                best += min(timed.values())
                flops += 2.0 * n * fan_in * fan_out
        name = "fp32" if dtype == torch.float32 else "bf16"
        if dtype == torch.float32:
            seconds["fastest"] = best
        out[name] = {k: {"gflops": round(flops / t / 1e9, 1), "floor_epoch_s": round(t * steps, 3)}
                     for k, t in seconds.items()}
        out[name]["gflop_per_epoch"] = round(flops * steps / 1e9, 1)
    return out


def floor_runner(precision: str, kernel: str, **shapes: int) -> Callable[[], tuple[float, None]]:
    """A matmul floor, measured afresh each round so it sees the same machine as the epochs."""
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16

    def measure() -> tuple[float, None]:
        return matmul_floor(repeats=30, dtypes=(dtype,), **shapes)[precision][kernel]["floor_epoch_s"], None

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


def evaluation_bench(vae: VAE, *, data_dir: Path, images: int, particles: int, rounds: int = 3) -> dict:
    """`evaluate` with K particles on the first test images, on torch's default kernels (as `python
    cli.py evaluate` runs a loaded model), against its own matmul floor on those kernels (forward
    products only: the encoder at 100 rows, the decoder at chunk x 100 rows), in alternate rounds;
    and its figures with every product on oneDNN against those on the default."""
    default, onednn = kernels.default_plan(vae), {key: {p: kernels.ONEDNN for p in kernels.PRODUCTS}
                                                  for key in kernels.default_plan(vae)}
    test, _ = data.load_split(data_dir, "test")
    x = data.binarize_once(test)[:images]
    batch, chunk = 100, EVAL_CHUNK
    steps = -(-images // batch) * -(-particles // chunk)
    seconds, floors = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        with kernels.used(vae, default):
            result = evaluate(vae, x, particles=particles)
        seconds.append(time.perf_counter() - start)
        floor = matmul_floor(rows=batch, decoder_rows=chunk * batch, steps=steps, repeats=3, backward=False,
                             dtypes=(torch.float32,))
        floors.append(floor["fp32"][kernels.DEFAULT]["floor_epoch_s"])  # the kernels evaluate ran on
    out = {"images": images, "particles": particles, "seconds": round(statistics.median(seconds), 2),
           "floor_s": round(statistics.median(floors), 2),
           "ratio": round(statistics.median(a / b for a, b in zip(seconds, floors)), 3),
           "full_test_set_minutes": round(statistics.median(seconds) * len(test) / images / 60, 2),
           "log_likelihood": round(result.log_likelihood, 3), "se": round(result.log_likelihood_se, 3)}
    if kernels.onednn_available(torch.device("cpu")):
        with kernels.used(vae, onednn):
            out["log_likelihood_onednn"] = round(evaluate(vae, x, particles=particles).log_likelihood, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20,
                        help="epochs for each contender, taken in turn; also the fp32 vs bf16 lower-bound comparison")
    parser.add_argument("--eval-images", type=int, default=500,
                        help="test images for the evaluation bench (K=1000); the ratio does not depend on it")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "bench" / "train_speed.json")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is warm-up")
    data_dir = args.data_dir or default_data_dir()
    images, _ = data.ensure_split(data_dir, "train")
    bf16 = native_bf16(torch.device("cpu"))
    report: dict = {"machine": {"cpu": torch.cpu.get_capabilities().get("cpu_name") or platform.machine(), "threads": torch.get_num_threads(),
                                "torch": torch.__version__, "native_bf16": bf16,
                                "onednn": kernels.onednn_available(torch.device("cpu"))}}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Memory first: RUSAGE_CHILDREN keeps the maximum over all children waited for.
        report["peak_train_memory_mb"] = round(peak_training_memory_mb(data_dir, workdir), 1)
        report["startup"] = startup(data_dir, workdir)
        report["cli"] = cli_times(report["startup"]["checkpoint_dir"], workdir)
        product = product_runner(images, precision="fp32")
        report["kernels"] = kernels.summary(kernels.plan_of(product.vae))
        runners = {"product_fp32": product}
        if bf16:
            runners["product_bf16"] = product_runner(images, precision="bf16")
        runners["product_iwae5"] = product_runner(images, precision="fp32", objective="iwae", particles=5)
        runners["handwritten"] = handwritten_runner(images, fused=True)
        for kernel in ("fastest", kernels.DEFAULT, kernels.ONEDNN):
            if kernel != kernels.ONEDNN or report["machine"]["onednn"]:
                runners[f"floor_fp32_{kernel}"] = floor_runner("fp32", kernel)
        if bf16:
            runners["floor_bf16"] = floor_runner("bf16", kernels.DEFAULT)
        runners["floor_iwae5"] = floor_runner("fp32", "fastest", decoder_rows=5 * 128)
        report.update(interleaved(runners, epochs=args.epochs))
        report["evaluate"] = evaluation_bench(product.vae, data_dir=data_dir, images=args.eval_images,
                                              particles=1000)
    report["matmul"] = matmul_floor()

    # Ratios are taken round by round (each round's contenders ran back to back), then the median.
    report["ratios"] = {
        "product_fp32_over_fastest_floor": round_ratio(report, "product_fp32", "floor_fp32_fastest"),
        "product_fp32_over_default_floor": round_ratio(report, "product_fp32", "floor_fp32_default"),
        "product_fp32_over_handwritten": round_ratio(report, "product_fp32", "handwritten"),
        "iwae5_over_elbo": round_ratio(report, "product_iwae5", "product_fp32"),
        "iwae5_over_its_floor": round_ratio(report, "product_iwae5", "floor_iwae5"),
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
    seconds = lambda name: f"{report[name]['epoch_s']:.2f} s/epoch"  # noqa: E731
    rows = [("product, fp32 (python cli.py train)", seconds("product_fp32"), f"{median}; {report['kernels']}")]
    if "product_bf16" in report:
        rows.append(("product, --precision bf16", seconds("product_bf16"), median))
    rows += [
        ("product, --objective iwae --particles 5", seconds("product_iwae5"), median),
        ("hand-written PyTorch loop, fused Adam", seconds("handwritten"), "analytic KL, no Pyro"),
        ("train start-up (outside epochs)", f"{report['startup']['startup_s']:.2f} s",
         "data check, build, kernel calibration, checkpoint"),
    ]
    gflop = report["matmul"]["fp32"]["gflop_per_epoch"]
    for name, note in (("floor_fp32_fastest", "fastest kernel of each product"),
                       ("floor_fp32_default", "torch's default (MKL)"), ("floor_fp32_onednn", "oneDNN"),
                       ("floor_bf16", "bf16, torch's default"), ("floor_iwae5", "IWAE k=5, fastest fp32")):
        if name in report:
            gflops = f"{gflop / report[name]['epoch_s']:.0f} GFLOP/s, " if name != "floor_iwae5" else ""
            rows.append((f"matmul floor, {note}", seconds(name), f"{gflops}{median}"))
    ev = report["evaluate"]
    rows.append((f"evaluate, K={ev['particles']}, {ev['images']} test images", f"{ev['seconds']:.2f} s",
                 f"floor {ev['floor_s']:.2f} s; the whole test set ~{ev['full_test_set_minutes']:.1f} min"))
    ratios = report["ratios"]
    rows.append(("ratios below: median over rounds", "", "each round runs every contender back to back"))
    rows.append(("product fp32 / fastest fp32 floor", f"{ratios['product_fp32_over_fastest_floor']:.2f}x",
                 "target <= 1.6"))
    rows.append(("product fp32 / MKL fp32 floor", f"{ratios['product_fp32_over_default_floor']:.2f}x", ""))
    rows.append(("product fp32 / hand-written", f"{ratios['product_fp32_over_handwritten']:.2f}x", ""))
    if "product_bf16_over_product_fp32" in ratios:
        rows.append(("product bf16 / product fp32", f"{ratios['product_bf16_over_product_fp32']:.2f}x",
                     "target <= 0.75"))
        rows.append((f"lower bound at epoch {epochs}, bf16 - fp32", f"{ratios['bf16_minus_fp32_lower_bound']:+.2f} nats",
                     f"fp32 {report['product_fp32']['lower_bounds'][-1]:.2f}, target within 0.5"))
    rows.append(("IWAE k=5 / ELBO epoch", f"{ratios['iwae5_over_elbo']:.2f}x", "target <= 2.0"))
    rows.append(("IWAE k=5 / its own floor", f"{ratios['iwae5_over_its_floor']:.2f}x", ""))
    rows.append(("evaluate / its own floor", f"{ev['ratio']:.2f}x", "target <= 2.5"))
    onednn = f", oneDNN {ev['log_likelihood_onednn']:.3f}" if "log_likelihood_onednn" in ev else ""
    rows.append(("evaluate's log p(x)", f"{ev['log_likelihood']:.3f}", f"+- {ev['se']:.3f}{onednn}"))
    rows.append(("peak memory, training", f"{report['peak_train_memory_mb']:.0f} MB", "target < 1024"))
    rows.append(("python cli.py --help", f"{report['cli']['help_s']:.2f} s", "target < 0.5"))
    rows.append(("python cli.py generate --mode prior", f"{report['cli']['generate_prior_s']:.2f} s", "target < 3"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    print()


if __name__ == "__main__":
    main()
