"""`tune`: trials as ordinary training runs in their own folders, scores, the report, bad input, Ctrl-C;
and, marked slow, workers in separate processes sharing a study on SQLite and on a real throwaway
PostgreSQL server, and a worker killed with SIGKILL whose trial is resumed exactly elsewhere."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unittest import mock

import pytest
import torch

from pyro_vae import checkpoint, cli
from pyro_vae.config import Paths, TuneConfig
from pyro_vae.errors import Hint
from pyro_vae.metrics import HISTORY, read_history
from pyro_vae.tune import BEST, HISTORY_PNG, IMPORTANCE_PNG, TRIALS_CSV, default_storage, opened_study

# Tiny trials: 64 training images (one batch), scored on the other 16 with 3 particles.
QUICK = ["--epochs", "2", "--eval-every", "1", "--valid-size", "16", "--eval-particles", "3", "--test-particles", "3",
         "--z-dim", "2", "--hidden-dim", "16"]
# Every searched setting fixed: two studies run the same trial, which makes exactness testable.
ALL_FIXED = ["--objective", "elbo", "--particles", "1", "--lr", "0.001", "--lr-decay", "1.0"]


def folders(tmp_path: Path, name: str) -> list[str]:
    return ["--checkpoint-dir", str(tmp_path / name / "ck"), "--results-dir", str(tmp_path / name / "res")]


def trials_of(tmp_path: Path, name: str, study: str = "recipe", storage: str | None = None) -> list:
    """The study's trials, as Optuna's FrozenTrial records."""
    paths = Paths(checkpoint_dir=tmp_path / name / "ck", results_dir=tmp_path / name / "res")
    with opened_study(TuneConfig(study=study, storage=storage), paths=paths, create=False) as found:
        return found.trials


def final_weights(tmp_path: Path, name: str, run: str, study: str = "recipe") -> dict[str, torch.Tensor]:
    state = checkpoint.load(tmp_path / name / "ck" / "tune" / study / run / checkpoint.LAST)
    return state["model"]



def spelled(reproduce: dict) -> str:
    """best.json's reproducing call as the command line prints it in the clone."""
    with mock.patch.object(cli, "program", return_value=["python", "cli.py"]):
        return cli.command_line(Hint.from_json(reproduce))

def test_trials_are_training_runs_in_their_own_folders(tmp_path, mnist_dir, cli_invoke):
    result = cli_invoke("tune", "--trials", "2", *QUICK, "--objective", "elbo", *folders(tmp_path, "a"))
    assert result.exit_code == 0, result.output
    trials = trials_of(tmp_path, "a")
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        run = tmp_path / "a" / "res" / "tune" / "recipe" / trial.user_attrs["run"]
        records = read_history(run / HISTORY)
        assert [r.epoch for r in records] == [1, 2]
        # Scored on the validation split at every evaluation, never on the test set.
        assert trial.intermediate_values == {1: records[0].valid_log_likelihood, 2: records[1].valid_log_likelihood}
        assert trial.value == records[-1].valid_log_likelihood and records[-1].test_log_likelihood is None
        settings = trial.user_attrs["settings"]
        assert settings["objective"] == "elbo" and settings["z_dim"] == 2 and settings["hidden_dim"] == 16
        assert "objective" not in trial.params and 1e-4 <= trial.params["lr"] <= 3e-3  # fixed vs searched
        assert 1 <= trial.params["particles"] <= 10 and 0.99 <= trial.params["lr_decay"] <= 1.0
        assert (tmp_path / "a" / "ck" / "tune" / "recipe" / trial.user_attrs["run"] / checkpoint.BEST).is_file()
    best = json.loads((tmp_path / "a" / "res" / "tune" / "recipe" / BEST).read_text())
    assert best["trial"] == max(trials, key=lambda t: t.value).number
    assert best["test_particles"] == 3 and best["test_log_likelihood"] > best["test_elbo"] - 1e-6
    assert f"reproduce it with: {spelled(best['reproduce'])}" in result.stdout
    assert best["reproduce"]["command"] == "train" and best["reproduce"]["options"]["z_dim"] == 2  # the call, as data


def test_the_best_trials_command_reproduces_it_beside_the_main_run(tmp_path, mnist_dir, cli_invoke):
    # In the project folder (the test's working folder), with a main run of another size in checkpoints/.
    main = cli_invoke("train", "--epochs", "1", "--z-dim", "3", "--hidden-dim", "16", "--batch-size", "16")
    assert main.exit_code == 0, main.output
    before = {p: p.read_bytes() for p in Path("checkpoints").glob("*.pt")}
    tuned = cli_invoke("tune", "--trials", "1", *QUICK)
    assert tuned.exit_code == 0, tuned.output
    best = json.loads((Path("results") / "tune" / "recipe" / BEST).read_text())
    line = tuned.stdout.split("reproduce it with: ", 1)[1].splitlines()[0]
    assert line == spelled(best["reproduce"])
    words = shlex.split(line)
    assert words[:3] == ["python", "cli.py", "train"]
    result = cli_invoke(*words[2:])  # pasted as printed
    assert result.exit_code == 0, result.output
    assert "Restoring" not in result.stdout  # a run of its own, not the main run resumed
    again = checkpoint.load(Path("checkpoints") / "reproduce" / f"recipe-{best['run']}" / checkpoint.LAST)["model"]
    trial = checkpoint.load(Path("checkpoints") / "tune" / "recipe" / best["run"] / checkpoint.LAST)["model"]
    assert all(torch.equal(again[k], trial[k]) for k in trial)
    assert {p: p.read_bytes() for p in Path("checkpoints").glob("*.pt")} == before  # the main run untouched


def test_report_prints_the_trials_and_writes_csv_and_plots(tmp_path, mnist_dir, cli_invoke):
    assert cli_invoke("tune", "--trials", "3", *QUICK, *folders(tmp_path, "a")).exit_code == 0
    result = cli_invoke("tune", "--report", *folders(tmp_path, "a"))
    assert result.exit_code == 0, result.output
    header, *rows = [line.split() for line in result.stdout.splitlines()
                     if not line.startswith(("wrote", "replaced", "no "))]
    assert header[:5] == ["number", "state", "run", "epochs", "value"] and len(rows) == 3
    assert all(row[1] in ("COMPLETE", "PRUNED") and row[3] == "2" for row in rows), result.stdout
    folder = tmp_path / "a" / "res" / "tune" / "recipe"
    lines = (folder / TRIALS_CSV).read_text().splitlines()
    assert lines[0].startswith("number,state,run,epochs,value") and len(lines) == 4
    assert (folder / HISTORY_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Three trials say nothing about which setting matters: no importances, and one line saying why.
    assert not (folder / IMPORTANCE_PNG).exists()
    assert result.stdout.strip().splitlines()[-1].startswith(f"no {IMPORTANCE_PNG}: it needs 5 completed trials")
    again = cli_invoke("tune", "--report", *folders(tmp_path, "a"))
    assert f"replaced {folder / HISTORY_PNG}" in again.stdout and f"replaced {folder / TRIALS_CSV}" in again.stdout


def test_scoring_the_best_trial_says_what_and_how_far(tmp_path, mnist_dir, cli_invoke, monkeypatch):
    monkeypatch.setattr("pyro_vae.progress.LINE_EVERY_S", 0.0)  # as if every batch took ten seconds
    result = cli_invoke("tune", "--trials", "1", *QUICK, *folders(tmp_path, "a"))
    assert result.exit_code == 0, result.output
    scoring = result.stdout.index("Scoring the best trial, 0, on 100 test images with K=3")
    assert result.stdout.index("test images: 100/100 (100%)") > scoring
    # The trial's own evaluations (16 validation images every epoch) say how far they are too.
    assert "valid images: 16/16 (100%)" in result.stdout[:scoring]


def test_report_plots_say_what_they_measure_and_draw_importances_only_when_meaningful(tmp_path, monkeypatch):
    import optuna
    from matplotlib.ticker import MaxNLocator

    from pyro_vae import plots, tune

    paths = Paths(checkpoint_dir=tmp_path / "ck", results_dir=tmp_path / "res")
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, **_: drawn.setdefault(path.name, fig.axes[0]) and path)
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True),
                     "z_dim": optuna.distributions.IntDistribution(10, 100, step=10),
                     "particles": optuna.distributions.IntDistribution(1, 10)}
    with opened_study(TuneConfig(), paths=paths) as study:
        for k in range(6):
            params = {"lr": 1e-4 * (k + 1), "z_dim": 10 * (k % 3 + 1), "particles": 1}  # particles never varies
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=-100.0 + k,
                                                      user_attrs={"run": f"trial-{k}", "settings": params}))
            if k == 3:  # 4 completed trials: too few
                _, written, notes = tune.report(TuneConfig(), paths=paths)
                assert [p.name for p in written] == [TRIALS_CSV, HISTORY_PNG]
                assert notes == [f"no {IMPORTANCE_PNG}: it needs 5 completed trials with at least 2 settings that "
                                 "vary (has 4, varying: lr, z_dim)"]
    _, written, notes = tune.report(TuneConfig(), paths=paths)
    assert [p.name for p in written] == [TRIALS_CSV, HISTORY_PNG, IMPORTANCE_PNG] and notes == []
    history = drawn[HISTORY_PNG]
    assert history.get_ylabel() == "validation log p(x), nats (K=100)" and history.get_xlabel() == "trial"
    assert isinstance(history.xaxis.get_major_locator(), MaxNLocator)
    assert all(t == int(t) for t in history.get_xticks())
    importances = drawn[IMPORTANCE_PNG]
    assert sorted(label.get_text() for label in importances.get_yticklabels()) == ["lr", "z_dim"]


@pytest.mark.parametrize("args, fragments", [
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], ["cannot open the study storage", "127.0.0.1:1"]),
    (["--storage", "not a url"], ["is not a database URL"]),
    (["--study", "nowhere", "--resume"], ["there is no study 'nowhere'", "drop --resume"]),
    (["--lr", "-1"], ["--lr must be a positive number"]),
    (["--particles", "0"], ["--particles must be between 1 and"]),
    (["--z-dim", "0"], ["--z-dim must be between 1 and"]),
    (["--study", "../elsewhere"], ["--study must be letters, digits"]),
    (["--eval-every", "0"], ["--eval-every must be between 1 and --epochs"]),
    (["--valid-size", "0"], ["never on the test set"]),
    (["--heartbeat", "10", "--grace-period", "5"], ["shorter than the grace period"]),
], ids=["unreachable", "malformed", "no-such-study", "lr", "particles", "z-dim", "study-name", "eval-every",
        "no-validation", "heartbeat"])
def test_bad_tune_input_is_one_line(tmp_path, mnist_dir, cli_invoke, one_line_error, args, fragments):
    result = cli_invoke("tune", "--trials", "1", *QUICK, *args, *folders(tmp_path, "a"))
    one_line_error(result, *fragments, code=1)
    assert not (tmp_path / "a" / "ck" / "tune").exists()  # no trial started


def test_report_of_a_missing_study_is_one_line(tmp_path, mnist_dir, cli_invoke, one_line_error):
    one_line_error(cli_invoke("tune", "--report", "--study", "never", *folders(tmp_path, "a")), "no study 'never'")


@pytest.mark.parametrize("args", [["--trials", "1", *QUICK], ["--report"]], ids=["search", "report"])
def test_tune_without_optuna_names_the_extra_in_one_line(tmp_path, mnist_dir, cli_invoke, one_line_error,
                                                         monkeypatch, args):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails, as where it is not installed
    result = cli_invoke("tune", *args, *folders(tmp_path, "a"))
    line = one_line_error(result, code=1)
    assert line == "error: tune needs optuna, which is not installed: pip install 'pyro-vae[tune]'"
    assert not (tmp_path / "a").exists()  # nothing started, no study database made


def test_ctrl_c_stops_a_worker_and_the_next_tune_resumes_the_trial_exactly(tmp_path, mnist_dir, cli_invoke,
                                                                           signal_during_loss):
    args = ["--trials", "1", *QUICK, "--epochs", "3", *ALL_FIXED]
    assert cli_invoke("tune", *args, *folders(tmp_path, "straight")).exit_code == 0
    with signal_during_loss(2, signal.SIGINT):  # one batch an epoch: during epoch 2 (it stops in its evaluation)
        stopped = cli_invoke("tune", *args, *folders(tmp_path, "split"))
    assert stopped.exit_code == 130 and stopped.stderr.startswith("SIGINT: stopped ") and "Traceback" not in stopped.output
    assert "trial 0 is queued again; to continue the study, run: python cli.py tune " in stopped.stderr
    words = shlex.split(stopped.stderr.strip().rsplit("run: ", 1)[1])
    resumed = cli_invoke(*words[2:])  # the printed line, pasted
    assert resumed.exit_code == 0, resumed.output
    assert "Restoring model from" in resumed.stdout
    trials = trials_of(tmp_path, "split")
    assert [(t.state.name, t.user_attrs["run"]) for t in trials] == [("FAIL", "trial-0"), ("COMPLETE", "trial-0")]
    straight, split = final_weights(tmp_path, "straight", "trial-0"), final_weights(tmp_path, "split", "trial-0")
    assert all(torch.equal(straight[k], split[k]) for k in straight)
    assert trials[1].value == trials_of(tmp_path, "straight")[0].value


def test_a_retry_on_a_worker_without_the_trials_device_is_one_line_and_the_worker_goes_on(tmp_path, mnist_dir,
                                                                                         cli_invoke,
                                                                                         signal_during_loss):
    args = ["--trials", "1", *QUICK, "--epochs", "3", *ALL_FIXED]
    with signal_during_loss(2, signal.SIGINT):  # trial-0 stops and is queued again
        assert cli_invoke("tune", *args, *folders(tmp_path, "a")).exit_code == 130
    # As if trial-0 had run on a GPU worker: this worker, without one, cannot resume it.
    for path in (tmp_path / "a" / "ck" / "tune" / "recipe" / "trial-0").glob("*.pt"):
        state = checkpoint.load(path)
        state["device"] = "cuda"
        checkpoint.save(state, path)
    result = cli_invoke("tune", "--trials", "2", *args[2:], *folders(tmp_path, "a"))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "trial-0" in line]
    assert len(lines) == 1 and "was trained on cuda, which this worker lacks" in lines[0], result.stderr
    assert "Traceback" not in result.output
    trials = trials_of(tmp_path, "a")
    assert [(t.state.name, t.user_attrs["run"]) for t in trials] == [
        ("FAIL", "trial-0"), ("FAIL", "trial-0"), ("COMPLETE", "trial-2")]


def test_a_retry_resumes_on_the_device_its_trial_was_trained_on(monkeypatch):
    from pyro_vae import tune

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tune._resume_device("cpu") == torch.device("cpu")  # a GPU worker resumes a CPU trial on its CPU
    assert tune._resume_device("cuda") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tune._resume_device("cuda") == torch.device("cuda")  # a --device cpu worker on a GPU machine


# ---------------------------------------------------------------------------------------------
# Separate processes: real workers, a real PostgreSQL server, a real SIGKILL. `make test-slow`.

def worker(python_command, tmp_path: Path, mnist_dir: Path, name: str, *args: str) -> subprocess.Popen:
    """`python cli.py tune ...` in a fresh process that accepts the synthetic MNIST's checksums."""
    return subprocess.Popen([*python_command("import cli; cli.main()"), "tune", *args, "--data-dir", str(mnist_dir),
                             *folders(tmp_path, name)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1, run as the `postgres` user when we are root (the
    server refuses root). If it cannot start, the test fails with the reason: never a silent skip."""
    tools = {name: shutil.which(name) for name in ("initdb", "pg_ctl")}
    if not all(tools.values()):
        pytest.fail(f"PostgreSQL's server tools are not installed (found {tools}); install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="pyro-vae-pg-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    port, database = _free_port(), folder / "data"
    pg_ctl = [*as_postgres, tools["pg_ctl"], "-D", str(database)]
    steps = [[*as_postgres, tools["initdb"], "-D", str(database), "-A", "trust", "-U", "postgres", "--no-sync"],
             [*pg_ctl, "-l", str(folder / "log"), "-w", "-t", "60", "-o",
              f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            log = (folder / "log").read_text() if (folder / "log").exists() else ""
            pytest.fail(f"could not start a throwaway PostgreSQL server: {shlex.join(step)} said "
                        f"{(done.stderr or done.stdout).strip()[-500:]} {log[-500:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_a_study_and_run_no_trial_twice(tmp_path, mnist_dir, request, backend, python_command):
    storage = request.getfixturevalue("postgres") if backend == "postgresql" else default_storage(tmp_path / "db")
    (tmp_path / "db" / "tune").mkdir(parents=True, exist_ok=True)
    args = ["--trials", "2", *QUICK, "--storage", storage, "--study", f"shared-{backend}"]
    workers = [worker(python_command, tmp_path, mnist_dir, "shared", *args) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = trials_of(tmp_path, "shared", study=f"shared-{backend}", storage=storage)
    assert len(trials) == 4 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}  # finished
    runs = [t.user_attrs["run"] for t in trials]
    assert sorted(runs) == [f"trial-{n}" for n in range(4)]  # each trial in its own folder, none twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials
    for run in runs:  # every epoch trained once: a trial run twice would have resumed or repeated epochs
        history = read_history(tmp_path / "shared" / "res" / "tune" / f"shared-{backend}" / run / HISTORY)
        assert [r.epoch for r in history] == [1, 2]


@pytest.mark.slow
def test_a_killed_workers_trial_is_taken_up_and_resumed_exactly(tmp_path, mnist_dir, postgres, python_command):
    # Full-size networks, so that an epoch takes long enough to be killed in.
    args = ["--trials", "1", "--epochs", "4", "--eval-every", "2", "--valid-size", "16", "--eval-particles", "2",
            "--test-particles", "2", *ALL_FIXED, "--z-dim", "40", "--hidden-dim", "500", "--heartbeat", "1",
            "--grace-period", "3"]
    straight = worker(python_command, tmp_path, mnist_dir, "straight", *args, "--storage", postgres, "--study", "straight")
    out = straight.communicate(timeout=600)[0]
    assert straight.returncode == 0, out
    killed = worker(python_command, tmp_path, mnist_dir, "killed", *args, "--storage", postgres, "--study", "killed")
    history = tmp_path / "killed" / "res" / "tune" / "killed" / "trial-0" / HISTORY
    last = tmp_path / "killed" / "ck" / "tune" / "killed" / "trial-0" / checkpoint.LAST
    deadline = time.monotonic() + 300
    while not last.is_file() and time.monotonic() < deadline:  # once there, it is whole (atomic writes)
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert len(read_history(history)) < 4  # killed mid-trial
    time.sleep(4)  # past the grace period: the next worker finds the trial stale and queues it again
    taker = worker(python_command, tmp_path, mnist_dir, "killed", *args, "--storage", postgres, "--study", "killed")
    out = taker.communicate(timeout=600)[0]
    assert taker.returncode == 0, out
    assert "Restoring model from" in out
    trials = trials_of(tmp_path, "killed", study="killed", storage=postgres)
    assert [(t.state.name, t.user_attrs["run"]) for t in trials] == [("FAIL", "trial-0"), ("COMPLETE", "trial-0")]
    a, b = final_weights(tmp_path, "straight", "trial-0", "straight"), final_weights(tmp_path, "killed", "trial-0", "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r.epoch for r in read_history(history)] == [1, 2, 3, 4]
