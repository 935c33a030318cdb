"""A misspelt flavour or experiment name gets the closest valid one in the error."""

from __future__ import annotations

import numpy as np
import pytest

import rmsprop
from rmsprop.numpy import RMSprop


@pytest.mark.parametrize("typo, meant", [("tensorflw", "tensorflow"), ("Keras", "keras"),
                                         ("pytorh", "pytorch"), ("sb-3", "sb3")])
def test_a_misspelt_flavour_names_the_closest(typo, meant):
    with pytest.raises(ValueError, match=f"did you mean '{meant}'"):
        rmsprop.resolve(typo)
    with pytest.raises(ValueError, match=f"did you mean '{meant}'"):
        RMSprop([np.zeros(2)], flavor=typo)


def test_a_name_like_none_of_them_gets_no_guess():
    with pytest.raises(ValueError, match="flavor must be one of") as error:
        rmsprop.resolve("xyzzy")
    assert "did you mean" not in str(error.value)
