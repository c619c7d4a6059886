"""The explanation report of a finished run (``cflkit explain RUN_DIR``): all four layers,
their figures (pdf + png), tables (csv), quality numbers (``quality.json``), and a summary
as ``report.md`` and a self-contained ``report.html`` (figures embedded as PNG). Everything
is written into a temporary sibling directory that is renamed into place: a crash leaves
the old report or the new one, never a mix."""
from __future__ import annotations

import base64
import html
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.results import atomic_directory, json_safe

log = logging.getLogger("cflkit.explain")

LIME_CLIENT = 0  # the client whose membership LIME explains in the report
SEPARATING_SHOWN = 8  # separating descriptors listed when membership cannot be tested


def load_explainable_run(run_dir):
    """``(result, federation)`` of a run directory, with clear errors for a directory that
    is not a run and for a run written before runs kept their models."""
    result = _load_result(run_dir)
    return result, _rebuild_federation(result, run_dir)


def _load_result(run_dir):
    from ..core.results import MODELS_FILE, load_run

    path = Path(run_dir)
    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a run directory: no such directory")
    result = load_run(path)  # ValueError naming the missing files
    if result.state is None:
        again = path.with_name(path.name + "-again")
        raise ValueError(f"run {str(path)!r} has no {MODELS_FILE} (written by runs before the cluster models were "
                         f"saved); re-run it into a new directory and explain that one: cflkit run --config "
                         f"{path / 'config.json'} --out {again} && cflkit explain {again}")
    return result


def _rebuild_federation(result, run_dir):
    from ..core.experiment import federation_from

    path = Path(run_dir)
    fed = federation_from(result.config)
    if len(result.state.assignment) != fed.n_clients:
        raise ValueError(f"run {str(path)!r}: {len(result.state.assignment)} assignments for {fed.n_clients} clients; "
                         f"its federation cannot be rebuilt from config.json")
    return fed


def explain_run(run_dir, out=None, *, probes: int = 20, seed: int = 0, progress: bool = False,
                force: bool = False) -> dict:
    """Explain run ``run_dir`` into ``out`` (default ``run_dir/explain``); returns the
    quality numbers (what ``quality.json`` holds) with ``"out"``, the directory written.

    ``out`` may be new, empty or an earlier report; anything else is refused before any
    work (:mod:`cflkit.core.outputs`; ``force`` keeps entries a report did not write)."""
    from ..core.outputs import check_output

    _check_explain_args(probes, seed)
    start = time.perf_counter()
    out = Path(out) if out is not None else Path(run_dir) / "explain"
    result = _load_result(run_dir)  # a run that cannot be read is named first
    check_output(out, "explain", force=force, option="--out")
    fed = _rebuild_federation(result, run_dir)
    assignment = np.asarray(result.state.assignment).astype(int)
    quality = _run_facts(run_dir, result, fed, assignment, seed)
    used = quality["clusters_used"]
    report = _Layer(quality=quality, skipped=quality["skipped"])  # every step's additions, in report order
    report.extend(_introduction(run_dir, result, fed, used))
    report.extend(_membership_layer(result, fed, assignment, used, seed))
    report.extend(_contrast_layer(result, fed, used, probes, seed, progress))
    report.extend(_divergence_layer(result, fed, assignment))
    report.extend(_agreement_layer(fed, assignment))
    report.extend(_stability_layer(result))
    report.extend(_quality_section(quality))
    quality["seconds"] = round(time.perf_counter() - start, 2)
    quality["out"] = str(out)
    _write(out, report.doc, report.tables, report.figures, quality, force)
    return quality


# -- the report's steps: each returns what it adds (a _Layer) ---------------------------------
def _check_explain_args(probes, seed):
    """Refuse a ``probes`` or ``seed`` that is not an integer >= 0, before any work."""
    for name, value in (("probes", probes), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0{' (0 skips layer (b))' if name == 'probes' else ''}, "
                             f"got {value!r}")


def _run_facts(run_dir, result, fed, assignment, seed) -> dict:
    """The quality numbers' head: the run, its method, data and clusters; ``skipped`` gathers skipped layers."""
    config = result.config
    return {"run": str(run_dir), "method": config.method, "dataset": config.dataset, "scenario": config.scenario,
            "clients": fed.n_clients, "clusters": result.state.n_clusters,
            "clusters_used": int(len(np.unique(assignment))), "seed": seed, "skipped": {}}


def _introduction(run_dir, result, fed, used) -> _Layer:
    """The report's title and a sentence on the run it explains."""
    layer = _Layer()
    layer.doc.h1(f"Explaining the clusters of {result.config.method}")
    layer.doc.p(f"Run `{run_dir}`: {fed.description}. The method ended with {result.state.n_clusters} cluster "
                f"model(s); {used} cluster(s) hold clients.")
    return layer


def _membership_layer(result, fed, assignment, used, seed) -> _Layer:
    """Layer (a): why client i is in cluster k, from the clients' data descriptors and with the protocol's added."""
    from . import figures_membership as figs
    from .descriptors import client_descriptors
    from .membership import DATA_GROUPS, explain_descriptors

    log.info("explain: layer (a) membership")
    table, groups = client_descriptors(fed, models=result.state.models, assignment=assignment, config=result.config,
                                       seed=seed)
    data_cols = [c for c in table.columns if groups[c] in DATA_GROUPS]
    m = explain_descriptors(table[data_cols], {c: groups[c] for c in data_cols}, assignment, seed=seed)
    m_all = explain_descriptors(table, groups, assignment, seed=seed)
    layer = _Layer(quality={"membership": m.summary(), "membership_with_updates": m_all.summary()})
    layer.tables.update({f"membership_{name}": t for name, t in m.tables().items() if len(t.columns)})
    layer.tables["membership_with_updates_group_importance"] = m_all.group_importance
    layer.tables["membership_with_updates_rules"] = m_all.tables()["rules"]
    layer.tables["membership_descriptors"] = m_all.tables()["descriptors"]
    layer.tables["membership_descriptor_groups"] = m_all.tables()["descriptor_groups"]
    layer.doc.h2("(a) Why is client i in cluster k?")
    groups_used = ", ".join(f"{g} ({t})" for g, t in zip(m.group_importance["group"], m.group_importance["tier"]))
    layer.doc.p(f"Data descriptors: {m.descriptors.shape[1]} per client in the groups {groups_used} "
                f"(T1: summaries a client may agree to send). A depth-3 surrogate tree predicts each client's "
                f"cluster from them; its out-of-fold accuracy (fidelity) is compared with the same for shuffled "
                f"clusters (explained = clearly above it: above mean + 2 std of the shuffled runs, by at least 0.1, "
                f"permutation p <= 0.05).")
    layer.extend(_membership_verdict(m, fed, assignment, used, seed))
    layer.doc.table(m.group_importance, "Permutation importance per data descriptor group (out of fold)")
    layer.figures["group_importance"] = figs.group_importance(m)
    if used >= 2:
        layer.doc.p(_membership_with_updates(m_all))
    return layer


def _membership_verdict(m, fed, assignment, used, seed) -> _Layer:
    """Layer (a)'s verdict on the data descriptors: one cluster, untestable, not explained, or explained."""
    if used < 2:
        verdict = _Layer()
        verdict.doc.p("**One cluster holds every client: there is no membership to explain.**")
        return verdict
    if not m.testable:
        return _membership_untestable(m, fed, assignment)
    if not m.explained:
        verdict = _Layer()
        verdict.doc.p(f"**Membership not explained by these descriptors**: {_numbers(m)}. No rule is shown, since "
                      f"a tree no better than chance would only describe noise.")
        return verdict
    return _membership_explained(m, assignment, seed)


def _membership_untestable(m, fed, assignment) -> _Layer:
    """Too few clients for a permutation test: the membership is described (separating descriptors, IMM tree)."""
    from . import figures_membership as figs
    from .membership import n_relabelings

    verdict = _Layer()
    verdict.doc.p(f"**Too few clients to test whether these descriptors explain membership** "
                  f"({fed.n_clients} clients: a shuffle of the assignment gives only {n_relabelings(assignment)} "
                  f"distinct relabelings, so no permutation test can reach p <= 0.05; {_numbers(m)}). The "
                  f"membership is described, not shown to be explained: in sample, {len(m.separating)} of "
                  f"{m.descriptors.shape[1]} descriptors separate the clusters without overlap; the largest effects "
                  f"(difference of cluster means in within-client standard deviations; mean per cluster):")
    verdict.doc.items([f"{r.descriptor} ({r.group}): effect {r.effect:.2f}, margin {r.margin:.2f}; {r.cluster_means}"
                       for r in m.separating.head(SEPARATING_SHOWN).itertuples()])
    verdict.doc.p(f"Threshold tree (IMM, {len(m.threshold_tree_rules)} leaves, in sample, descriptive):")
    verdict.doc.items(m.threshold_tree_rules)
    verdict.figures["threshold_tree"] = figs.threshold_tree(m.threshold_tree)
    return verdict


def _membership_explained(m, assignment, seed) -> _Layer:
    """Membership explained: the groups that carry it, the IMM and surrogate trees, LIME for one client."""
    from . import figures_membership as figs
    from .membership import explain_client

    verdict = _Layer()
    top = m.group_importance[m.group_importance["share"] > 0]
    named = ", ".join(f"{g} ({s:.0%})" for g, s in zip(top["group"], top["share"]))
    verdict.doc.p(f"**Membership explained**: {_numbers(m)}. Descriptor groups that carry it (share of out-of-fold "
                  f"permutation importance): {named}.")
    verdict.doc.p(f"Threshold tree (IMM, {len(m.threshold_tree_rules)} leaves, one per cluster; it puts "
                  f"{m.threshold_tree_fidelity:.0%} of the clients in their own cluster):")
    verdict.doc.items(m.threshold_tree_rules)
    verdict.doc.p(f"Surrogate tree ({len(m.tree_rules)} rules; clients and purity per leaf, in sample):")
    verdict.doc.items(m.tree_rules)
    weights = explain_client(m, LIME_CLIENT, seed=seed)
    verdict.tables["membership_lime_client"] = _frame({"condition": [w[0] for w in weights],
                                                       "weight": [w[1] for w in weights]})
    verdict.doc.p(f"LIME on the surrogate for client {LIME_CLIENT} (cluster {assignment[LIME_CLIENT]}), "
                  f"strongest conditions first:")
    verdict.doc.items([f"{c}: {w:+.3f}" for c, w in weights])
    verdict.figures["threshold_tree"] = figs.threshold_tree(m.threshold_tree)
    return verdict


def _membership_with_updates(m_all) -> str:
    """The sentence on membership once the protocol descriptors (updates, similarities) are added."""
    top_all = m_all.group_importance[m_all.group_importance["share"] > 0]
    named = ", ".join(f"{g} ({s:.0%})" for g, s in zip(top_all["group"], top_all["share"])) or "none"
    verdict = (f"explained, {_numbers(m_all)}; importance shares: {named}" if m_all.explained else
               f"not explained, {_numbers(m_all)}" if m_all.testable else
               f"too few clients to test, {_numbers(m_all)}")
    return (f"With the protocol descriptors added (update norm and global-model loss, T1; per-layer cosine "
            f"of each client's update to every cluster's mean update, T0): {verdict}. The similarity group "
            f"measures the clustering's own criterion for update-based methods, "
            f"so it tells *how* the server could see the clusters rather than *why* the clients differ.")


def _contrast_layer(result, fed, used, probes, seed, progress) -> _Layer:
    """Layer (b): LIME through every cluster model on the same probes; skipped for one cluster or ``probes`` 0."""
    layer = _Layer()
    layer.doc.h2("(b) How do the cluster models differ?")
    if used < 2:
        layer.skipped["contrast"] = "one cluster: nothing to contrast"
    elif probes == 0:
        layer.skipped["contrast"] = "--probes 0"
    else:
        from .contrast import explain_contrast

        log.info("explain: layer (b) contrast, %d probes", probes)
        contrast = explain_contrast(result.state.models, fed, result.config, probes=probes, seed=seed,
                                    progress=progress)
        numbers = layer.quality["contrast"] = json_safe(contrast.summary())
        layer.tables.update({f"contrast_{name}": t for name, t in contrast.tables().items()})
        layer.doc.table(_frame({"quality number": list(numbers), "value": [str(_fmt(v)) for v in numbers.values()]}),
                        f"LIME through every cluster model on {probes} probes")
        layer.doc.table(_matrix(contrast.agreement), "Prediction agreement between cluster models (share of probes)")
        layer.doc.table(_matrix(contrast.rank_correlation), "Spearman correlation of the clusters' LIME importance")
        layer.figures.update(_contrast_figures(contrast))
    if "contrast" in layer.skipped:
        layer.doc.p(f"Skipped: {layer.skipped['contrast']}.")
    return layer


def _divergence_layer(result, fed, assignment) -> _Layer:
    """Layer (c): cosine distance and L2 between the cluster models per layer, and to the global model."""
    from . import figures_contrast as fc
    from .divergence import cluster_sizes, layer_divergence, model_layer_names

    state = result.state
    div = layer_divergence(state.models, sizes=cluster_sizes(assignment, fed.sizes, state.n_clusters),
                           layer_names=model_layer_names(result.config, fed))
    layer = _Layer(tables={"divergence": div}, quality={"divergence": _divergence_summary(div)})
    layer.doc.h2("(c) Parameter divergence")
    layer.doc.table(_divergence_digest(div), "Cosine distance and L2 per layer, mean over cluster pairs ('between') "
                                             "and over clusters against the size-weighted global model "
                                             "('to global'); every pair in tables/divergence.csv")
    layer.figures["divergence"] = fc.divergence_heatmap(div)
    return layer


def _agreement_layer(fed, assignment) -> _Layer:
    """Layer (d): agreement of the final assignment with each planted factor, and a contingency table per factor."""
    from . import figures_membership as figs
    from .agreement import agreement_with_planted, contingency_table, planted_factors

    layer = _Layer()
    layer.doc.h2("(d) Agreement with the planted heterogeneity")
    factors = planted_factors(fed)
    if not factors:
        layer.skipped["agreement"] = "the federation has no planted factor or grouping site attribute"
        layer.doc.p("Skipped: the federation has no planted factor (nor a site attribute that groups the clients).")
        return layer
    agree = agreement_with_planted(assignment, fed)
    layer.tables["agreement"] = agree
    layer.quality["agreement"] = {row["factor"]: {c: float(row[c]) for c in ("ari", "ami", "homogeneity",
                                                                              "completeness", "v_measure")}
                                  for _, row in agree.iterrows()}
    layer.doc.table(agree, "Agreement of the final assignment with each factor")
    for name, values in factors.items():
        ct = contingency_table(assignment, values)
        slug = _slug(name)
        layer.tables[f"contingency_{slug}"] = ct.reset_index()
        layer.figures[f"contingency_{slug}"] = figs.contingency_heatmap(ct, factor=name)
    return layer


def _stability_layer(result) -> _Layer:
    """The end of layer (d): how stable the assignment was over the rounds (ARI of consecutive rounds)."""
    from . import figures_membership as figs
    from .agreement import assignment_stability

    layer = _Layer()
    stability = assignment_stability(result.history)
    if not len(stability):
        return layer
    layer.tables["stability"] = stability
    last = stability.iloc[-1]
    layer.quality["stability"] = {"ari_last_rounds": float(last["ari"]), "ari_mean": float(stability["ari"].mean()),
                                  "stable_round": int(result.summary.get("stable_round", -1))}
    layer.doc.p(f"Assignment stability: ARI {last['ari']:.2f} between the last two rounds, mean "
                f"{stability['ari'].mean():.2f} over consecutive rounds; the partition is final from round "
                f"{layer.quality['stability']['stable_round']}.")
    layer.figures["stability"] = figs.stability_over_rounds(stability)
    return layer


def _quality_section(quality) -> _Layer:
    """The closing table: every layer's quality numbers, flattened to one per row."""
    layer = _Layer()
    layer.doc.h2("Quality numbers")
    flat = _flatten({k: v for k, v in quality.items() if k in ("membership", "membership_with_updates", "contrast",
                                                               "divergence", "agreement", "stability")})
    layer.doc.table(_frame({"number": list(flat), "value": [str(_fmt(v)) for v in flat.values()]}), None)
    return layer


# -- writing ------------------------------------------------------------------------------
def _write(out: Path, doc, tables: dict, figures: dict, quality: dict, force: bool = False):
    """Everything into a temporary sibling of ``out``, then renamed into place."""
    import matplotlib.pyplot as plt

    from ..plots import save

    with atomic_directory(out, "explain", force=force) as tmp:
        for name, t in tables.items():
            (tmp / "tables").mkdir(exist_ok=True)
            t.to_csv(tmp / "tables" / f"{name}.csv", index=False)
        pngs = {}
        for name, fig in figures.items():
            save(fig, tmp / "figures" / name)
            pngs[name] = tmp / "figures" / f"{name}.png"
            plt.close(fig)
        doc.figures = {name: f"figures/{name}.png" for name in figures}
        (tmp / "quality.json").write_text(json.dumps(json_safe(quality), indent=2, sort_keys=True) + "\n")
        (tmp / "report.md").write_text(doc.markdown())
        (tmp / "report.html").write_text(doc.html({name: p.read_bytes() for name, p in pngs.items()}))


class _Doc:
    """A tiny document model rendered twice: markdown and self-contained HTML."""

    def __init__(self):
        self.blocks = []
        self.figures = {}

    def h1(self, text):
        self.blocks.append(("h1", text))

    def h2(self, text):
        self.blocks.append(("h2", text))

    def p(self, text):
        self.blocks.append(("p", text))

    def items(self, lines):
        self.blocks.append(("ul", list(lines)))

    def table(self, frame, caption):
        self.blocks.append(("table", (frame, caption)))

    def markdown(self) -> str:
        out = []
        for kind, x in self.blocks:
            if kind == "h1":
                out.append(f"# {x}\n")
            elif kind == "h2":
                out.append(f"## {x}\n")
            elif kind == "p":
                out.append(f"{x}\n")
            elif kind == "ul":
                out.append("\n".join(f"- `{line}`" for line in x) + "\n")
            else:
                frame, caption = x
                out.append((f"*{caption}*\n\n" if caption else "") + _md_table(frame) + "\n")
        out.append("## Figures\n")
        out += [f"![{name}]({path})\n" for name, path in self.figures.items()]
        return "\n".join(out)

    def html(self, pngs: dict) -> str:
        body = []
        for kind, x in self.blocks:
            if kind in ("h1", "h2", "p"):
                tag = kind
                body.append(f"<{tag}>{_inline(x)}</{tag}>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li><code>{html.escape(line)}</code></li>" for line in x) + "</ul>")
            else:
                frame, caption = x
                cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
                body.append(f"<table>{cap}" + _html_rows(frame) + "</table>")
        body.append("<h2>Figures</h2>")
        for name, data in pngs.items():
            b64 = base64.b64encode(data).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
                        f"<figcaption>{html.escape(name)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
                 "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
                 "font-size:90%}caption{font-style:italic;text-align:left}img{max-width:100%}")
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>cflkit explain</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


@dataclass
class _Layer:
    """What one step of the report adds: document blocks, tables, figures, quality numbers, skip reasons."""

    doc: _Doc = field(default_factory=_Doc)
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    def extend(self, other: _Layer) -> None:
        """Append ``other``'s additions after this one's (dict order is file and table order)."""
        self.doc.blocks += other.doc.blocks
        self.tables.update(other.tables)
        self.figures.update(other.figures)
        self.quality.update(other.quality)
        self.skipped.update(other.skipped)


def _numbers(m) -> str:
    return (f"fidelity {m.fidelity:.2f} vs {m.baseline_fidelity:.2f} ± {m.baseline_std:.2f} for shuffled clusters "
            f"(chance {m.chance:.2f}, permutation p = {m.p_value:.3f})")


def _inline(text: str) -> str:
    """Markdown's **bold**, *emphasis* and `code` as HTML, the rest escaped."""
    import re

    parts = re.split(r"`(.+?)`", text)  # odd parts are code: no emphasis inside
    out = []
    for i, part in enumerate(parts):
        s = html.escape(part)
        if i % 2:
            out.append(f"<code>{s}</code>")
            continue
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        out.append(re.sub(r"\*(\S[^*]*?\S|\S)\*", r"<em>\1</em>", s))
    return "".join(out)


def _md_table(frame) -> str:
    cols = [str(c) for c in frame.columns]
    rows = [[str(_fmt(v)) for v in r] for r in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html_rows(frame) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns) + "</tr>"
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(_fmt(v)))}</td>" for v in r) + "</tr>"
                   for r in frame.itertuples(index=False))
    return head + rows


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3g}"
    return v


def _frame(d):
    import pandas as pd

    return pd.DataFrame(d)


def _matrix(a):
    import pandas as pd

    a = np.asarray(a)
    return pd.DataFrame(a, columns=[f"cluster {j}" for j in range(a.shape[1])]).rename_axis("cluster").reset_index()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif np.isscalar(v) or v is None:
            out[key] = v
    return out


def _divergence_summary(div) -> dict:
    """Whole-model (layer "all") cosine distance and L2, mean between clusters and to the global model."""
    whole = div[div["layer"] == "all"] if (div["layer"] == "all").any() else div
    to_global = whole["pair"].astype(str).str.endswith("global")
    out = {}
    for name, rows in (("between_clusters", whole[~to_global]), ("to_global", whole[to_global])):
        if len(rows):
            out[f"cosine_{name}"] = float(rows["cosine_distance"].mean())
            out[f"l2_{name}"] = float(rows["l2"].mean())
    return out


def _divergence_digest(div):
    """Per layer: mean cosine distance and L2 between clusters and to the global model."""
    import pandas as pd

    to_global = div["pair"].astype(str).str.endswith("global")
    rows = []
    for layer in dict.fromkeys(div["layer"]):
        here = div["layer"] == layer
        row = {"layer": layer}
        for name, mask in (("between", here & ~to_global), ("to global", here & to_global)):
            row[f"cosine {name}"] = float(div.loc[mask, "cosine_distance"].mean()) if mask.any() else float("nan")
            row[f"L2 {name}"] = float(div.loc[mask, "l2"].mean()) if mask.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _contrast_figures(contrast) -> dict:
    """Layer (b)'s figures (the contrast engineer's :mod:`.figures_contrast`)."""
    from . import figures_contrast as fc

    return {"contrast_importance": fc.importance_maps(contrast),
            "contrast_rank_correlation": fc.rank_correlation_heatmap(contrast),
            "contrast_agreement": fc.agreement_heatmap(contrast),
            "contrast_faithfulness": fc.faithfulness_curves(contrast)}


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
