import numpy as np
import pytest
from conftest import row_ids

from cflkit import SCENARIOS, load_dataset, make_federation
from cflkit.core.scenarios import PARTITIONS, TRANSFORMS


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def all_ids(fed, c):
    return np.concatenate([row_ids(fed, fed.train_index[c]), row_ids(fed, fed.test_index[c])])


MIXED = ["rotation+quantity_skew", "dirichlet+label_swap+feature_skew"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS) + MIXED)
def test_same_seed_same_federation_and_another_seed_another(scenario, digits):
    a = make_federation(digits, scenario, clients=12, groups=3, seed=7)
    b = make_federation(digits, scenario, clients=12, groups=3, seed=7)
    c = make_federation(digits, scenario, clients=12, groups=3, seed=8)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.groups, b.groups)
    for i in range(12):
        np.testing.assert_array_equal(a.train_index[i], b.train_index[i])
    assert not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ground_truth_groups_are_balanced_and_train_test_disjoint(scenario, id_dataset):
    fed = make_federation(id_dataset, scenario, clients=12, groups=4, seed=0)
    planted = 1 if scenario in ("iid", "quantity_skew") else 4
    assert fed.n_groups == planted and len(fed.group_names) == planted
    assert np.bincount(fed.groups).tolist() == [12 // planted] * planted
    if scenario in TRANSFORMS:  # transforms change the id column; sampling is the same as iid's
        return
    seen = []
    for c in range(12):
        tr, te = row_ids(fed, fed.train_index[c]), row_ids(fed, fed.test_index[c])
        assert len(tr) >= 1 and len(te) >= 1
        assert not set(tr) & set(te)
        seen.append(np.concatenate([tr, te]))
    seen = np.concatenate(seen)
    assert len(seen) == len(set(seen)), "clients must not share samples unless samples_per_client asks for reuse"


def test_iid_clients_have_equal_sizes_and_one_group(id_dataset):
    fed = make_federation(id_dataset, "iid", clients=10, seed=0)
    sizes = [len(all_ids(fed, c)) for c in range(10)]
    assert sizes == [200] * 10
    assert set(fed.groups) == {0}


def test_shards_give_each_group_its_own_disjoint_classes(id_dataset):
    fed = make_federation(id_dataset, "shards", clients=8, groups=4, classes_per_client=2, seed=1)
    classes = {}
    for c in range(8):
        cls = frozenset(np.unique(id_dataset.y[all_ids(fed, c)]).tolist())
        assert len(cls) == 2
        classes.setdefault(fed.groups[c], set()).add(cls)
    assert all(len(v) == 1 for v in classes.values()), "clients of one group share one class set"
    sets = [next(iter(v)) for v in classes.values()]
    assert len(frozenset().union(*sets)) == 8, "4 groups x 2 classes are disjoint"


def test_label_skew_removes_classes_per_group(id_dataset):
    fed = make_federation(id_dataset, "label_skew", clients=8, groups=4, removed_classes=3, seed=2)
    missing = {}
    for c in range(8):
        present = set(np.unique(id_dataset.y[all_ids(fed, c)]).tolist())
        missing.setdefault(fed.groups[c], set()).add(frozenset(set(range(10)) - present))
    assert all(len(v) == 1 and len(next(iter(v))) == 3 for v in missing.values())
    assert len({next(iter(v)) for v in missing.values()}) == 4


def test_dirichlet_clients_of_a_group_share_class_proportions(id_dataset):
    fed = make_federation(id_dataset, "dirichlet", clients=8, groups=2, alpha=0.3, samples_per_client=400, seed=3)
    hist = np.array([np.bincount(id_dataset.y[all_ids(fed, c)], minlength=10) / 400 for c in range(8)])
    g = fed.groups
    within = np.abs(hist[g == 0][0] - hist[g == 0][1]).sum()
    between = np.abs(hist[g == 0][0] - hist[g == 1][0]).sum()
    assert within < 0.05 < between


def test_rotation_rotates_each_group_by_its_angle(digits):
    fed = make_federation(digits, "rotation", clients=8, groups=4, seed=4)
    originals = {digits.x[i].tobytes() for i in range(len(digits))}
    for c in range(8):
        x_train = fed.client(c)[0]
        back = np.rot90(x_train, k=-int(fed.groups[c]), axes=(1, 2))
        assert all(img.tobytes() in originals for img in back)
        if fed.groups[c] != 0:
            assert not all(img.tobytes() in originals for img in x_train)


def test_rotation_of_tabular_data_permutes_features_per_group(id_dataset):
    fed = make_federation(id_dataset, "rotation", clients=4, groups=2, seed=0)
    for c in range(4):
        first = fed.x[fed.train_index[c], 0]
        is_id = np.allclose(first, np.round(first))  # ids stay in column 0 only in group 0
        assert is_id == (fed.groups[c] == 0)


def test_label_swap_applies_one_distinct_permutation_per_group(digits):
    fed = make_federation(digits, "label_swap", clients=8, groups=4, seed=5)
    lookup = {}
    for i in range(len(digits)):
        lookup.setdefault(digits.x[i].tobytes(), set()).add(int(digits.y[i]))
    perms = {}
    for c in range(8):
        xs, ys = fed.client(c)[:2]
        mapping = perms.setdefault(fed.groups[c], {})
        for img, label in zip(xs, ys):
            orig = lookup[img.tobytes()]
            if len(orig) == 1:
                o = next(iter(orig))
                assert mapping.setdefault(o, int(label)) == int(label)
    assert all(k == v for k, v in perms[0].items()), "group 0 keeps its labels"
    as_tuples = {g: tuple(sorted(m.items())) for g, m in perms.items()}
    assert len(set(as_tuples.values())) == 4


def test_feature_skew_applies_the_named_transform(digits):
    fed = make_federation(digits, "feature_skew", clients=8, groups=4, skew="none,inversion,erosion,dilation", seed=6)
    originals = {digits.x[i].tobytes() for i in range(len(digits))}
    for c in range(8):
        x = fed.client(c)[0]
        g = fed.groups[c]
        if g == 0:
            assert all(img.tobytes() in originals for img in x)
        elif g == 1:
            assert all((1.0 - img).astype(np.float32).tobytes() in originals for img in x)
        else:  # erosion darkens, dilation brightens
            mean = x.mean()
            ref = np.mean([digits.x[i].mean() for i in range(len(digits))])
            assert (mean < ref) if g == 2 else (mean > ref)


def test_quantity_skew_gives_power_law_sizes_or_given_ratios(id_dataset):
    fed = make_federation(id_dataset, "quantity_skew", clients=20, seed=0)
    sizes = np.array([len(all_ids(fed, c)) for c in range(20)])
    assert sizes.max() / sizes.min() > 4 and sizes.sum() <= 2000
    fed = make_federation(id_dataset, "quantity_skew", clients=4, quantity_ratios=(1, 3), seed=0)
    sizes = [len(all_ids(fed, c)) for c in range(4)]
    assert sizes == [250, 750, 250, 750]


def test_compositions_combine_their_parts(digits):
    fed = make_federation(digits, "rotation+quantity_skew", clients=12, groups=4, seed=0)
    assert fed.n_groups == 4
    assert fed.sizes.max() > 2 * fed.sizes.min()
    assert "rotated 90°" in fed.group_names


def test_samples_per_client_draws_with_reuse(id_dataset):
    fed = make_federation(id_dataset, "iid", clients=30, samples_per_client=100, seed=0)
    ids = np.concatenate([all_ids(fed, c) for c in range(30)])
    assert len(ids) == 3000 and len(set(ids)) == 2000
    assert all(len(set(all_ids(fed, c))) == 100 for c in range(30))


@pytest.mark.parametrize("kwargs, message", [
    (dict(scenario="rotaton"), "unknown scenario 'rotaton'; choose one of: iid, dirichlet"),
    (dict(scenario="dirichlet+shards"), "combines dirichlet and shards; use at most one of"),
    (dict(scenario="rotation+rotation"), "names a part twice"),
    (dict(clients=600), "impossible partition: 2000 samples of 'ids' cannot give 600 clients"),
    (dict(scenario="rotation", groups=20, clients=10), "groups must be between 1 and clients"),
    (dict(scenario="shards", classes_per_client=11), "classes_per_client must be between 1 and 10"),
    (dict(scenario="shards", clients=400, groups=2, classes_per_client=1), "impossible partition: clients"),
    (dict(scenario="feature_skew", skew="blur"), "unknown feature skew 'blur' for tabular data"),
    (dict(test_fraction=1.5), "test_fraction must be in"),
])
def test_bad_scenarios_fail_with_a_clear_message(id_dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_federation(id_dataset, **kwargs)


def test_label_swap_refuses_more_groups_than_permutations():
    from cflkit import load_dataset as load

    with pytest.raises(ValueError, match="only 2 distinct label permutations"):
        make_federation(load("breast_cancer"), "label_swap", clients=8, groups=3)


def test_every_partition_is_listed():
    assert set(PARTITIONS) <= set(SCENARIOS)
