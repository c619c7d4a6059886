import numpy as np
import pytest

from cflkit.core.aggregate import balanced_random_assignment, cluster_average, contiguous, weighted_average


def test_weighted_average_known_answer():
    w = [np.array([[0.0, 0.0], [3.0, 6.0], [10.0, 10.0]]), np.array([[1.0], [2.0], [3.0]])]
    avg = weighted_average(w, sizes=[1, 2, 1])
    np.testing.assert_allclose(avg[0], [[(0 + 6 + 10) / 4, (0 + 12 + 10) / 4]])
    np.testing.assert_allclose(avg[1], [[(1 + 4 + 3) / 4]])


def test_equal_weights_average_to_the_mean_and_identical_models_are_fixed_points():
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(5, 3, 4))]
    np.testing.assert_allclose(weighted_average(w, np.ones(5))[0][0], w[0].mean(0), rtol=1e-6)
    same = [np.repeat(rng.normal(size=(1, 7)), 6, axis=0)]
    np.testing.assert_allclose(weighted_average(same, rng.integers(1, 50, 6))[0], same[0][:1], rtol=1e-6)


def test_cluster_average_averages_within_each_cluster_only():
    rng = np.random.default_rng(1)
    w = [rng.normal(size=(6, 4))]
    sizes = np.array([1, 2, 3, 4, 5, 6])
    assignment = np.array([0, 1, 0, 2, 1, 2])
    out = cluster_average(w, sizes, assignment, 3)[0]
    assert out.shape == (3, 4)
    for k in range(3):
        m = assignment == k
        np.testing.assert_allclose(out[k], (w[0][m] * sizes[m, None]).sum(0) / sizes[m].sum(), rtol=1e-6)


def test_cluster_average_rejects_empty_clusters_and_bad_ids():
    w = [np.zeros((3, 2))]
    with pytest.raises(ValueError, match=r"clusters \[1\] have no clients"):
        cluster_average(w, [1, 1, 1], [0, 0, 2], 3)
    with pytest.raises(ValueError, match="outside 0..1"):
        cluster_average(w, [1, 1, 1], [0, 1, 2], 2)
    with pytest.raises(ValueError, match="stacked for 3 clients, sizes for 2"):
        cluster_average(w, [1, 1], [0, 0], 1)


def test_contiguous_relabels_in_order_of_appearance():
    np.testing.assert_array_equal(contiguous([7, 7, 3, 9, 3]), [0, 0, 1, 2, 1])


def test_balanced_random_assignment_is_balanced_and_seeded():
    a = balanced_random_assignment(10, 3, np.random.default_rng(5))
    assert sorted(np.bincount(a).tolist()) == [3, 3, 4]
    np.testing.assert_array_equal(a, balanced_random_assignment(10, 3, np.random.default_rng(5)))
    with pytest.raises(ValueError):
        balanced_random_assignment(2, 3, np.random.default_rng(0))
