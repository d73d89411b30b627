"""The quick evaluation the run-path tests share: PGD-2 and the fast ensemble at one
eps on 40 test images, without the audit's probes or the masked-accuracy curves. The
same settings as an EvalConfig (for in-process runs) and as CLI flags (for `limelight
train` and `ray job submit`); test_run checks that the two agree."""

from __future__ import annotations

from orchestrator.config import EvalConfig

QUICK_EVAL = EvalConfig(
    eps=(0.1,),
    attacks=("pgd",),
    pgd_steps=2,
    limit=40,
    eval_mode="fast",
    audit_probes=False,
    faithfulness=False,
)
QUICK_FLAGS = [
    "--eps", "0.1", "--attacks", "pgd", "--pgd-steps", "2", "--limit", "40",
    "--eval-mode", "fast", "--no-audit-probes", "--no-faithfulness",
]  # fmt: skip
