"""The survival task: Cox loss (numpy and the trainer's batch loss), Harrell's C-index, the
trainer's masking, the summaries and the methods that cannot serve it."""
import numpy as np
import pytest

from cflkit.core.survival import concordance_index, cox_batch_loss, cox_loss, survival_metrics
from cflkit.core.trainer import Trainer, initial_weights, seed_keras, stack

# a small example: times with ties (3 twice, both events; 5 an event and a censoring), censoring
TIME = np.array([5.0, 3.0, 8.0, 3.0, 1.0, 5.0])
EVENT = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
SCORE = np.array([0.3, -0.2, 0.5, 1.1, 0.0, -0.7])


def direct_cox(time, event, score):
    """The Breslow partial likelihood written out, one event at a time, over the rows (FLamby's scale)."""
    terms = []
    for i in range(len(time)):
        if event[i]:
            risk = [j for j in range(len(time)) if time[j] >= time[i]]
            terms.append(np.log(sum(np.exp(score[j]) for j in risk)) - score[i])
    return sum(terms) / len(time) if terms else 0.0


def test_the_cox_loss_is_the_direct_transcription_with_ties_and_censoring():
    y = np.column_stack([EVENT, TIME])
    assert cox_loss(y, SCORE) == pytest.approx(direct_cox(TIME, EVENT, SCORE), rel=1e-12)
    assert cox_loss(y, SCORE + 100.0) == pytest.approx(cox_loss(y, SCORE), rel=1e-9)  # shift-invariant
    assert cox_loss(np.column_stack([np.zeros(6), TIME]), SCORE) == 0.0  # no event: 0
    order = np.random.default_rng(0).permutation(6)  # Breslow's ties: the row order does not matter
    assert cox_loss(y[order], SCORE[order]) == pytest.approx(cox_loss(y, SCORE), rel=1e-12)


def test_the_trainers_batch_loss_matches_numpy_with_padding_and_an_idle_client():
    from cflkit.core._tf import tf

    tf_ = tf()
    y = np.zeros((3, 8, 2), np.float32)
    out = np.zeros((3, 8, 1), np.float32)
    mask = np.zeros((3, 8), np.float32)
    y[0, :6] = np.column_stack([EVENT, TIME])
    out[0, :6, 0] = SCORE
    mask[0, :6] = 1
    y[0, 6:] = [[1.0, 0.5], [1.0, 9.0]]  # padding rows that look like events: must be ignored
    out[0, 6:, 0] = [50.0, -3.0]
    y[1, :4] = np.column_stack([[0, 0, 0, 0], [1, 2, 3, 4]])  # a batch without an event
    mask[1, :4] = 1
    got = cox_batch_loss(tf_.constant(y), tf_.constant(out), tf_.constant(mask)).numpy()
    np.testing.assert_allclose(got, [direct_cox(TIME, EVENT, SCORE), 0.0, 0.0], rtol=1e-5, atol=1e-7)


def test_the_gradient_raises_the_risk_of_an_early_event_and_lowers_a_late_censored_one():
    from cflkit.core._tf import tf

    tf_ = tf()
    s = tf_.Variable(SCORE[None, :, None].astype(np.float32))
    y = tf_.constant(np.column_stack([EVENT, TIME])[None].astype(np.float32))
    with tf_.GradientTape() as tape:
        loss = tf_.reduce_sum(cox_batch_loss(y, s, tf_.ones((1, 6))))
    g = tape.gradient(loss, s).numpy()[0, :, 0]
    assert g[1] < 0 and g[3] < 0  # events at the earliest event time: descending the loss raises their risk
    assert g[2] > 0 and g[4] == 0  # censored last: only in risk sets; censored first (t=1): in none
    eps = 1e-4  # and it is the numerical derivative of the numpy loss
    y64 = np.column_stack([EVENT, TIME])
    for i in range(6):
        d = np.zeros(6)
        d[i] = eps
        num = (cox_loss(y64, SCORE + d) - cox_loss(y64, SCORE - d)) / (2 * eps)
        assert g[i] == pytest.approx(num, abs=1e-4)


def test_c_index_known_answers():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    e = np.ones(4)
    assert concordance_index(t, e, -t) == 1.0  # the earliest the riskiest: perfect
    assert concordance_index(t, e, t) == 0.0  # reversed
    assert concordance_index(t, e, np.zeros(4)) == 0.5  # all tied
    # censoring: row 1 censored at 2 is comparable only with row 0 (event at 1, before it)
    t2, e2 = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 1.0])
    # pairs: (0,1) and (0,2) only (1 censored, 2 last); s0 > s1 concordant, s0 < s2 discordant
    assert concordance_index(t2, e2, np.array([1.0, 0.0, 2.0])) == 0.5
    assert concordance_index(t2, e2, np.array([3.0, 0.0, 2.0])) == 1.0
    # hand-worked with ties: pairs (0,1),(0,2),(0,3),(0,5),(1,2),(1,5),(3,2),(3,5); two events tied at 3 (1, 3)
    # are not a pair; 5 censored at 5 with the event 0 at 5 is a pair (0 died first)
    # concordant: (0,5) (0.3>-0.7), (1,5), (3,5), (3,2) (1.1>0.5), (0,1)? no, 0 is later than 1: (1,0): -0.2<0.3 no
    pairs = {(1, 0): 0, (1, 2): 0, (1, 5): 1, (3, 0): 1, (3, 2): 1, (3, 5): 1, (0, 2): 0, (0, 5): 1}
    assert concordance_index(TIME, EVENT, SCORE) == pytest.approx(sum(pairs.values()) / len(pairs))
    assert np.isnan(concordance_index([1.0, 2.0], [0, 0], [0.1, 0.2]))  # no event, no pair


def survival_trainer(**kw):
    from cflkit.core.models import build_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    risk = x[:, 0]
    time = rng.exponential(np.exp(-risk)).astype(np.float32)
    event = (rng.random(60) < 0.7).astype(np.float32)
    seed_keras(0)
    model = build_model("mlp", (4,), 1, (8,))
    return Trainer(model, x, np.column_stack([event, time]), loss="survival", **kw), model


def test_idle_steps_leave_a_small_clients_weights_untouched():
    trainer, model = survival_trainer(learning_rate=0.05, batch_size=4, local_epochs=2)
    start = stack(initial_weights(lambda: model), 2)
    index = [np.arange(0, 40), np.arange(40, 46)]  # 10 steps per epoch vs 2: the small client idles 16 steps
    together = trainer.train(start, index, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    for _ in range(2):
        rng.permutation(40)  # the big client's permutations come first
    alone = trainer.train([w[1:2] for w in start], [index[1]], rng)
    for t, a in zip(together, alone):
        np.testing.assert_allclose(t[1:2], a, atol=1e-6)
    # both clients moved (the output bias does not: the Cox loss ignores a shift of the score)
    assert all(np.abs(together[0][c] - start[0][c]).max() > 1e-4 for c in (0, 1))
    np.testing.assert_allclose(together[-1], start[-1], atol=1e-6)
    m = trainer.metrics(together, index)
    assert set(m) == {"loss", "c_index"} and np.isfinite(m["c_index"]).all()
    loss, score = trainer.evaluate(together, index)
    np.testing.assert_array_equal(score, m["c_index"])
    pred = trainer.predict(together, index)
    assert m["loss"][1] == pytest.approx(survival_metrics(pred[1], trainer.y[index[1]])["loss"])


def test_gradients_of_the_survival_task_are_finite():
    trainer, model = survival_trainer()
    grads = trainer.gradients(stack(initial_weights(lambda: model), 2), [np.arange(30), np.arange(30, 60)])
    assert all(np.isfinite(g).all() for g in grads)


def test_per_sample_loss_refuses_survival_with_a_reason():
    from cflkit.core.trainer import per_sample_loss

    with pytest.raises(ValueError, match="task 'survival' has no per-sample loss"):
        per_sample_loss("survival")


def test_survival_summary_and_compare_headline():
    import pandas as pd

    from cflkit.core.metrics import survival_summary
    from cflkit.study.compare import headline

    last = pd.DataFrame({"c_index": [0.5, 0.9, np.nan, 0.7], "test_size": [10, 30, 5, 10]})
    s = survival_summary(last)
    assert s["c_index_mean"] == pytest.approx(0.7) and s["c_index_clients"] == 3
    assert s["c_index_weighted"] == pytest.approx((5 + 27 + 7) / 50) and s["c_index_worst10"] == 0.5
    grid = pd.DataFrame({"ari": [1.0], "accuracy_mean": [np.nan], "c_index_mean": [0.7], "auroc_mean": [np.nan]})
    assert headline(grid) == ("ari", "c_index_mean")
    classes = pd.DataFrame({"ari": [1.0], "accuracy_mean": [0.8], "auroc_mean": [0.9]})
    assert headline(classes) == ("ari", "accuracy_mean", "auroc_mean", "auprc_mean")
