"""The difficulty knobs of the planted scenarios: ``rotation_angle`` (rotation of images by
multiples of an angle) and ``swapped_labels`` (label swap as a cycle over k classes)."""
import numpy as np
import pytest
from scipy.ndimage import rotate

from cflkit import Config
from cflkit.core.datasets import load_dataset
from cflkit.core.experiment import federation_from
from cflkit.core.scenarios import apply_transforms, group_transforms


def _transforms(dataset, parts, n_groups, **knobs):
    return group_transforms(dataset, parts, n_groups, "", 0.5, np.random.default_rng(0), **knobs)


def test_rotation_angle_rotates_group_g_by_g_times_the_angle():
    digits = load_dataset("digits")
    x, y = digits.x[:20], digits.y[:20]
    t = _transforms(digits, ["rotation"], 4, rotation_angle=30.0)
    for g in range(4):
        got, same_y = apply_transforms(x, y, g, t, np.random.default_rng(0))
        want = rotate(x, 30.0 * g, axes=(1, 2), reshape=False, order=1, mode="constant")
        np.testing.assert_allclose(got, want)
        np.testing.assert_array_equal(same_y, y)
    # a quarter turn by the angle knob is the default 90-degree planting, up to interpolation rounding
    quarter = _transforms(digits, ["rotation"], 4, rotation_angle=90.0)
    default = _transforms(digits, ["rotation"], 4)
    for g in range(4):
        a = apply_transforms(x, y, g, quarter, None)[0]
        np.testing.assert_allclose(a, apply_transforms(x, y, g, default, None)[0], atol=1e-5)


def test_swapped_labels_moves_exactly_that_many_labels_in_distinct_cycles():
    digits = load_dataset("digits")
    for moved in (2, 3, 10):
        perms = _transforms(digits, ["label_swap"], 6, swapped_labels=moved)["perms"]
        assert len({tuple(p) for p in perms}) == 6 and (perms[0] == np.arange(10)).all()
        for p in perms[1:]:
            assert sorted(p) == list(range(10)) and (p != np.arange(10)).sum() == moved
    cancer = load_dataset("breast_cancer")  # two classes: one non-identity cycle
    assert len(_transforms(cancer, ["label_swap"], 2, swapped_labels=2)["perms"]) == 2
    with pytest.raises(ValueError, match="gives fewer than groups=3 distinct permutations"):
        _transforms(cancer, ["label_swap"], 3, swapped_labels=2)


def test_the_knobs_reach_the_federation_and_its_description():
    fed = federation_from(Config(dataset="digits", scenario="rotation", clients=8, groups=4, rotation_angle=15))
    assert "rotated 45°" in fed.description and "rotated 90°" not in fed.description
    fed = federation_from(Config(dataset="digits", scenario="label_swap", clients=8, groups=4, swapped_labels=2))
    assert "2 labels cycled" in fed.description


@pytest.mark.parametrize("changes, message", [
    (dict(dataset="breast_cancer", scenario="rotation", rotation_angle=10),
     "rotation_angle=10 applies to scenario 'rotation' on an image dataset"),
    (dict(scenario="label_swap", rotation_angle=10), "rotation_angle=10 applies to scenario 'rotation'"),
    (dict(scenario="rotation", rotation_angle=200), "rotation_angle must be in (0, 120] degrees for groups=4"),
    (dict(scenario="rotation", swapped_labels=2), "swapped_labels=2 applies to scenario 'label_swap'"),
    (dict(scenario="label_swap", swapped_labels=11), "swapped_labels must be 0 (all labels) or in 2..10"),
    (dict(scenario="label_swap", swapped_labels=1), "swapped_labels must be 0 (all labels) or in 2..10"),
])
def test_a_knob_out_of_range_or_without_its_scenario_is_refused(changes, message):
    with pytest.raises(ValueError) as e:
        federation_from(Config(**{"dataset": "digits", **changes}))
    assert message in str(e.value)


def test_negative_knobs_are_refused_by_the_config():
    with pytest.raises(ValueError, match="rotation_angle must be >= 0"):
        Config(rotation_angle=-5)
    with pytest.raises(ValueError, match="swapped_labels must be >= 0"):
        Config(swapped_labels=-1)
