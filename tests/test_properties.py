"""Property-based tests (hypothesis): the IDX reader never fails with anything but a DataError, and
option parsing either accepts a value or refuses it with a one-line error, never a traceback."""

from __future__ import annotations

import gzip
import math
import re

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from pyro_vae import cli
from pyro_vae import data, options
from pyro_vae.config import GenerateConfig, ModelConfig, Precision, TrainConfig

PRECISIONS = Precision.values()
from pyro_vae.errors import ConfigError, DataError

# No example database: it would write .hypothesis/ into the project.
FAST = settings(deadline=None, max_examples=60, database=None,
                suppress_health_check=[HealthCheck.too_slow])
CLI = settings(deadline=None, max_examples=30, database=None,
               suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One folder for the whole module: hypothesis reruns a test body many times, so each example
    overwrites the same few files rather than asking for a fresh function-scoped tmp_path."""
    return tmp_path_factory.mktemp("props")


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


arrays = hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6))


# ---------------------------------------------------------------------------------------------
# read_idx

@FAST
@given(array=arrays, compress=st.booleans())
def test_round_trip(folder, array, compress, write_idx):
    path = write_idx(folder / ("rt.gz" if compress else "rt"), array, compress=compress)
    back = data.read_idx(path, ndim=array.ndim)
    assert back.dtype == np.uint8 and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@FAST
@given(array=arrays, cut=st.integers(min_value=1), compress=st.booleans())
def test_any_truncation_is_a_data_error(folder, array, cut, compress):
    raw = idx_bytes(array)
    truncated = raw[: len(raw) - 1 - cut % len(raw)]  # 0 to len-1 bytes kept
    path = folder / ("cut.gz" if compress else "cut")
    path.write_bytes(gzip.compress(truncated) if compress else truncated)
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(path, ndim=array.ndim)


@FAST
@given(array=arrays, extra=st.binary(min_size=1, max_size=64), compress=st.booleans())
def test_any_extension_is_a_data_error(folder, array, extra, compress):
    raw = idx_bytes(array) + extra
    path = folder / ("long.gz" if compress else "long")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    with pytest.raises(DataError, match="too long"):
        data.read_idx(path, ndim=array.ndim)


@FAST
@given(array=arrays, keep=st.integers(min_value=0))
def test_any_truncation_of_the_gzip_stream_is_a_data_error(folder, array, keep):
    packed = gzip.compress(idx_bytes(array))
    path = folder / "stream.gz"
    path.write_bytes(packed[: keep % len(packed)])
    with pytest.raises(DataError):
        data.read_idx(path, ndim=array.ndim)


@FAST
@given(array=arrays, magic=st.binary(min_size=4, max_size=4), compress=st.booleans())
def test_any_other_magic_number_is_a_data_error(folder, array, magic, compress):
    raw = idx_bytes(array)
    assume(magic != raw[:4])
    path = folder / ("magic.gz" if compress else "magic")
    path.write_bytes(gzip.compress(magic + raw[4:]) if compress else magic + raw[4:])
    with pytest.raises(DataError, match="magic number") as info:
        data.read_idx(path, ndim=array.ndim)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _structured_bytes():
    """Random bytes, and random bytes behind a right magic number, so the shape checks get exercised too."""
    magic = st.integers(1, 3).map(lambda n: bytes([0, 0, 8, n]))
    small_dims = st.lists(st.integers(0, 4).map(lambda d: d.to_bytes(4, "big")), max_size=3).map(b"".join)
    return st.one_of(
        st.binary(max_size=200),
        st.tuples(magic, st.binary(max_size=200)).map(b"".join),
        st.tuples(magic, small_dims, st.binary(max_size=64)).map(b"".join),
    )


@FAST
@given(raw=_structured_bytes(), ndim=st.integers(1, 3), compress=st.booleans())
def test_random_bytes_give_a_data_error_or_a_valid_array(folder, raw, ndim, compress):
    path = folder / ("rand.gz" if compress else "rand")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    try:
        array = data.read_idx(path, ndim=ndim)
    except DataError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    # Accepted: then it is exactly what the header says.
    assert raw[:4] == bytes([0, 0, 8, ndim])
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    assert array.dtype == np.uint8 and array.shape == shape
    assert array.tobytes() == raw[4 + 4 * ndim:]


@FAST
@given(raw=st.binary(max_size=200))
def test_random_bytes_in_a_gz_file_are_a_data_error(folder, raw):
    assume(not raw.startswith(b"\x1f\x8b"))
    path = folder / "notgz.gz"
    path.write_bytes(raw)  # an empty .gz reads as empty content, whose header is then too short
    with pytest.raises(DataError):
        data.read_idx(path, ndim=1)


def test_header_whose_dims_overflow_int64_is_a_data_error(folder):
    path = folder / "overflow"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"".join((1 << k).to_bytes(4, "big") for k in (22, 21, 21)))
    with pytest.raises(DataError):
        data.read_idx(path, ndim=3)


# ---------------------------------------------------------------------------------------------
# Option validation

ints = st.one_of(st.integers(-3, 20), st.integers())
floats = st.floats(allow_nan=True, allow_infinity=True)
# Values beyond these may be refused in future (an upper bound) without breaking these properties;
# values within them must be accepted whenever the documented constraints hold.
MODEST = 1000  # sizes, counts and indices
MODEST_SEED = 2**31 - 1
MODEST_LR = 1.0
MODEST_NOISE = 5.0


def _outcome(build):
    try:
        return build()
    except ConfigError as exc:
        message = str(exc)  # Python's spelling; the template names the setting first (the CLI: its option)
        assert exc.template.startswith("\u27e8") and "\n" not in message, message
        return exc


@FAST
@given(z_dim=ints, hidden_dim=ints)
def test_model_config_constructs_or_refuses(z_dim, hidden_dim):
    made = _outcome(lambda: ModelConfig(z_dim=z_dim, hidden_dim=hidden_dim))
    valid = z_dim >= 1 and hidden_dim >= 1
    if isinstance(made, ConfigError):
        assert not valid or max(z_dim, hidden_dim) > MODEST, made
    else:
        assert valid


@FAST
@given(epochs=ints, batch_size=ints, lr=st.one_of(floats, st.floats(1e-6, 1.0)), seed=ints, save_every=ints,
       keep=ints, precision=st.one_of(st.sampled_from(PRECISIONS), st.text(max_size=6)))
@example(epochs=1, batch_size=1, lr=math.nan, seed=0, save_every=1, keep=1, precision="fp32")
@example(epochs=1, batch_size=1, lr=math.inf, seed=0, save_every=1, keep=1, precision="fp32")
@example(epochs=1, batch_size=1, lr=5e-324, seed=0, save_every=1, keep=1, precision="bf16")
def test_train_config_constructs_or_refuses(epochs, batch_size, lr, seed, save_every, keep, precision):
    made = _outcome(lambda: TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                        save_every=save_every, keep=keep, precision=precision))
    valid = (epochs >= 1 and batch_size >= 1 and math.isfinite(lr) and lr > 0 and seed >= 0
             and save_every >= 1 and keep >= 1 and precision in PRECISIONS)
    if isinstance(made, ConfigError):
        big = max(epochs, batch_size, save_every, keep) > MODEST or seed > MODEST_SEED or lr > MODEST_LR
        assert not valid or big, made
    else:
        assert valid
        assert made.lr == lr and made.precision == precision


@FAST
@given(n=ints, noise=st.one_of(floats, st.floats(-3, 3)), seed=ints, scale=ints,
       digits=st.lists(ints, max_size=4).map(tuple), indices=st.lists(ints, max_size=4).map(tuple))
@example(n=1, noise=math.nan, seed=0, scale=1, digits=(0,), indices=())
@example(n=1, noise=-math.inf, seed=0, scale=1, digits=(0,), indices=())
@example(n=1, noise=0.0, seed=0, scale=16, digits=(9,), indices=(0,))
def test_generate_config_constructs_or_refuses(n, noise, seed, scale, digits, indices):
    made = _outcome(lambda: GenerateConfig(n=n, noise=noise, seed=seed, scale=scale, digits=digits, indices=indices))
    valid = (n >= 1 and math.isfinite(noise) and noise >= 0 and seed >= 0 and 1 <= scale <= 16 and len(digits) > 0
             and all(d >= 0 for d in digits) and all(i >= 0 for i in indices))
    if isinstance(made, ConfigError):
        big = max(n, *indices, 0) > MODEST or seed > MODEST_SEED or abs(noise) > MODEST_NOISE
        assert not valid or big, made
    else:
        assert valid


# ---------------------------------------------------------------------------------------------
# cli._int_list

whitespace = st.text(alphabet=" \t", max_size=2)
number = st.tuples(whitespace, st.integers(), whitespace).map(lambda t: (t[1], f"{t[0]}{t[1]}{t[2]}"))
# A part that int() cannot read: it holds a letter or a dot (and never a comma).
junk = st.text(alphabet=st.characters(exclude_characters=","), max_size=5).flatmap(
    lambda s: st.sampled_from("ax.?z").map(lambda c: s + c))


@FAST
@given(items=st.lists(number, max_size=6), blank=st.booleans())
def test_int_list_reads_comma_separated_integers(items, blank):
    text = ",".join(part for _, part in items) + ("," if blank and items else "")
    assert cli._int_list(text, "--digits") == tuple(value for value, _ in items)


@FAST
@given(before=st.lists(number, max_size=3), bad=junk, after=st.lists(number, max_size=3))
def test_int_list_refuses_any_part_that_is_not_an_integer(before, bad, after):
    text = ",".join([*(p for _, p in before), bad, *(p for _, p in after)])
    with pytest.raises(typer.BadParameter, match="--index takes comma-separated whole numbers") as info:
        cli._int_list(text, "--index")
    assert repr(text) in str(info.value)


@FAST
@given(text=st.text(max_size=20))
def test_int_list_on_any_text_returns_ints_or_bad_parameter(text):
    try:
        parsed = cli._int_list(text, "--digits")
    except typer.BadParameter as exc:
        assert "--digits" in str(exc)
        return
    parts = [part for part in text.split(",") if part.strip()]
    assert isinstance(parsed, tuple) and len(parsed) == len(parts)
    assert all(type(value) is int for value in parsed)


def test_int_list_of_nothing_is_empty():
    assert cli._int_list(None, "--digits") == () and cli._int_list("", "--digits") == ()


# ---------------------------------------------------------------------------------------------
# generate --digits through the command line

def _expected_digits_ok(text: str) -> bool:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        return False
    return bool(values) and all(0 <= v <= 9 for v in values)


@CLI
@given(text=st.one_of(st.text(max_size=12), st.lists(st.integers(-2, 12).map(str), max_size=4).map(",".join)))
@example(text="3,8")
@example(text="")
@example(text="\n")
@example(text="1\u20282")
def test_generate_digits_are_read_or_refused_in_words(text):
    # The names are the checkpoint's data set's, so --digits is read once it is loaded: by
    # options.class_numbers, whose ConfigError the command line prints as one line.
    try:
        numbers = options.class_numbers(text, "mnist")
    except ConfigError as exc:
        assert not _expected_digits_ok(text) and re.match(r"digits (takes|must)", str(exc)), exc
    else:
        assert _expected_digits_ok(text) and numbers == tuple(int(p) for p in text.split(",") if p.strip())
