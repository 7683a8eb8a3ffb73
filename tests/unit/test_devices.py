"""The one ``--device`` rule (``image_dynamics.devices``) that predict, serve, animate and train share."""

import pytest
import torch

from image_dynamics.devices import resolve_device
from image_dynamics.errors import UserError


def test_auto_and_cpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device(" CPU ") == "cpu"


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cuda0", "gpu", ""])
def test_unknown_names_are_refused_with_the_accepted_ones(name):
    if name == "":
        assert resolve_device(name) == resolve_device("auto")  # empty means the default
        return
    with pytest.raises(UserError) as err:
        resolve_device(name)
    assert "auto, cpu, cuda or cuda:N" in err.value.hint


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_asking_for_a_missing_gpu_is_an_error_not_a_quiet_cpu_run(name):
    with pytest.raises(UserError, match="sees no CUDA GPU") as err:
        resolve_device(name)
    assert "--device cpu" in err.value.hint
