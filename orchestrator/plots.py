"""Figures, one import: explanation overlays (``figures.overlays``), leaderboard figures
(``figures.results``: robust curves, Pareto front, faithfulness, drawn from the tables
of ``figures.tables``) and LGR before/after explanations of a run directory
(``figures.runs``). ``limelight plot`` draws them.

``orchestrator.figures.results`` and ``.tables`` import no torch: a report that only
reads the leaderboard can import from there.
"""

from __future__ import annotations

from orchestrator.figures.overlays import (
    explanation_figure,
    flags_figure,
    refinement_figure,
    saliency_figure,
    save_explanation_pngs,
)
from orchestrator.figures.results import (
    LEADERBOARD_KINDS,
    PARETO_METRICS,
    curves_figure,
    faithfulness_figure,
    figure_plan,
    pareto_figure,
    save_figure,
    save_figures,
)
from orchestrator.figures.runs import (
    LgrRun,
    Refinement,
    explain_refinement,
    read_lgr_run,
    refinement_plot,
)
from orchestrator.figures.tables import (
    DEFAULT_GROUP,
    curve_table,
    faithfulness_table,
    ok_rows,
    pareto_front,
    pareto_points,
)

__all__ = [
    "DEFAULT_GROUP",
    "LEADERBOARD_KINDS",
    "PARETO_METRICS",
    "LgrRun",
    "Refinement",
    "curve_table",
    "curves_figure",
    "explain_refinement",
    "explanation_figure",
    "faithfulness_figure",
    "faithfulness_table",
    "figure_plan",
    "flags_figure",
    "ok_rows",
    "pareto_figure",
    "pareto_front",
    "pareto_points",
    "read_lgr_run",
    "refinement_figure",
    "refinement_plot",
    "saliency_figure",
    "save_explanation_pngs",
    "save_figure",
    "save_figures",
]
