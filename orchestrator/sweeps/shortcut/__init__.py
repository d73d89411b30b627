"""The shortcut benchmark (``limelight shortcut``): how much each method relies on a
planted feature that codes the label in training: digits_shortcut's patch (its
position codes the class; the default) or mnist5k_decoy's swatch (Decoy MNIST: its
shade does; ``--dataset``).

Per seed it trains ERM, PGD-AT (``adversarial``), SGT, ASGT, LGR once per flagging
strategy (``annotated`` is the oracle: the true patch masks), RRR (the input-gradient
penalty on the data set's annotation masks) and a control (ERM with the feature coding
a random class, ``train_share`` 0.1), every one through ``run()`` inline, and scores
each on the test split, where ~90% of the features code a wrong class:

- ``shortcut_follow_rate``: on those images, the share of predictions equal to the
  patch's class (``methods.shortcut.follow_rate``);
- ``shortcut_acc``: accuracy on the whole test split; the control's is the accuracy a
  model reaches without a shortcut to learn, so the gap to it is what the shortcut cost;
- LGR: ``flag_precision`` / ``flag_recall`` of its final round's flagged pixels against
  the true patch masks (``dataset.train.masks``), over the images it explained.

Every model is one leaderboard row (``sweep=<name>``, trial ``<model>-seed<seed>``),
written as soon as it finishes; a rerun skips the rows already there, so an interrupted
benchmark resumes. The control is a row with method ``erm`` whose config holds
``"control": true`` (and ``"train_share": 0.1``); every row's config holds its
``train_share`` and, for LGR, ``"strategy"``.

LGR refines the same seed's ERM model (``start_checkpoint``): that is the ERM pretrain
LGR would otherwise run itself, with the same settings, so the strategies share it and
its first round's LIME explanations (the mask store is keyed by checkpoint).

The package: ``plan`` (``ShortcutRequest``, the flags; ``ShortcutPlan``; the models),
``benchmark`` (training, scoring, the rows, resuming) and ``summary`` (the table).
"""

from __future__ import annotations

from orchestrator.sweeps.shortcut.benchmark import ShortcutReport, finished_trials, run_shortcut
from orchestrator.sweeps.shortcut.plan import (
    CONTROL_SHARE,
    DATASET,
    MODELS,
    SHORTCUT_DATASETS,
    UNION,
    PlannedModel,
    ShortcutPlan,
    ShortcutRequest,
    plan_models,
)
from orchestrator.sweeps.shortcut.summary import format_summary, summarize

__all__ = [
    "CONTROL_SHARE",
    "DATASET",
    "MODELS",
    "SHORTCUT_DATASETS",
    "UNION",
    "PlannedModel",
    "ShortcutPlan",
    "ShortcutReport",
    "ShortcutRequest",
    "finished_trials",
    "format_summary",
    "plan_models",
    "run_shortcut",
    "summarize",
]
