"""The command line: ``limelight <verb>`` (also ``python -m orchestrator``).

Argparse, dispatch and printing only: flags come from the config dataclasses
(``orchestrator.flags``), runs from ``orchestrator.run``. Exit codes: 0 done; 2 bad
input, reported as one line naming the field or path and what is allowed, before
any work starts; 1 a run that failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from methods.audit import audit_note
from methods.data import DATASETS, DataNotFoundError, load_dataset
from methods.evaluate import EVAL_MODES, EvalResult
from methods.lime import SEGMENTATIONS, LimeSettings
from methods.loop import NonFiniteLossError, resolve_device
from methods.training import METHODS
from orchestrator.checkpoints import CheckpointError, check_fits, read_checkpoint, restore_model
from orchestrator.config import (
    ConfigError,
    EvalConfig,
    RunSettings,
    TrainConfig,
    option_fields,
)
from orchestrator.corrupt import add_corrupt_parser
from orchestrator.flags import add_fields, add_method_options, flag_name, given
from orchestrator.leaderboard import add_leaderboard_arguments, leaderboard_command
from orchestrator.plot_cli import add_plot_parser
from orchestrator.report import add_report_parser, print_line
from orchestrator.shortcut import add_shortcut_parser
from orchestrator.store import MaskStore
from orchestrator.train import evaluate_split, lime_settings, write_json

SMOKE_LIMIT = 64  # orchestrator.sweep.SMOKE_LIMIT, not imported: that module imports Ray

__all__ = ["build_parser", "main"]

log = logging.getLogger("limelight")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage block: the message already names the flag and the choices.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")


def _add_train(verbs: argparse._SubParsersAction) -> None:
    train = verbs.add_parser(
        "train",
        help="train one model, then evaluate it",
        description="Train one model with a method, checkpoint every epoch (the same "
        "command again resumes; more --epochs extends), then evaluate clean, FGSM and "
        "PGD accuracy on the test split. Everything goes under the results root: "
        "STORAGE/OUT holds checkpoint.pt, config.json, eval.json and tensorboard/. "
        "An option the chosen --method does not use is an error.",
    )
    add_fields(train, TrainConfig)
    method_options = train.add_argument_group("method options (each names the methods that use it)")
    add_method_options(
        method_options,
        option_fields(),
        {name: typing.get_type_hints(cls.Options) for name, cls in METHODS.items()},
    )
    add_fields(train.add_argument_group("where it runs (results root, Ray, data)"), RunSettings)
    add_fields(train.add_argument_group("final evaluation (its seed is --seed)"), EvalConfig)
    _add_verbose(train)
    train.set_defaults(handler=_train)


def _add_evaluate(verbs: argparse._SubParsersAction) -> None:
    evaluate = verbs.add_parser(
        "evaluate",
        help="attack trained checkpoints and print their accuracy",
        description="Evaluate one or more checkpoints: clean accuracy, FGSM and PGD accuracy "
        "over an eps grid ('worst' = survives every attack), and per-corruption "
        "accuracy on cifar10c. Writes CHECKPOINT_STEM.eval.json beside each.",
    )
    evaluate.add_argument(
        "--checkpoint",
        type=Path,
        nargs="+",
        required=True,
        metavar="C",
        help="checkpoint file(s) written by limelight train",
    )
    evaluate.add_argument(
        "--dataset",
        default=None,
        choices=list(DATASETS),
        help="data set (default: the one each checkpoint was trained on)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of PGD's random start")
    add_fields(evaluate, EvalConfig)
    add_fields(evaluate, RunSettings, include=("device", "data_dir", "download"))
    _add_verbose(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _add_explain(verbs: argparse._SubParsersAction) -> None:
    explain = verbs.add_parser(
        "explain",
        help="explain a split with LIME over Ray actors into the mask store",
        description="Explain images of a split for their true labels with batched LIME, "
        "spread over Ray actors. Results go to the mask store "
        "STORAGE/explanations/<key>/ (Parquet), keyed by data set, split, "
        "checkpoint and LIME settings: a second request reads the store, and an "
        "interrupted run continues where it stopped.",
    )
    explain.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="C",
        help="checkpoint file written by limelight train",
    )
    explain.add_argument(
        "--dataset",
        default=None,
        choices=list(DATASETS),
        help="data set (default: the checkpoint's)",
    )
    explain.add_argument(
        "--split", default="train", choices=("train", "test"), help="(default: train)"
    )
    explain.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="explain the first N images only (default: all)",
    )
    explain.add_argument(
        "--num-samples",
        type=int,
        default=1000,
        help="perturbed images per explanation (default: 1000)",
    )
    explain.add_argument(
        "--segmentation",
        default="auto",
        choices=SEGMENTATIONS,
        help="superpixels: slic (32x32 and up), grid (smaller), quickshift; "
        "auto picks by image size (default: auto)",
    )
    explain.add_argument(
        "--n-segments", type=int, default=50, help="target segment count for slic (default: 50)"
    )
    explain.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1,
        help="CPUs per actor, also its torch threads (default: 1)",
    )
    explain.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0,
        help="GPU share per actor; 0.25 packs four on a GPU (default: 0)",
    )
    explain.add_argument("--chunk", type=int, default=8, help="images per actor call (default: 8)")
    explain.add_argument(
        "--png",
        type=Path,
        default=None,
        metavar="DIR",
        help="write overlays (image, segments, weights) of the first images",
    )
    explain.add_argument(
        "--png-count", type=int, default=8, help="how many overlays --png writes (default: 8)"
    )
    explain.add_argument("--seed", type=int, default=0, help="seed of the LIME masks")
    add_fields(explain, RunSettings, exclude=("out", "workers", "gpus_per_worker"))
    _add_verbose(explain)
    explain.set_defaults(handler=_explain)


#: The spec `limelight sweep` runs when given none.
DEFAULT_SPEC = Path("search_spaces") / "demo.yaml"


def _add_sweep(verbs: argparse._SubParsersAction) -> None:
    sweep = verbs.add_parser(
        "sweep",
        help="search a spec's space with Ray Tune + Optuna; one leaderboard row per trial",
        description="Run a sweep: Optuna samples configurations from the spec's search "
        "space, each runs once per seed as a Tune trial (the same run as limelight train), "
        "selected on a validation split, and leaves one row in the leaderboard "
        "(STORAGE/leaderboard). The Tune experiment and every trial's run directory go to "
        "STORAGE/NAME; watch them with tensorboard --logdir STORAGE/NAME.",
    )
    sweep.add_argument(
        "spec",
        nargs="?",
        type=Path,
        default=None,
        help=f"spec file (default: {DEFAULT_SPEC})",
    )
    sweep.add_argument(
        "--trials", type=int, default=None, help="sampled configurations (default: the spec's)"
    )
    sweep.add_argument(
        "--max-concurrent", type=int, default=None, help="trials at once (default: the spec's)"
    )
    add_fields(sweep, RunSettings, include=("storage", "address", "data_dir"))
    sweep.add_argument(
        "--best",
        metavar="SWEEP",
        default=None,
        help="instead of running: re-evaluate the top trials of SWEEP (ranked on the "
        "validation split) with the full evaluation, and print each one's limelight train "
        "command",
    )
    sweep.add_argument("--top", type=int, default=3, help="trials --best re-evaluates (default: 3)")
    sweep.add_argument(
        "--eval-mode",
        choices=EVAL_MODES,
        default="standard",
        help="the ensemble --best re-evaluates with (default: standard)",
    )
    sweep.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted sweep of the same name (Tuner.restore)",
    )
    sweep.add_argument(
        "--smoke",
        action="store_true",
        help=f"one epoch a trial and {SMOKE_LIMIT} evaluation images: checks a "
        "spec end to end in about a minute",
    )
    _add_verbose(sweep)
    sweep.set_defaults(handler=_sweep)


def _add_leaderboard(verbs: argparse._SubParsersAction) -> None:
    board = verbs.add_parser(
        "leaderboard",
        help="query the Parquet leaderboard of a results root",
        description="Print the leaderboard (one row per finished trial; accuracies on the "
        "test split). Rows marked ! carry audit warnings.",
    )
    add_leaderboard_arguments(board)
    _add_verbose(board)
    board.set_defaults(handler=_leaderboard)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="limelight",
        description="Interpretability-guided adversarial robustness experiments.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)
    _add_train(verbs)
    _add_evaluate(verbs)
    _add_explain(verbs)
    _add_sweep(verbs)
    _add_leaderboard(verbs)
    add_plot_parser(verbs)
    add_shortcut_parser(verbs)
    add_report_parser(verbs)
    add_corrupt_parser(verbs)
    return parser


# ----------------------------------------------------------------------------- verbs


def _configs(args: argparse.Namespace) -> tuple[TrainConfig, RunSettings, EvalConfig]:
    """The flags the user gave, as the three frozen configs (``ConfigError`` on bad input)."""
    names = set(option_fields())
    options = {k: v for k, v in vars(args).items() if k in names}
    config = TrainConfig.from_dict({**given(args, TrainConfig), **options})
    settings = RunSettings(**given(args, RunSettings))
    eval_config = EvalConfig(**given(args, EvalConfig, exclude=("seed",)), seed=config.seed)
    return config, settings, eval_config


def _train(args: argparse.Namespace) -> int:
    from orchestrator.run import run

    config, settings, eval_config = _configs(args)
    result = run(config, settings, eval_config=eval_config)
    resolved = result.config
    train_eps = "" if resolved.attack_eps is None else f", train eps {resolved.attack_eps:g}"
    print(
        f"\n{resolved.method} on {resolved.dataset} ({resolved.model_name}), "
        f"{result.history[-1].epoch} epochs, seed {resolved.seed}{train_eps}, "
        f"{result.wall_s:.1f}s"
    )
    print(format_results([(resolved.method, result.evaluation)]))
    print(f"checkpoint: {result.checkpoint}\ntensorboard --logdir {result.logdir}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    eval_config = EvalConfig(**given(args, EvalConfig, exclude=("seed",)), seed=args.seed)
    settings = RunSettings(**given(args, RunSettings))
    _check_device(settings.device)
    states = []
    for path in args.checkpoint:  # read all first: a bad path fails before any attack runs
        try:
            states.append(read_checkpoint(path))
        except CheckpointError as error:
            raise UsageError(f"--checkpoint: {error}") from error
    results: list[tuple[str, EvalResult]] = []
    datasets: dict[str, object] = {}
    for path, state in zip(args.checkpoint, states, strict=True):
        name = args.dataset or state["meta"]["dataset"]
        if name not in datasets:
            datasets[name] = _load_data(name, settings)
        dataset = datasets[name]
        try:
            check_fits(state["meta"], dataset)
            model = restore_model(state)
        except CheckpointError as error:
            raise UsageError(f"--checkpoint: {path}: {error}") from error
        recorded = state["meta"]["config"]
        train_eps = recorded.get("attack_eps") or recorded.get("monitor_eps")
        result = evaluate_split(
            model, dataset, eval_config, train_eps, settings.device, lime=lime_settings(recorded)
        )
        write_json(
            path.with_name(path.stem + ".eval.json"),
            {"checkpoint": str(path), "dataset": dataset.name, **result.to_dict()},
        )
        results.append((path.parent.name or str(path), result))
    print(format_results(results))
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from orchestrator.spec import load_spec
    from orchestrator.sweep import run_sweep

    if args.best is not None:
        return _best(args)
    spec = load_spec(args.spec or _default_spec())
    for field in ("trials", "max_concurrent"):
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                raise ConfigError(field, f"must be >= 1, got {value}")
            spec = dataclasses.replace(spec, **{field: value})
    settings = RunSettings(**given(args, RunSettings))
    report = run_sweep(
        spec,
        storage=settings.storage,
        address=settings.address,
        resume=args.resume,
        smoke=args.smoke,
        data_dir=settings.data_dir,
        progress=print_line,
    )
    print(
        f"\nsweep {report.name}: {report.trials} trials ({report.ok} ok, {report.stopped} "
        f"stopped, {report.errors} failed) in {report.wall_s:.0f}s"
    )
    if report.pareto:
        print(f"Pareto front on the validation split: {', '.join(report.pareto)}")
    board = argparse.Namespace(
        storage=report.root, sweep=report.name, where=None, sort="robust_acc", ascending=False,
        top=None, columns=None, group_by=None, format="table",
    )  # fmt: skip
    print(leaderboard_command(board))
    print(f"tensorboard --logdir {report.experiment}")
    return EXIT_FAILED if report.errors and not report.ok else EXIT_OK


def _best(args: argparse.Namespace) -> int:
    from orchestrator.sweep import best_trials, train_command

    if args.top < 1:
        raise ConfigError("top", f"must be >= 1, got {args.top}")
    settings = RunSettings(**given(args, RunSettings))
    trials = best_trials(settings.storage, args.best, args.top)
    if not trials:
        print(f"no finished trials of sweep {args.best!r} under {settings.storage}")
        return EXIT_OK
    results: list[tuple[str, EvalResult]] = []
    for rank, trial in enumerate(trials, start=1):
        print(f"#{rank} {trial.trial_id} (validation objective {trial.objective:.4f}):")
        print(f"  {train_command(trial.config)}")
        if trial.checkpoint is None or not trial.checkpoint.is_file():
            print("  (its checkpoint was pruned: keep_checkpoints in the spec keeps more)")
            continue
        state = read_checkpoint(trial.checkpoint)
        dataset = _load_data(state["meta"]["dataset"], settings)
        recorded = state["meta"]["config"]
        train_eps = recorded.get("attack_eps") or recorded.get("monitor_eps")
        evaluation = evaluate_split(
            restore_model(state),
            dataset,
            EvalConfig(seed=recorded["seed"], eval_mode=args.eval_mode),
            train_eps,
            "auto",
            lime=lime_settings(recorded),
        )
        results.append((trial.trial_id, evaluation))
    if results:
        print("\nfull evaluation on the test split:")
        print(format_results(results))
    return EXIT_OK


def _default_spec() -> Path:
    if DEFAULT_SPEC.is_file():
        return DEFAULT_SPEC
    return Path(__file__).resolve().parents[1] / DEFAULT_SPEC  # run from elsewhere


def _leaderboard(args: argparse.Namespace) -> int:
    try:
        print(leaderboard_command(args))
    except ValueError as error:
        # The module names the argument ("top: ..."); the CLI names the flag, as elsewhere.
        field, _, message = str(error).splitlines()[0].partition(": ")
        raise UsageError(f"{flag_name(field)}: {message}" if message else field) from error
    return EXIT_OK


def _check_device(name: str) -> None:
    try:
        resolve_device(name)
    except (ValueError, RuntimeError) as error:
        raise ConfigError("device", str(error).splitlines()[0]) from error


def _load_data(name: str, settings: RunSettings):
    return load_dataset(name, data_dir=settings.data_dir, download=settings.download)


def _explain(args: argparse.Namespace) -> int:
    from orchestrator.explain import connect, explain_split

    lime = _lime_settings(args)
    settings = RunSettings(**given(args, RunSettings))
    _check_explain_flags(args)
    try:
        state = read_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UsageError(f"--checkpoint: {error}") from error
    dataset = _load_data(args.dataset or state["meta"]["dataset"], settings)
    try:
        check_fits(state["meta"], dataset)
    except CheckpointError as error:
        raise UsageError(f"--checkpoint: {args.checkpoint}: {error}") from error
    connect(settings.address)
    report = explain_split(
        str(args.checkpoint),
        dataset,
        split=args.split,
        settings=lime,
        limit=args.limit,
        actors=settings.actors,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
        chunk=args.chunk,
        storage=settings.storage,
    )
    print(
        f"explained {report.computed} images ({report.reused} already in the store) "
        f"in {report.seconds:.1f}s, {report.images_per_s:.1f} images/s; "
        f"mean surrogate R^2 {report.mean_score:.3f}"
    )
    print(f"mask store: {report.store}")
    if args.png is not None:
        written = _write_overlays(args, dataset, MaskStore(settings.storage, report.key))
        print(
            f"overlays: {len(written)} PNG files in {args.png}; "
            f"tensorboard --logdir {Path(report.store) / '_tensorboard'}"
        )
    return EXIT_OK


def _lime_settings(args: argparse.Namespace) -> LimeSettings:
    for field in ("num_samples", "n_segments"):
        if getattr(args, field) < 2:
            raise ConfigError(field, f"must be >= 2, got {getattr(args, field)}")
    return LimeSettings(
        num_samples=args.num_samples,
        segmentation=args.segmentation,
        n_segments=args.n_segments,
        seed=args.seed,
    )


def _check_explain_flags(args: argparse.Namespace) -> None:
    if args.cpus_per_actor <= 0:
        raise ConfigError("cpus_per_actor", f"must be > 0, got {args.cpus_per_actor:g}")
    if args.gpus_per_actor < 0:
        raise ConfigError("gpus_per_actor", f"must be >= 0, got {args.gpus_per_actor:g}")
    if args.chunk < 1:
        raise ConfigError("chunk", f"must be >= 1, got {args.chunk}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("limit", f"must be >= 1, got {args.limit}")
    if args.png_count < 0:
        raise ConfigError("png_count", f"must be >= 0, got {args.png_count}")


def _write_overlays(args: argparse.Namespace, dataset, store: MaskStore) -> list[Path]:
    from torch.utils.tensorboard import SummaryWriter

    from orchestrator.plots import save_explanation_pngs

    explanations = store.explanations()
    split = dataset.train if args.split == "train" else dataset.test
    first = sorted(explanations)[: args.png_count]
    images = {i: split.tensors(slice(i, i + 1))[0][0].numpy() for i in first}
    with SummaryWriter(str(Path(store.path) / "_tensorboard")) as writer:
        return save_explanation_pngs(images, explanations, args.png, writer=writer)


# ----------------------------------------------------------------------------- output


def format_results(results: Sequence[tuple[str, EvalResult]]) -> str:
    """A table with one column per model and one row per metric (accuracy in %)."""
    rows: dict[str, list[str]] = {"clean": []}
    for _, result in results:
        rows["clean"].append(f"{100 * result.clean_acc:.1f}")
    for column, (_, result) in enumerate(results):
        for point in result.robust_curve:
            key = f"{point.attack} eps={point.eps:.4g}"
            rows.setdefault(key, ["-"] * len(results))[column] = f"{100 * point.acc:.1f}"
        if result.faithfulness is not None:
            curve = result.faithfulness
            key = "masked-acc AUC (random)"
            rows.setdefault(key, ["-"] * len(results))[column] = (
                f"{100 * curve.auc:.1f} ({100 * curve.random_auc:.1f})"
            )
        if result.corruption_acc is not None:
            key = "corruptions (mean)"
            rows.setdefault(key, ["-"] * len(results))[column] = (
                f"{100 * result.corruption_acc:.1f}"
            )
    headers = ["accuracy %"] + [label for label, _ in results]
    table = [headers] + [[key, *values] for key, values in rows.items()]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=False))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n = {result.n_eval for _, result in results}
    ensembles = sorted({r.eval_mode for _, r in results} - {"pgd"})  # pgd: no ensemble
    ensemble = f"autoattack = the {'/'.join(ensembles)} ensemble; " if ensembles else ""
    lines.append(
        f"(n = {', '.join(map(str, sorted(n)))} test images; {ensemble}worst = survives "
        "every attack at that eps, the audit's included: the headline)"
    )
    for label, result in results:
        for flag in result.audit_flags:
            note = audit_note((flag,), result.audit_measures)
            lines.append(f"audit warning [{label}]: {note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def _setup_logging(verbose: bool) -> None:
    # On a terminal the progress bar shows progress; elsewhere (ray job logs, CI) the
    # per-epoch log lines do.
    quiet = sys.stderr.isatty() and not verbose
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    prog = f"limelight {args.verb}"
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"{prog}: error: {flag_name(error.field)}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, DataNotFoundError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NonFiniteLossError as error:
        print(f"{prog}: failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as error:  # a run that failed (a Ray Train job, a torch error)
        log.debug("run failed", exc_info=True)
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"{prog}: failed: {first} (run with -v for the traceback)", file=sys.stderr)
        if getattr(args, "verbose", False):
            raise
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
