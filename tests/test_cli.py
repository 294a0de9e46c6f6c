"""The command line, in process: the user's commands end to end on synthetic MNIST, and every error in one line."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
from PIL import Image

from pyro_vae.metrics import read_history


@pytest.fixture
def dirs(tmp_path, mnist_dir):
    return {"--checkpoint-dir": tmp_path / "ck", "--results-dir": tmp_path / "res"}


def opts(dirs, *names):
    return [item for name in (names or dirs) for item in (name, dirs[name])]


@pytest.fixture
def trained(dirs, cli_invoke, tiny_options):
    result = cli_invoke("train", "--epochs", "2", "--save-every", "1", *tiny_options, *opts(dirs, "--checkpoint-dir"))
    assert result.exit_code == 0, result.output
    return dirs


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


def test_train_prints_seed_style_epoch_lines_and_resumes(trained, cli_invoke):
    result = cli_invoke("train", "--epochs", "3", *opts(trained, "--checkpoint-dir"))
    assert result.exit_code == 0, result.output
    assert "Restoring model from" in result.stdout and "vae.epoch.2.pt" in result.stdout
    assert re.search(r"^Epoch 3 \(\d+\.\d+s\): Lower bound = -\d+\.\d+$", result.stdout, re.M)
    assert "Epoch 1 " not in result.stdout


def test_generate_prior_writes_a_ten_by_ten_grid(trained, cli_invoke):
    result = cli_invoke("generate", "--mode", "prior", "--scale", "1", *opts(trained))
    assert result.exit_code == 0, result.output
    path = trained["--results-dir"] / "random_samples.png"
    assert f"wrote {path}" in result.stdout
    with Image.open(path) as image:
        assert image.size == (280, 280)  # --scale 1: the seed's raw grid; its caption is in the metadata
        assert image.text["mode"] == "prior" and image.text["epoch"] == "2" and image.text["seed"] == "0"


def test_generate_digit_writes_one_grid_per_digit_deterministically(trained, cli_invoke):
    result = cli_invoke("generate", "--mode", "digit", "--noise", "0.7", *opts(trained))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in trained["--results-dir"].glob("*.png"))
    assert names == [f"{d}.png" for d in range(10)]
    assert result.stdout.count("wrote ") == 10
    first = digest(trained["--results-dir"])
    cli_invoke("generate", "--mode", "digit", "--noise", "0.7", *opts(trained))
    assert digest(trained["--results-dir"]) == first
    cli_invoke("generate", "--mode", "digit", "--noise", "0.7", "--seed", "1", *opts(trained))
    assert digest(trained["--results-dir"]) != first


def test_generate_subset_of_digits_and_scale(trained, cli_invoke):
    result = cli_invoke("generate", "--mode", "digit", "--digits", "3,8", "--n", "4", "--scale", "3", *opts(trained))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in trained["--results-dir"].glob("*.png")) == ["3_n4.png", "8_n4.png"]
    with Image.open(trained["--results-dir"] / "3_n4.png") as image:
        assert image.width >= 2 * 28 * 3 and image.height > 2 * 28 * 3  # the grid and its caption above


def test_fresh_starts_over(trained, cli_invoke):
    result = cli_invoke("train", "--epochs", "1", "--fresh", *opts(trained, "--checkpoint-dir"))
    assert result.exit_code == 0, result.output
    assert "Epoch 1 " in result.stdout and "Restoring" not in result.stdout
    assert any(p.name.startswith("archive-") for p in trained["--checkpoint-dir"].iterdir())


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "--epochs", "0"], ["--epochs must be at least 1"]),
        (["train", "--epochs", "ten"], ["--epochs"]),
        (["train", "--lr", "-1"], ["--lr must be a positive number"]),
        (["train", "--lr", "nan"], ["--lr must be a positive number"]),
        (["train", "--keep", "0"], ["--keep must be at least 1"]),
        (["train", "--device", "tpu"], ["--device"]),
        (["train", "--unknown-flag"], ["No such option"]),
        (["generate", "--n", "0"], ["--n must be between 1 and 10000"]),
        (["generate", "--mode", "digit", "--noise", "nan"], ["--noise must be a finite number"]),
        (["generate", "--mode", "digit", "--noise", "inf"], ["--noise must be a finite number"]),
        (["generate", "--mode", "dream"], ["--mode"]),
        (["generate", "--scale", "0"], ["--scale must be between 1 and 16"]),
    ],
)
def test_bad_option_values_are_one_line(args, fragments, cli_invoke, one_line_error):
    one_line_error(cli_invoke(*args), *fragments)


def test_generate_without_checkpoint_says_train_first(dirs, cli_invoke, one_line_error):
    one_line_error(cli_invoke("generate", *opts(dirs)), "train first: python cli.py train", code=1)


def test_missing_and_corrupt_data(dirs, mnist_dir, offline, cli_invoke, one_line_error, tiny_options):
    (mnist_dir / "train-images-idx3-ubyte").unlink()
    one_line_error(cli_invoke("train", *tiny_options, *opts(dirs)), "could not fetch train-images-idx3-ubyte",
                   str(mnist_dir))
    path = mnist_dir / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    (mnist_dir / "train-images-idx3-ubyte").write_bytes(b"")
    one_line_error(cli_invoke("train", *tiny_options, *opts(dirs)), "train-images-idx3-ubyte", "truncated")
    assert not dirs["--checkpoint-dir"].exists()


def test_unreadable_checkpoint_overwrites_nothing(trained, cli_invoke, one_line_error):
    cli_invoke("generate", *opts(trained))
    before = digest(trained["--results-dir"])
    newest = trained["--checkpoint-dir"] / "vae.epoch.2.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    result = cli_invoke("generate", "--checkpoint", newest, *opts(trained))
    one_line_error(result, "vae.epoch.2.pt", "unreadable", code=1)
    assert digest(trained["--results-dir"]) == before
    # Without --checkpoint the damaged ones are named and the furthest readable one is used.
    last = trained["--checkpoint-dir"] / "last.pt"
    last.write_bytes(b"")
    result = cli_invoke("generate", *opts(trained))
    assert result.exit_code == 0 and "skipping damaged checkpoint vae.epoch.2.pt" in result.stderr
    assert "skipping damaged checkpoint last.pt" in result.stderr
    result = cli_invoke("train", "--epochs", "2", *opts(trained))
    assert result.exit_code == 0 and "Restoring model from" in result.stdout and "vae.epoch.1.pt" in result.stdout
    assert "Epoch 2 " in result.stdout


def test_only_damaged_checkpoints_is_one_line(trained, cli_invoke):
    for path in trained["--checkpoint-dir"].glob("*.pt"):
        path.write_bytes(b"")
    result = cli_invoke("train", "--epochs", "3", *opts(trained))
    assert result.exit_code == 1 and "no readable checkpoint" in result.stderr and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: no readable checkpoint")


def test_explicit_checkpoint_and_architecture_mismatch(trained, cli_invoke, one_line_error):
    first = trained["--checkpoint-dir"] / "vae.epoch.1.pt"
    result = cli_invoke("generate", "--checkpoint", first, *opts(trained, "--results-dir"))
    assert result.exit_code == 0, result.output
    one_line_error(cli_invoke("generate", "--z-dim", "40", *opts(trained)), "--z-dim 2, not 40")
    one_line_error(cli_invoke("train", "--z-dim", "40", "--epochs", "3", *opts(trained)), "--z-dim 2, not 40")
    one_line_error(cli_invoke("generate", "--checkpoint", trained["--checkpoint-dir"] / "nope.pt"),
                   "does not exist")


def test_help_lists_the_commands(cli_invoke):
    result = cli_invoke("--help")
    assert result.exit_code == 0
    for command in ("train", "generate", "evaluate", "plot", "reconstruct", "interpolate", "quiz", "download"):
        assert command in result.stdout


def test_interrupt_prints_how_to_continue_and_exits_130(dirs, cli_invoke, tiny_options, signal_during_loss):
    import signal

    with signal_during_loss(3, signal.SIGINT):  # what Ctrl-C sends, during batch 3
        result = cli_invoke("train", "--epochs", "2", *tiny_options, *opts(dirs))
    assert result.exit_code == 130, result.output
    assert "SIGINT: stopped at epoch 1, batch 3 of 5 and saved" in result.stderr
    assert "to continue from there, run: python cli.py train --epochs 2 " in result.stderr  # (tests/test_commands.py pastes it)
    assert "Traceback" not in result.output
    result = cli_invoke("train", "--epochs", "2", *opts(dirs))
    assert result.exit_code == 0 and "(epoch 1, after batch 3)" in result.stdout


def test_unwritable_results_keep_earlier_images(trained, monkeypatch, cli_invoke, one_line_error):
    cli_invoke("generate", *opts(trained))
    before = digest(trained["--results-dir"])

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # Running as root, a read-only folder would still be writable: fail the temporary file instead.
    monkeypatch.setattr("pyro_vae.fsutil.tempfile.mkstemp", no_space)
    result = cli_invoke("generate", "--seed", "5", *opts(trained))
    one_line_error(result, "could not write", "random_samples_seed5.png", "No space left on device")
    assert digest(trained["--results-dir"]) == before


def test_results_folder_that_is_a_file(trained, tmp_path, cli_invoke, one_line_error):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = cli_invoke("generate", "--checkpoint-dir", trained["--checkpoint-dir"], "--results-dir", blocker)
    one_line_error(result, "could not write", "not-a-folder")


def test_evaluate_prints_and_writes_the_same_figures_twice(trained, cli_invoke, one_line_error):
    import json

    args = ["evaluate", "--particles", "20", "--batch-size", "50", *opts(trained)]
    first = cli_invoke(*args)
    assert first.exit_code == 0, first.output
    assert "log p(x) (IS)" in first.stdout and "100 test images, 20 particles" in first.stdout
    [record] = json.loads((trained["--results-dir"] / "metrics" / "evaluation.json").read_text())
    assert record["log_likelihood"] >= record["elbo"] and record["images"] == 100 and record["epoch"] == 2
    # The ELBO's two terms from the same draws, and the latent dimensions in use, printed and recorded.
    assert record["reconstruction"] - record["kl"] == pytest.approx(record["elbo"], abs=1e-3)
    assert 0 <= record["active_units"] <= 2
    assert re.search(rf"^  reconstruction +{record['reconstruction']:.2f} nats", first.stdout, re.M)
    assert re.search(rf"^  KL +{record['kl']:.2f} nats", first.stdout, re.M)
    assert f"  active units         {record['active_units']} of 2" in first.stdout
    again = cli_invoke(*args)
    assert again.stdout.splitlines()[:-1] == first.stdout.splitlines()[:-1]  # same seed, same figures
    assert "replaced this checkpoint's record" in again.stdout
    one_line_error(cli_invoke("evaluate", "--particles", "0", *opts(trained)), "--particles")
    one_line_error(cli_invoke("evaluate", "--seed", "-1", *opts(trained)), "--seed")
    one_line_error(cli_invoke("evaluate", "--seed", str(2**32), *opts(trained)), "--seed")


def test_reconstruct_and_interpolate_write_their_pictures(trained, cli_invoke, one_line_error):
    result = cli_invoke("reconstruct", "--n", "20", "--scale", "1", *opts(trained))
    assert result.exit_code == 0, result.output
    with Image.open(trained["--results-dir"] / "reconstructions.png") as image:
        assert image.size == (280, 4 * 28)  # 2 rows of originals, each above its reconstructions
    result = cli_invoke("interpolate", "--from-index", "3", "--to-index", "7", "--steps", "6", "--scale", "1",
                        *opts(trained))
    assert result.exit_code == 0, result.output
    with Image.open(trained["--results-dir"] / "interpolation_3_7.png") as image:
        assert image.size == (6 * 28, 28)
    with Image.open(trained["--results-dir"] / "interpolation_3_7.gif") as gif:
        assert gif.n_frames == 6 + 4 and gif.width >= 4 * 28  # there and back
        assert "from test image 3 to test image 7" in gif.info["comment"].decode()
    # At the default scale (2) the rows are labelled at the left and the strip's ends below it.
    assert cli_invoke("reconstruct", "--n", "20", *opts(trained)).exit_code == 0
    with Image.open(trained["--results-dir"] / "reconstructions.png") as image:
        assert image.width > 560 and image.height > 4 * 56 and "reconstructions" in image.text["Title"]
    assert cli_invoke("interpolate", "--from-index", "3", "--to-index", "7", "--steps", "6", *opts(trained)).exit_code == 0
    with Image.open(trained["--results-dir"] / "interpolation_3_7.png") as image:
        assert image.height > 56 and image.text["Title"].startswith("from test image 3 to test image 7")
    one_line_error(cli_invoke("interpolate", "--to-index", "100", *opts(trained)), "test image 100 does not exist")
    one_line_error(cli_invoke("reconstruct", "--n", "0", *opts(trained)), "--n")


def test_quiz_mixes_real_and_generated_and_keeps_the_answers(trained, mnist_dir, cli_invoke, one_line_error):
    import json

    import numpy as np

    from pyro_vae import data

    result = cli_invoke("quiz", "--real-fraction", "0.3", "--scale", "1", *opts(trained))
    assert result.exit_code == 0, result.output
    folder = trained["--results-dir"] / "quiz"
    answers = json.loads((folder / "answers.json").read_text())["cells"]
    assert len(answers) == 100 and sum(a["real"] for a in answers) == 30
    with Image.open(folder / "quiz.png") as image:
        pixels = np.asarray(image)
        assert image.text["Title"].startswith("Human or machine?") and image.text["noise"] == "0.7"
    test, _ = data.load_split(mnist_dir, "test")
    for a in answers:
        row, col = divmod(a["cell"], 10)
        cell = pixels[row * 28 : row * 28 + 28, col * 28 : col * 28 + 28].reshape(-1)
        original = test[a["test_index"]].numpy()
        assert (cell == original).all() == a["real"]  # real cells show the test image itself
    with Image.open(folder / "answers.png") as image:
        marked = np.asarray(image.convert("RGB"))
    red = lambda k: tuple(marked[(k // 10) * 28, (k % 10) * 28 + 5]) == (255, 0, 0)  # noqa: E731
    assert all(red(a["cell"]) != a["real"] for a in answers)
    first = digest(folder)
    cli_invoke("quiz", "--real-fraction", "0.3", "--scale", "1", *opts(trained))
    assert digest(folder) == first  # same seed, same quiz
    one_line_error(cli_invoke("quiz", "--real-fraction", "1.5", *opts(trained)), "--real-fraction")


def test_train_with_the_recipe_records_it_and_evaluates(dirs, cli_invoke, one_line_error, tiny_options):
    import torch

    result = cli_invoke("train", "--epochs", "2", *tiny_options, "--objective", "iwae", "--particles", "3",
                        "--lr-decay", "0.5", "--valid-size", "16", "--eval-every", "1", "--eval-particles", "4",
                        *opts(dirs))
    assert result.exit_code == 0, result.output
    assert re.search(r"^  valid: ELBO -\d+\.\d+, log p\(x\) -\d+\.\d+ \(16 images, K=4\); reconstruction -\d+\.\d+, "
                     r"KL \d+\.\d+; [0-2] of 2 latent dimensions active$", result.stdout, re.M)
    assert "best.pt (best validation log p(x) so far)" in result.stdout
    state = torch.load(dirs["--checkpoint-dir"] / "last.pt", weights_only=True)
    assert {k: state["train_config"][k] for k in ("objective", "particles", "lr_decay", "valid_size")} == \
        {"objective": "iwae", "particles": 3, "lr_decay": 0.5, "valid_size": 16}
    # Repeating the run's own split is fine: the evaluation cadence comes from the checkpoint.
    again = cli_invoke("train", "--epochs", "3", "--valid-size", "16", *opts(dirs))
    assert again.exit_code == 0, again.output
    assert "  valid: ELBO" in again.stdout
    # Resuming with a different objective is refused, nothing written.
    before = digest(dirs["--checkpoint-dir"])
    one_line_error(cli_invoke("train", "--epochs", "3", "--objective", "elbo", *opts(dirs)),
                   "trained with --objective iwae, not elbo", "--fresh")
    assert digest(dirs["--checkpoint-dir"]) == before


def test_plot_draws_the_history(dirs, cli_invoke, one_line_error, tiny_options):
    from pyro_vae.metrics import HISTORY

    trained = dirs
    assert cli_invoke("train", "--epochs", "2", *tiny_options, *opts(dirs)).exit_code == 0
    result = cli_invoke("plot", *opts(trained, "--results-dir"))
    assert result.exit_code == 0, result.output
    png = trained["--results-dir"] / "metrics" / "curves.png"
    assert result.stdout.strip() == f"wrote {png} (2 epochs)"
    with Image.open(png) as image:
        assert image.size == (1200, 850)  # the bounds and the time per epoch; below them, the two terms
    # A longer history draws a different picture: the curves come from the file.
    assert cli_invoke("train", "--epochs", "4", *opts(trained)).exit_code == 0
    first = png.read_bytes()
    assert cli_invoke("plot", *opts(trained, "--results-dir")).exit_code == 0
    assert png.read_bytes() != first
    # A damaged history is one line, and the earlier picture stays.
    (trained["--results-dir"] / HISTORY).write_text("epoch,seconds\nx,y\n")
    kept = png.read_bytes()
    one_line_error(cli_invoke("plot", *opts(trained, "--results-dir")), "is not a pyro-vae history")
    assert png.read_bytes() == kept


def test_plot_without_history_says_train_first(dirs, cli_invoke, one_line_error):
    one_line_error(cli_invoke("plot", *opts(dirs, "--results-dir")), "no training history", "train first")
    # The hint trains the run the user named, in its own folders.
    one_line_error(cli_invoke("plot", "--checkpoint-dir", "elsewhere"), "train first (python cli.py train "
                   "--checkpoint-dir elsewhere)")


def test_a_run_that_diverges_for_real_ends_in_one_line(trained, cli_invoke, one_line_error):
    # A learning rate far too large from epoch 3 on (a resumed run takes it from the checkpoint):
    # the loss becomes nan for real, and Pyro's own NaN warning must not reach the user.
    from pyro_vae import checkpoint

    folder = trained["--checkpoint-dir"]
    for path in folder.glob("*.pt"):
        state = checkpoint.load(path)
        state["train_config"]["lr"] = 1e10
        checkpoint.save(state, path)
    before = digest(folder)
    result = cli_invoke("train", "--epochs", "4", *opts(trained, "--checkpoint-dir"))
    one_line_error(result, "the loss became nan at epoch 3", "is untouched", "--lr", code=1)
    assert digest(folder) == before


def test_a_second_generate_with_other_settings_leaves_the_first_pictures(trained, cli_invoke):
    folder = trained["--results-dir"]
    assert cli_invoke("generate", "--mode", "digit", "--digits", "3,8", *opts(trained)).exit_code == 0
    first = digest(folder)
    assert sorted(first) == ["3.png", "8.png"]  # the seed's settings (noise 0.7), the seed's names
    result = cli_invoke("generate", "--mode", "digit", "--noise", "1.4", "--digits", "3,8", *opts(trained))
    assert result.exit_code == 0, result.output
    assert {k: v for k, v in digest(folder).items() if k in first} == first  # untouched
    assert sorted(digest(folder)) == ["3.png", "3_noise1.4.png", "8.png", "8_noise1.4.png"]
    with Image.open(folder / "3_noise1.4.png") as image:
        assert image.text["noise"] == "1.4" and image.text["mode"] == "digit"
        assert image.height > image.width == 560  # pixels 2x2 by default, a caption band above
    # The same settings again do replace their pictures, and say so.
    again = cli_invoke("generate", "--mode", "digit", "--noise", "1.4", "--digits", "3,8", *opts(trained))
    assert f"replaced {folder / '3_noise1.4.png'}" in again.stdout


def test_evaluation_keeps_one_record_per_checkpoint_and_setting(trained, cli_invoke):
    import json

    def evaluate(*args):
        result = cli_invoke("evaluate", "--batch-size", "50", *args, *opts(trained))
        assert result.exit_code == 0, result.output
        return json.loads((trained["--results-dir"] / "metrics" / "evaluation.json").read_text())

    evaluate("--particles", "5")
    records = evaluate("--particles", "7", "--checkpoint", trained["--checkpoint-dir"] / "vae.epoch.1.pt")
    assert [(r["epoch"], r["particles"]) for r in records] == [(2, 5), (1, 7)]
    assert [(r["epoch"], r["particles"]) for r in evaluate("--particles", "5")] == [(1, 7), (2, 5)]  # replaced


def test_long_steps_say_how_far_they_are_without_a_terminal(trained, cli_invoke, monkeypatch):
    monkeypatch.setattr("pyro_vae.progress.LINE_EVERY_S", 0.0)  # as if every batch took ten seconds
    result = cli_invoke("evaluate", "--particles", "2", "--batch-size", "10", *opts(trained))
    assert result.exit_code == 0, result.output
    assert re.findall(r"^mnist test images: (\d+)/100 \(\d+%\), \d+ s left$", result.stdout, re.M) == [str(k) for k in range(10, 101, 10)]
    assert result.stdout.index("mnist test images: 10/100") > result.stdout.index("scoring ")


def test_a_download_started_by_another_command_says_what_it_wrote(trained, tmp_path, mnist_dir, monkeypatch,
                                                                   cli_invoke):
    import gzip

    mirror, empty = tmp_path / "mirror", tmp_path / "empty"
    mirror.mkdir()
    for path in mnist_dir.iterdir():
        (mirror / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    from pyro_vae import fetch

    monkeypatch.setitem(fetch.ROUTES, "mnist", dataclasses.replace(fetch.ROUTES["mnist"], mirrors=(mirror.as_uri() + "/",)))
    result = cli_invoke("evaluate", "--particles", "2", "--data-dir", empty, *opts(trained))
    assert result.exit_code == 0, result.output
    assert f"{empty} lacks " in result.stdout
    for name in ("t10k-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        assert f"wrote {empty / name}" in result.stdout


def test_each_epoch_line_comes_before_its_evaluation(dirs, cli_invoke, tiny_options):
    result = cli_invoke("train", "--epochs", "2", *tiny_options, "--valid-size", "16", "--eval-every", "1",
                        "--eval-particles", "2", *opts(dirs))
    assert result.exit_code == 0, result.output
    lines = [line.split(" (")[0].split(":")[0].strip() for line in result.stdout.splitlines()
             if line.startswith(("Epoch", "  valid", "  test"))]
    assert lines == ["Epoch 1", "valid", "test", "Epoch 2", "valid", "test"]


def test_a_second_model_keeps_to_its_own_results(mnist_dir, cli_invoke, tiny_options, one_line_error):
    """The design card's run lives in checkpoints/ and results/; another in checkpoints/small writes
    results/small, and nothing of the first run's changes."""
    assert cli_invoke("train", "--epochs", "2", *tiny_options).exit_code == 0
    assert cli_invoke("generate", "--mode", "prior").exit_code == 0
    assert cli_invoke("evaluate", "--particles", "2").exit_code == 0
    first = {p: p.read_bytes() for p in Path("results").rglob("*") if p.is_file()}
    assert {Path("results/metrics/history.csv"), Path("results/random_samples.png"),
            Path("results/metrics/evaluation.json")} <= set(first)
    small = ["--checkpoint-dir", "checkpoints/small"]
    assert cli_invoke("train", "--epochs", "1", "--z-dim", "3", "--hidden-dim", "8", "--batch-size", "16",
                      *small).exit_code == 0
    assert cli_invoke("generate", "--mode", "prior", *small).exit_code == 0
    assert cli_invoke("evaluate", "--particles", "2", *small).exit_code == 0
    plotted = cli_invoke("plot", *small)
    assert plotted.exit_code == 0 and "results/small/metrics/curves.png" in plotted.stdout, plotted.output
    assert {p: p.read_bytes() for p in Path("results").rglob("*") if p.is_file() and "small" not in p.parts} == first
    assert [r.epoch for r in read_history(Path("results/small/metrics/history.csv"))] == [1]
    assert [r.epoch for r in read_history(Path("results/metrics/history.csv"))] == [1, 2]
    assert Path("results/small/random_samples.png").is_file()
    # Pointed at the first run's results by hand, a third model is refused before it writes anything.
    refused = cli_invoke("train", "--epochs", "1", *tiny_options, "--checkpoint-dir", "checkpoints/third",
                         "--results-dir", "results")
    one_line_error(refused, "results holds the results of the run in", "give this run its own --results-dir",
                   "(results/third)")
    refused = cli_invoke("generate", "--checkpoint-dir", "checkpoints/small", "--results-dir", "results")
    one_line_error(refused, "results holds the results of the run in")
    assert {p: p.read_bytes() for p in Path("results").rglob("*") if p.is_file() and "small" not in p.parts} == first


def test_train_weights_the_kl_term_but_prints_the_true_bound(dirs, cli_invoke, one_line_error, tiny_options):
    import torch

    result = cli_invoke("train", "--epochs", "2", *tiny_options, "--beta", "3", "--kl-warmup", "2", *opts(dirs))
    assert result.exit_code == 0, result.output
    assert re.search(r"^Epoch 1 \(\d+\.\d+s\): Lower bound = -\d+\.\d+ \(KL weight 0, KL \d+\.\d+\)$", result.stdout, re.M)
    assert re.search(r"^Epoch 2 .* \(KL weight 1\.5, KL \d+\.\d+\)$", result.stdout, re.M)
    records = read_history(dirs["--results-dir"] / "metrics" / "history.csv")
    assert [r.beta for r in records] == [0.0, 1.5]
    assert all(r.reconstruction - r.kl == pytest.approx(r.lower_bound, abs=1e-3) for r in records)
    state = torch.load(dirs["--checkpoint-dir"] / "last.pt", weights_only=True)
    assert (state["train_config"]["beta"], state["train_config"]["kl_warmup"]) == (3.0, 2)
    one_line_error(cli_invoke("train", "--epochs", "3", "--beta", "1", *opts(dirs)), "trained with --beta 3.0, not 1.0")
    one_line_error(cli_invoke("train", "--epochs", "1", "--beta", "-2", "--fresh", *opts(dirs)), "--beta must be between")
    help_text = cli_invoke("train", "--help").stdout
    assert "--beta" in help_text and "--kl-warmup" in help_text and "stays the true" in " ".join(help_text.split())


# ---------------------------------------------------------------------------------------------
# What a new user tripped on (issue 29, item 7), each fixed

def test_verbose_works_after_the_command_too(dirs, cli_invoke, tiny_run_options, one_line_error):
    quiet = cli_invoke("train", *tiny_run_options, *opts(dirs, "--checkpoint-dir"))
    assert quiet.exit_code == 0, quiet.output
    detail = "matrix products:"  # a DEBUG line: only --verbose shows it
    assert detail not in quiet.stdout
    for where in (["train", "-v", *tiny_run_options], ["train", *tiny_run_options, "--verbose"]):
        result = cli_invoke(*where, *opts(dirs, "--checkpoint-dir"), "--fresh")
        assert result.exit_code == 0, (where, result.output)
        assert detail in result.stdout, where
    # A -v that is an option's value stays that option's value.
    one_line_error(cli_invoke("train", "--recipe", "-v", *opts(dirs)), "--recipe must be", "'-v'")


def test_evaluate_with_one_particle_says_it_is_the_elbo(trained, cli_invoke):
    result = cli_invoke("evaluate", "--particles", "1", *opts(trained))
    assert result.exit_code == 0, result.output
    assert "100 test images, 1 particle\n" in result.stdout and "1 particles" not in result.stdout
    [line] = [line for line in result.stdout.splitlines() if "log p(x) (IS)" in line]
    assert "the ELBO itself" in line and "nats" not in line  # no second figure equal to the ELBO, unexplained


def test_a_slow_evaluation_says_how_far_it_is_at_least_once_a_minute(trained, cli_invoke, monkeypatch):
    monkeypatch.setattr("pyro_vae.progress.LINE_EVERY_S", 0.0)
    monkeypatch.setattr("pyro_vae.progress.LINE_QUIET_S", 0.0)  # as if each batch of 5 (5%) took a minute
    result = cli_invoke("evaluate", "--particles", "2", "--batch-size", "5", *opts(trained))
    assert result.exit_code == 0, result.output
    assert re.findall(r"^mnist test images: (\d+)/100", result.stdout, re.M) == [str(k) for k in range(5, 101, 5)]


def test_train_says_where_its_results_go(tmp_path, mnist_dir, cli_invoke, tiny_run_options):
    folder = tmp_path / "runs" / "ck2"  # a folder not named checkpoints: its results go to runs/results/ck2
    result = cli_invoke("train", *tiny_run_options, "--checkpoint-dir", folder)
    assert result.exit_code == 0, result.output
    said = result.stdout.splitlines()[0]
    assert said == f"Checkpoints go to {folder}, results (metrics/history.csv, pictures) to {tmp_path / 'runs' / 'results' / 'ck2'}"
    assert [r.epoch for r in read_history(tmp_path / "runs" / "results" / "ck2" / "metrics" / "history.csv")] == [1]
    shown = " ".join(cli_invoke("train", "--help").stdout.split())
    assert "/data/ck2 -> /data/results/ck2" in shown and "results go beside it" in shown


def test_a_missing_checkpoint_file_names_what_its_folder_holds(trained, cli_invoke, one_line_error):
    folder = trained["--checkpoint-dir"]
    one_line_error(cli_invoke("generate", "--checkpoint", folder / "vae.epoch.9.pt"),
                   f"({folder} holds last.pt, vae.epoch.1.pt, vae.epoch.2.pt)", "--checkpoint-dir")


def test_another_data_sets_pictures_keep_the_models_own(trained, fashion_dir, cli_invoke):
    results = trained["--results-dir"]
    for command in ("reconstruct", "latent-map"):
        assert cli_invoke(command, *opts(trained)).exit_code == 0
    own = digest(results)
    for command in ("reconstruct", "latent-map"):
        result = cli_invoke(command, "--dataset", "fashion-mnist", *opts(trained))
        assert result.exit_code == 0, result.output
        assert "replaced" not in result.stdout
    after = digest(results)
    assert all(after[name] == sha for name, sha in own.items())  # the model's own pictures untouched
    assert {"reconstructions_fashion-mnist.png", "latent_map_fashion-mnist.png",
            "kl_per_dimension_fashion-mnist.png"} <= set(after)


def test_threads_are_chosen_said_with_v_and_bad_ones_refused(trained, dirs, cli_invoke, one_line_error, tiny_options,
                                                               monkeypatch):
    from pyro_vae import runtime

    monkeypatch.setattr(runtime, "cpus_available", lambda: (2, "2 CPUs on the machine"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    # -v says what was chosen and why, for every command that computes.
    result = cli_invoke("-v", "train", "--epochs", "3", *tiny_options, *opts(dirs, "--checkpoint-dir"))
    assert result.exit_code == 0, result.output
    assert "threads: 2, auto: 2 CPUs on the machine" in result.stdout
    result = cli_invoke("-v", "evaluate", "--particles", "2", "--threads", "1", *opts(trained))
    assert result.exit_code == 0, result.output
    assert "threads: 1, as asked" in result.stdout
    monkeypatch.setenv(runtime.THREADS_ENV, "1")
    for command in (("generate", "--mode", "prior"), ("latent-map",), ("reconstruct",)):
        result = cli_invoke("-v", *command, *opts(trained))
        assert result.exit_code == 0, (command, result.output)
        assert f"threads: 1, as asked ({runtime.THREADS_ENV})" in result.stdout, command
    # Bad counts: one line each, nothing written.
    before = sorted(p for p in dirs["--results-dir"].rglob("*"))
    one_line_error(cli_invoke("generate", "--threads", "0", *opts(trained)),
                   "--threads must be auto or a whole number of at least 1, got '0'")
    one_line_error(cli_invoke("train", "--epochs", "4", "--threads", "two", *tiny_options,
                              *opts(dirs, "--checkpoint-dir")), "--threads must be auto or a whole number")
    monkeypatch.setenv(runtime.THREADS_ENV, "lots")
    one_line_error(cli_invoke("evaluate", "--particles", "2", *opts(trained)),
                   f"{runtime.THREADS_ENV} must be auto or a whole number of at least 1, got 'lots'; fix or unset it")
    assert sorted(p for p in dirs["--results-dir"].rglob("*")) == before
    assert "--threads N|auto" in cli_invoke("tune", "--help").stdout
