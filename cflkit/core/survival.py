"""Survival analysis: the Cox partial likelihood and Harrell's concordance index.

Labels are ``y = (event, time)`` of shape (N, 2): ``event`` 1 for an observed event, 0 for a
censored row; ``time`` the time to the event or to the censoring. The model's one output is a
log-risk score ``s`` (higher: earlier event), so ``--model logreg`` is the linear Cox model.

Cox loss (Cox 1972; Breslow's handling of ties): the negative log partial likelihood,

    L = (1 / n) * sum_{i: event_i = 1} [ log sum_{j: time_j >= time_i} exp(s_j) - s_i ],

the risk set of a row being every row still at risk at its time, tied times included (Breslow),
so the value does not depend on the order of the rows, divided by the number of rows ``n``
(censored rows included), as FLamby's loss is, so that its SGD learning rates carry over
(with about 14 % events, the mean over events would be ~7x larger). A set with no event
has no partial likelihood: its loss is 0 (and its gradient zero). In training the rows are a client's
minibatch (risk sets within the batch, masked padding excluded, :func:`cox_batch_loss`): the
usual minibatch approximation of the Cox loss, as FLamby's benchmark trains it.

FLamby's ``BaselineLoss`` (``flamby/datasets/fed_tcga_brca/loss.py``) also divides by the
batch size; it differs in one way (``docs/tcga_brca.md``): it sorts the batch by time, so a
row's risk set holds the rows tied with it that happen to come *before* it in the batch
(order-dependent ties) rather than all of them.

C-index (Harrell et al. 1982), as ``lifelines.utils.concordance_index(time, -score, event)``,
FLamby's ``metric``: a pair (i, j) is comparable when i had an event and either
``time_i < time_j``, or the times are equal and j is censored (j was still at risk); it is
concordant when ``s_i > s_j``; a tie in the score counts 0.5. Two events at the same time are
not comparable. No comparable pair: NaN.
"""
from __future__ import annotations

import numpy as np

from ._tf import tf


def cox_loss(y, score) -> float:
    """Negative Cox partial log-likelihood (Breslow ties) of ``score`` on labels ``y`` (N, 2),
    divided by the number of rows N; 0 when there is no event."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    event, time = y[:, 0], y[:, 1]
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores for {len(y)} labels")
    n_events = float(event.sum())
    if n_events == 0:
        return 0.0
    m = s.max()
    at_risk = time[None, :] >= time[:, None]  # [i, j]: j is at risk at time_i
    log_risk = m + np.log((at_risk * np.exp(s - m)[None, :]).sum(axis=1))
    return float(np.sum(event * (log_risk - s)) / len(s))


def concordance_index(time, event, score) -> float:
    """Harrell's C of risk scores ``score`` (higher: earlier event) against ``time`` and
    ``event``; ties in the score count 0.5; NaN without a comparable pair."""
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    e = np.asarray(event).reshape(-1) > 0
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if not len(t) == len(e) == len(s):
        raise ValueError(f"time, event and score must have one value per row, got {len(t)}, {len(e)}, {len(s)}")
    earlier = t[:, None] < t[None, :]
    same_censored = (t[:, None] == t[None, :]) & ~e[None, :]
    comparable = e[:, None] & (earlier | same_censored)  # [i, j]: i's event came first
    n = int(comparable.sum())
    if n == 0:
        return float("nan")
    concordant = np.sum(comparable & (s[:, None] > s[None, :]))
    tied = np.sum(comparable & (s[:, None] == s[None, :]))
    return float((concordant + 0.5 * tied) / n)


def survival_metrics(out, y) -> dict:
    """``loss`` (:func:`cox_loss`) and ``c_index`` (:func:`concordance_index`) of model
    outputs ``out`` (rows, 1) on labels ``y`` (rows, 2)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, 2)
    score = np.asarray(out, dtype=np.float64).reshape(len(y), -1)[:, 0]
    return {"loss": cox_loss(y, score), "c_index": concordance_index(y[:, 1], y[:, 0], score)}


def cox_batch_loss(y, out, mask):
    """Cox loss of every client's batch at once: ``y`` (clients, batch, 2), ``out`` (clients,
    batch, 1), ``mask`` (clients, batch) flags the real rows; returns (clients,).

    Risk sets are taken within a client's own batch, over its real rows only; the sum over
    the batch's events is divided by its real rows (as :func:`cox_loss`), 0 for a batch
    without an event (an idle client's batch is all padding: loss 0, gradient 0, so its
    weights do not move)."""
    tf_ = tf()
    s = out[..., 0]
    mask = tf_.cast(mask, s.dtype)
    event = tf_.cast(y[..., 0], s.dtype) * mask
    time = tf_.cast(y[..., 1], s.dtype)
    real = mask > 0
    # the largest real score of each client (a constant shift: the loss does not depend on it)
    m = tf_.stop_gradient(tf_.reduce_max(tf_.where(real, s, tf_.fill(tf_.shape(s), -1e30)), axis=1, keepdims=True))
    m = tf_.where(tf_.reduce_any(real, axis=1, keepdims=True), m, tf_.zeros_like(m))
    shifted = tf_.exp(tf_.where(real, s - m, tf_.zeros_like(s))) * mask  # padding: 0
    at_risk = tf_.cast(time[:, None, :] >= time[:, :, None], s.dtype)  # [c, i, j]: j at risk at time_i
    risk = tf_.reduce_sum(at_risk * shifted[:, None, :], axis=2)
    log_risk = m + tf_.math.log(tf_.where(event > 0, risk, tf_.ones_like(risk)))  # an event is in its own risk set
    return tf_.reduce_sum(event * (log_risk - s), axis=1) / tf_.maximum(tf_.reduce_sum(mask, axis=1), 1.0)
