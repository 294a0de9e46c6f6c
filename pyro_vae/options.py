"""Options given as text, read into library values: `--dataset`'s data set names and `--digits`'
class numbers. Parsing only: the command line (and the pipelines it calls) take these values.
"""

from __future__ import annotations

import string
from pathlib import Path

from pyro_vae import data
from pyro_vae.errors import ConfigError


def dataset_names(text: str | None, *, several: bool = False) -> tuple[str, ...]:
    """`--dataset`'s value as data set names: one, or with `several` a comma-separated list."""
    names = tuple(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))
    if len(names) > 1 and not several:
        raise ConfigError(f"⟨dataset⟩ takes one data set here ({', '.join(data.DATASETS)}), got {text!r}")
    for name in names:
        data.get(name)
    return names


def class_numbers(text: str, dataset: str, data_dir: Path | None = None) -> tuple[int, ...]:
    """`--digits`' value as class numbers of `dataset` (in `data_dir`): comma-separated numbers
    or class names in any case, e.g. "3,8" or "Sneaker,Bag"."""
    names, noun = data.class_names(dataset, data_dir), data.get(dataset).noun
    lower = [name.lower() for name in names]
    numbers = []
    for part in text.split(","):
        if not part.strip():
            continue
        # ASCII white space only, as int() takes: str.strip's is wider and would read "0\x1f" as 0.
        name = part.strip(string.whitespace).lower()
        try:
            number = lower.index(name) if name in lower else int(part)
        except ValueError:
            number = -1
        if 0 <= number < len(names):
            numbers.append(number)
        else:
            named = "" if list(names) == list(map(str, range(len(names)))) else f" or their names ({', '.join(names)})"
            plural = noun + ("es" if noun.endswith("s") else "s")
            raise ConfigError(f"⟨digits⟩ takes {plural} 0 to {len(names) - 1}{named}, got {part}")
    if not numbers:
        raise ConfigError(f"⟨digits⟩ must name at least one {noun}, e.g. ⟨digits⟩ 3,8")
    return tuple(numbers)
