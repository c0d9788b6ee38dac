"""Create the W&B report "LTE vs LIIF vs Meta-SR vs LMF on <encoder>" from the project's test runs.

    python scripts/wandb_report.py --encoder rdn --testsets set5 set14 b100 urban100 div2k
    python scripts/wandb_report.py --encoder edsr_baseline --project lte --entity my-team

The report is one panel grid over the project's ``lte.test`` runs of that encoder plus the bicubic
row (a run-set filter on the ``encoder`` config that ``lte.test`` logs: ``'<encoder>'`` or
``'none'``), with one line plot per test set and metric: ``test/<set>/psnr`` (and ``ssim``) against
``scale``, the step metric the test runs declare, grouped by the ``method`` config so several
checkpoints of one method are averaged.

Online (``WANDB_API_KEY`` set and ``wandb-workspaces`` installed: ``pip install wandb-workspaces``)
it saves the report and prints its URL. Otherwise, or with ``--spec-only``, it writes the same
report as a JSON spec (``--spec``, default ``wandb_report_spec.json``) and says so: the spec lists
the filter, the panels and the grouping, which is also what to click in the UI by hand
(``docs/wandb.md``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

from lte.errors import UserError, exit_on_user_error

#: The methods the report compares, as ``lte.test`` names them (``model`` config): LMF's LM-LTE and
#: LM-LIIF with and without multi-scale rendering (``eval.cmsr``) beside the papers' methods.
METHODS = ("lte", "liif", "metasr", "lm_lte", "lm_lte+cmsr", "lm_liif", "lm_liif+cmsr", "bicubic")


def report_spec(
    encoder: str, testsets: list[str], *, project: str, entity: str | None
) -> dict[str, Any]:
    """The report as plain data: title, run-set filter, grouping and one panel per set and metric."""
    return {
        "title": f"LTE vs LIIF vs Meta-SR vs LMF on {encoder}",
        "description": (
            f"PSNR and SSIM against scale of the lte.test runs of {encoder} (LTE, LIIF, Meta-SR, "
            "LM-LTE, LM-LIIF) and the bicubic row, as logged by lte.test (scale is the step metric)."
        ),
        "project": project,
        "entity": entity,
        "runset": {
            "name": f"lte.test runs: {encoder} and bicubic",
            "filters": f"Config('encoder') in ['{encoder}', 'none']",
            "groupby": "method",
        },
        "panels": [
            {
                "type": "LinePlot",
                "title": f"{metric.upper()} against scale: {testset}",
                "x": "scale",
                "y": [f"test/{testset}/{metric}"],
                "groupby": "method",
            }
            for testset in testsets
            for metric in ("psnr", "ssim")
        ],
        "methods": list(METHODS),
    }


def create_report(spec: dict[str, Any]) -> str:
    """Save ``spec`` as a W&B report with ``wandb_workspaces``; returns its URL."""
    import wandb_workspaces.reports.v2 as wr

    def accepted(cls: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = inspect.signature(cls).parameters
        return {k: v for k, v in kwargs.items() if k in params and v is not None}

    where = {"entity": spec["entity"], "project": spec["project"]}
    runset = wr.Runset(
        **accepted(wr.Runset, {**where, "name": spec["runset"]["name"]}),
        filters=spec["runset"]["filters"],
    )
    panels = [
        wr.LinePlot(**accepted(wr.LinePlot, {k: v for k, v in p.items() if k != "type"}))
        for p in spec["panels"]
    ]
    report = wr.Report(
        **accepted(
            wr.Report, {**where, "title": spec["title"], "description": spec["description"]}
        ),
        blocks=[
            wr.H1(text=spec["title"]),
            wr.P(text=spec["description"]),
            wr.PanelGrid(runsets=[runset], panels=panels),
        ],
    )
    report.save()
    return str(report.url)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", required=True, help="encoder label, e.g. rdn, edsr_baseline")
    parser.add_argument(
        "--testsets", nargs="+", default=["set5", "set14", "b100", "urban100", "div2k"]
    )
    parser.add_argument("--project", default="lte", help="W&B project (default lte)")
    parser.add_argument("--entity", default=None, help="W&B entity (default: yours)")
    parser.add_argument("--spec", default="wandb_report_spec.json", help="where the spec goes")
    parser.add_argument("--spec-only", action="store_true", help="write the spec, never go online")
    args = parser.parse_args(argv)
    spec = report_spec(args.encoder, args.testsets, project=args.project, entity=args.entity)
    online = bool(os.environ.get("WANDB_API_KEY")) and not args.spec_only
    if online:
        try:
            url = create_report(spec)
        except ImportError:
            raise UserError(
                "creating a report needs wandb-workspaces: pip install wandb-workspaces "
                "(or pass --spec-only to write the spec)"
            ) from None
        print(f"report: {url}")
        return
    path = Path(args.spec)
    if path.is_dir():
        raise UserError(f"--spec {path} is a folder: name a .json file")
    path.write_text(json.dumps(spec, indent=2) + "\n")
    why = "--spec-only" if args.spec_only else "offline: WANDB_API_KEY is not set"
    print(f"{why}; wrote the report spec to {path} (no report was created)")


if __name__ == "__main__":
    sys.exit(main())
