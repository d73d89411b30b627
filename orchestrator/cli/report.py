"""``limelight report``: run what the reproduction report lacks, then write it
(``orchestrator.sweeps.report``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from methods.options import option, validate
from orchestrator.config import RunSettings
from orchestrator.flags import add_fields, from_flags, given
from orchestrator.sweeps.report import REPORT_SPECS

__all__ = ["DESCRIPTION", "ReportRequest", "add_arguments", "run"]

DESCRIPTION = (
    "Run the report's sweeps (search_spaces/report-*.yaml: every method, three seeds, a "
    "grid) and the shortcut benchmark (digits_shortcut, mnist5k_decoy), each only as far "
    "as its leaderboard rows are missing, commit each section's rows beside the report "
    "(docs/results/rows/), then write the report and its figures from them. An "
    "interrupted generation resumes where "
    "it stopped; --section regenerates one section and leaves the others' rows alone."
)


@dataclass(frozen=True)
class ReportRequest:
    """What ``limelight report`` does and which report sweeps it covers."""

    spec: tuple[Path, ...] | None = option(
        None,
        help=f"a report sweep spec; repeat for several (default: {', '.join(REPORT_SPECS)})",
        repeat=True,
    )
    out: Path = option(Path("docs/results.md"), help="the report")
    run: bool = option(
        True,
        help="run the sweeps and benchmark rows that are missing; --no-run only renders "
        "from the rows already on the leaderboard",
    )
    shortcut: bool = option(
        True, help="run the shortcut benchmark too; --no-shortcut leaves it out"
    )
    section: tuple[str, ...] | None = option(
        None,
        help="regenerate only this section (digits, mnist5k: a report sweep's data set; "
        "shortcut, mnist5k_decoy: the shortcut benchmark's); repeat for several. The "
        "others render from their rows committed under OUT's folder (docs/results/rows/). "
        "Default: every section",
        repeat=True,
        metavar="NAME",
    )

    def __post_init__(self) -> None:
        if self.spec is not None:
            object.__setattr__(self, "spec", tuple(Path(p) for p in self.spec))
        validate(self)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_fields(parser, ReportRequest)
    add_fields(parser, RunSettings, include=("storage", "data_dir"))


def run(args: argparse.Namespace) -> int:
    from orchestrator.storage import local_root
    from orchestrator.sweeps.report import generate_report, print_line

    request = from_flags(args, ReportRequest)
    # --out is the report's, not RunSettings' run directory.
    settings = RunSettings(**given(args, RunSettings, exclude=("out",)))
    root = str(local_root(settings.storage, "the report's sweeps write run directories").resolve())
    specs = [str(path) for path in (request.spec or [_repo_file(p) for p in REPORT_SPECS])]
    out = generate_report(
        specs,
        storage=root,
        out=request.out,
        run=request.run,
        shortcut=request.shortcut,
        sections=request.section,
        data_dir=settings.data_dir,
        progress=print_line,
    )
    print(f"wrote {out}")
    return 0


def _repo_file(relative: str) -> Path:
    """``relative`` from the working directory, else from the repository root."""
    here = Path(relative)
    return here if here.is_file() else Path(__file__).resolve().parents[2] / relative
