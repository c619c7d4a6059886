"""FLamby's Fed-Heart-Disease (split=flamby): its split, its normalisation, its baseline reproduced."""
import numpy as np
import pytest

from cflkit import Config, federation_from, run
from cflkit.core.trainer import batch_plan
from cflkit.data import heart

FLAMBY = Config(**heart.FLAMBY_COMMON)


def test_the_split_is_flambys_486_training_and_254_test_rows_whatever_the_seed():
    fed = federation_from(FLAMBY)
    assert [len(t) for t in fed.train_index] == [199, 172, 30, 85]  # FLamby: 486 // 4 clients in its rounds
    assert [len(t) for t in fed.test_index] == [104, 89, 16, 45]
    assert fed.x.shape == (740, 13)
    again = federation_from(FLAMBY.replace(seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(fed.test_index, again.test_index))


def test_each_centre_is_normalised_with_its_own_training_rows_and_the_pooled_data_with_all():
    fed = federation_from(FLAMBY)
    for train in fed.train_index:
        x = fed.x[train].astype(np.float64)
        varying = x.std(axis=0) > 0
        assert np.allclose(x.mean(axis=0), 0, atol=1e-5)
        assert np.allclose(x[:, varying].std(axis=0, ddof=1), 1, atol=1e-4)
    pooled = federation_from(FLAMBY.replace(method="centralized"))
    rows = np.concatenate(pooled.train_index)
    assert np.allclose(pooled.x[rows].mean(axis=0), 0, atol=1e-5) and not np.allclose(pooled.x, fed.x)


@pytest.mark.parametrize("changes, words", [
    (dict(dataset="digits", scenario="rotation"), "split 'flamby' is FLamby's Fed-Heart-Disease"),
    (dict(test_fraction=0.5), "split 'flamby' fixes test_fraction"),
    (dict(split="kfold"), "unknown split 'kfold'; choose one of: default, flamby"),
])
def test_a_bad_split_is_refused(changes, words):
    from cflkit.core.experiment import validate

    with pytest.raises(ValueError, match=words):
        validate(FLAMBY.replace(**changes))


def test_local_steps_gives_every_client_that_many_steps_through_fresh_epochs():
    index, mask = batch_plan([3, 10], batch_size=4, epochs=1, rng=np.random.default_rng(0), local_steps=7)
    active = mask.sum(axis=2) > 0
    assert index.shape == (2, 7, 4) and active.all()
    small = index[0][mask[0] > 0]  # 2 steps per epoch of 3 samples: each epoch visits them once
    assert sorted(small[:3].tolist()) == [0, 1, 2] and sorted(small[3:6].tolist()) == [0, 1, 2]


def _pooled_test_accuracy(setup: str, seeds) -> float:
    return float(np.mean([run(FLAMBY.replace(seed=s, **heart.FLAMBY_PROTOCOL[setup])).summary["accuracy_weighted"]
                          for s in seeds]))


@pytest.mark.slow
@pytest.mark.parametrize("setup, published", [("centralized", "Pooled Training"), ("fedavg", "FedAvg100")])
def test_flambys_pooled_and_fedavg_accuracies_are_reproduced_within_003(setup, published):
    ours = _pooled_test_accuracy(setup, range(5))
    theirs = float(np.mean(heart.FLAMBY_PUBLISHED[published]))
    assert abs(ours - theirs) <= 0.03, (ours, theirs)
