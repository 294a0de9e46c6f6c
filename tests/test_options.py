"""Options given as text: data set names and class numbers."""

from __future__ import annotations

import pytest

from pyro_vae import options
from pyro_vae.errors import ConfigError


def test_class_numbers_take_numbers_or_names():
    assert options.class_numbers("Sneaker, bag,0", "fashion-mnist") == (7, 8, 0)
    assert options.class_numbers("3,8", "mnist") == (3, 8)
    with pytest.raises(ConfigError, match=r"digits takes classes 0 to 9 or their names \(T-shirt/top, .*\), got Hat"):
        options.class_numbers("Hat", "fashion-mnist")
    with pytest.raises(ConfigError, match="digits takes digits 0 to 9, got 10"):
        options.class_numbers("10", "mnist")


def test_dataset_names_take_one_or_with_several_a_list():
    assert options.dataset_names(None) == () and options.dataset_names(" fashion-mnist ") == ("fashion-mnist",)
    assert options.dataset_names("mnist,fashion-mnist,mnist", several=True) == ("mnist", "fashion-mnist")
    with pytest.raises(ConfigError, match="dataset takes one data set here"):
        options.dataset_names("mnist,fashion-mnist")
    with pytest.raises(ConfigError, match="dataset must be one of mnist, fashion-mnist, idx, got 'emnist'"):
        options.dataset_names("mnist,emnist", several=True)
