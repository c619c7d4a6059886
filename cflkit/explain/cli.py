"""``cflkit explain RUN_DIR``: the explanation report of a finished run (all four layers of
:mod:`cflkit.explain`). Imports nothing heavy at module level."""
from __future__ import annotations

import sys

HELP = "explain a finished run's clusters: why clients were grouped, how the cluster models differ (report)"


def add_arguments(p):
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `cflkit run` (with models.npz)")
    from ..cli import count

    p.add_argument("--out", default=None, help="directory for the report (default: RUN_DIR/explain); an earlier "
                                               "report there is replaced, anything else is refused")
    p.add_argument("--force", action="store_true", help="replace an earlier report at --out even if it holds files "
                                                        "the report did not write (they are kept)")
    p.add_argument("--probes", type=count(0), default=20,
                   help="probe inputs LIME sends through every cluster model (layer b; 0 skips it; default: 20)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of every explainer (default: 0)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def main(args) -> int:
    from .report import explain_run

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    q = explain_run(args.run_dir, args.out, probes=args.probes, seed=args.seed, progress=progress, force=args.force)
    m = q["membership"]
    verdict = ("explained" if m["explained"] else "not explained by these descriptors" if m["testable"]
               else f"not testable with {q['clients']} clients ({m['n_separating']} descriptors separate the clusters)")
    print(f"membership {verdict}: fidelity {m['fidelity']:.2f} vs shuffled {m['baseline_fidelity']:.2f} "
          f"± {m['baseline_std']:.2f} (p = {m['p_value']:.3f})"
          + (f"; top group: {m['top_group']} ({m['top_group_share']:.0%})" if m["explained"] else ""))
    for factor, s in q.get("agreement", {}).items():
        print(f"agreement with {factor}: ARI {s['ari']:.2f}, AMI {s['ami']:.2f}, V-measure {s['v_measure']:.2f}")
    for layer, why in q["skipped"].items():
        print(f"skipped {layer}: {why}")
    print(f"wrote {q['out']}/ (report.md, report.html, quality.json, figures/, tables/) in {q['seconds']:.1f} s")
    return 0
