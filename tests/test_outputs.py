"""The commands' pipelines called from Python, without the command line: what each writes, that a
second call says it replaced its files, and that bad settings are refused before a checkpoint is read."""

from __future__ import annotations

import json

import pytest

import pyro_vae
from pyro_vae import outputs
from pyro_vae.config import EvaluateConfig, QuizConfig
from pyro_vae.errors import CheckpointNotFound, ConfigError


@pytest.fixture
def source(tmp_path, mnist_dir) -> outputs.Source:
    pyro_vae.train(epochs=1, checkpoint_dir=tmp_path / "ck", z_dim=2, hidden_dim=16, batch_size=16)
    return outputs.Source(checkpoint_dir=tmp_path / "ck", results_dir=tmp_path / "res", device="cpu")


def names(written: list[outputs.Written]) -> list[str]:
    return [str(w.path.relative_to(w.path.parents[1] if w.path.parent.name == "quiz" else w.path.parent))
            for w in written]


def test_each_pipeline_writes_its_files(source, tmp_path):
    res = tmp_path / "res"
    assert names(outputs.generate(source, "digit", digits="3,8", noise=1.4, n=4)) == ["3_noise1.4_n4.png",
                                                                                     "8_noise1.4_n4.png"]
    assert names(outputs.reconstruct(source, n=12)) == ["reconstructions.png"]
    assert names(outputs.interpolate(source, from_index=3, to_index=2, steps=4)) == ["interpolation_3_2.png",
                                                                                    "interpolation_3_2.gif"]
    written = outputs.quiz(source, QuizConfig(real_fraction=0.3, seed=5))
    assert names(written) == ["quiz/quiz.png", "quiz/answers.png", "quiz/answers.json"]
    answers = json.loads((res / "quiz" / "answers.json").read_text())
    assert sum(cell["real"] for cell in answers["cells"]) == 30 and answers["seed"] == 5
    assert names(outputs.latent_map(source)) == ["latent_map.png", "kl_per_dimension.png"]
    assert all(w.path.is_file() and not w.replaced for w in written)
    again = outputs.reconstruct(source, n=12)
    assert again[0].replaced and again[0].path == res / "reconstructions.png"


def test_evaluate_scores_and_records(source, tmp_path):
    scores = outputs.evaluate(source, EvaluateConfig(particles=3, batch_size=50))
    [one] = scores.scored
    assert one.test.dataset == "mnist" and one.result.images == 100 and one.result.particles == 3
    assert one.record_file == tmp_path / "res" / "metrics" / "evaluation.json" and not one.replaced
    assert scores.model.epoch == 1


@pytest.mark.parametrize("call, fragment", [
    (lambda s: outputs.generate(s, "prior", noise=1.4), "⟨noise⟩ does nothing in prior mode"),
    (lambda s: outputs.generate(s, "digit", noise=-1.0), "⟨noise⟩ must be between 0 and 10, got -1"),
    (lambda s: outputs.generate(s, "digit", digits="3", indices=(17,)), "both choose"),
    (lambda s: outputs.generate(s, "label", noise=1.4), "⟨noise⟩ does nothing in label mode"),
    (lambda s: outputs.generate(s, "label", indices=(17,)), "⟨index⟩ does nothing in label mode"),
    (lambda s: outputs.evaluate(s, EvaluateConfig(particles=1)), None),
], ids=["noise-in-prior-mode", "noise-negative", "digits-and-index", "noise-in-label-mode", "index-in-label-mode",
        "no-checkpoint"])
def test_bad_settings_are_refused_before_a_checkpoint_is_read(call, fragment, tmp_path):
    nowhere = outputs.Source(checkpoint_dir=tmp_path / "none")
    with pytest.raises(ConfigError if fragment else CheckpointNotFound) as refused:
        call(nowhere)
    assert fragment is None or fragment in refused.value.template
