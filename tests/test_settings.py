"""Settings objects are the API: each run takes one frozen, self-checking settings object that a YAML
or results file holds, not a flat list of keywords."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import yaml

import qgesco
from qgesco.evaluate import EvalSettings, evaluate
from qgesco.quant import CalibrationRecipe, QuantConfig
from qgesco.semcom import CompareSettings, compare


@pytest.mark.parametrize("fn", [qgesco.quantize, qgesco.build_calibration_set, evaluate, compare])
def test_each_run_takes_a_settings_object_not_a_keyword_list(fn):
    assert len(inspect.signature(fn).parameters) <= 4, fn.__name__


@pytest.mark.parametrize(
    "settings",
    [
        QuantConfig(weight_bits=4, act_bits=8, keep_fp=("out",), iters=5),
        CalibrationRecipe(num_maps=4, psnrs=(1, 50), steps=4, every=2),
        EvalSettings("camvid:val", psnrs=(20, 10), guidance_window=(500, 999), metrics=("lpips",)),
        CompareSettings("camvid:val", snrs=(10, 0), schemes=("analog-map",), images=4),
    ],
)
def test_settings_are_frozen_and_survive_a_yaml_file(settings):
    assert dataclasses.is_dataclass(settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1
    text = yaml.safe_dump(settings.to_dict())
    assert type(settings).from_dict(yaml.safe_load(text)) == settings
