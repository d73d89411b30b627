"""The command line: ``limelight <verb>`` (also ``python -m orchestrator``).

Exit codes: 0 done; 2 bad input, reported as one line naming the field or path and
what is allowed, before any work starts; 1 a run that failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from methods.attacks import ATTACKS
from methods.data import DATASETS, DataNotFoundError, load_dataset
from methods.evaluate import EvalResult
from methods.lime import SEGMENTATIONS, LimeSettings
from methods.loop import NonFiniteLossError, resolve_device
from methods.models import MODELS, build_model
from methods.training import METHODS
from orchestrator.checkpoints import CheckpointError, check_fits, read_checkpoint, restore_model
from orchestrator.config import (
    OPTIMIZERS,
    SCHEDULES,
    SPURIOUS,
    TRAINING_ATTACKS,
    ConfigError,
    EvalConfig,
    TrainConfig,
)
from orchestrator.lgr import check_start_checkpoint, run_lgr
from orchestrator.store import MaskStore
from orchestrator.train import (
    check_resumable,
    default_out_dir,
    evaluate_split,
    run_training,
    write_json,
)

__all__ = ["main"]

log = logging.getLogger("limelight")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage block: the message already names the flag and the choices.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


# ----------------------------------------------------------------------------- parsing


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        message = f"expected numbers separated by commas, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.replace(",", " ").split() if v)


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default="data",
        metavar="DIR",
        help="where mnist/cifar10/cifar100/cifar10c live (default: ./data)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download mnist/cifar10/cifar100 into --data-dir if missing",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")


def _add_eval_flags(parser: argparse.ArgumentParser, eps_help: str) -> None:
    parser.add_argument("--eps", type=_float_list, default=None, metavar="E[,E...]", help=eps_help)
    parser.add_argument(
        "--attacks",
        type=_name_list,
        default=("fgsm", "pgd"),
        metavar="A[,A...]",
        help=f"attacks to run at each eps; valid: {', '.join(ATTACKS)} (default: fgsm,pgd)",
    )
    parser.add_argument("--pgd-steps", type=int, default=20, help="PGD steps (default: 20)")
    parser.add_argument("--pgd-restarts", type=int, default=1, help="PGD restarts (default: 1)")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on the first N test images only",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="limelight",
        description="Interpretability-guided adversarial robustness experiments.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    train = verbs.add_parser(
        "train",
        help="train one model, then evaluate it",
        description="Train one model with a method, checkpoint every epoch (an existing "
        "checkpoint in --out resumes), then evaluate clean, FGSM and PGD accuracy "
        "on the test split. TensorBoard logs go to OUT/tensorboard.",
    )
    train.add_argument(
        "--method", default="erm", choices=list(METHODS), help="training method (default: erm)"
    )
    train.add_argument(
        "--dataset",
        default="digits",
        choices=list(DATASETS),
        help="data set (default: digits, embedded)",
    )
    train.add_argument(
        "--model",
        default=None,
        choices=list(MODELS),
        help="model (default: small_cnn for digits, sgt_mnist_cnn for mnist, resnet18 for cifar)",
    )
    train.add_argument("--epochs", type=int, default=30, help="epochs (default: 30)")
    train.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    train.add_argument(
        "--optimizer",
        default="sgd",
        choices=OPTIMIZERS,
        help="sgd (Nesterov, momentum 0.9) or adam (AdamW) (default: sgd)",
    )
    train.add_argument("--lr", type=float, default=0.05, help="peak learning rate (default: 0.05)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="(default: 5e-4)")
    train.add_argument(
        "--schedule",
        default="cosine",
        choices=SCHEDULES,
        help="learning-rate schedule, stepped per batch (default: cosine)",
    )
    train.add_argument(
        "--attack-eps",
        type=float,
        default=None,
        help="L-inf eps of the training attack on the [0,1] scale (default: "
        "0.1 digits, 0.3 mnist, 8/255 cifar); also the monitored PGD eps",
    )
    train.add_argument(
        "--training-attack",
        default="pgd",
        choices=TRAINING_ATTACKS,
        help="adversarial method's attack: pgd or fgsm_rs (fast AT) (default: pgd)",
    )
    train.add_argument(
        "--attack-steps",
        type=int,
        default=10,
        help="PGD steps of the training attack (default: 10)",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument(
        "--mask-ratio",
        type=float,
        default=None,
        help="sgt/asgt: fraction of pixels masked (default 0.5); lgr: fraction "
        "of superpixels flagged per image (default 0.2); in (0, 1)",
    )
    train.add_argument(
        "--reg-weight",
        type=float,
        default=None,
        help="sgt/asgt: weight of the KL term; lgr: of the gradient penalty (default: 1.0)",
    )
    lgr = train.add_argument_group("LIME-guided refinement (--method lgr)")
    lgr.add_argument(
        "--rounds", type=int, default=2, help="explain-flag-refine rounds (default: 2)"
    )
    lgr.add_argument(
        "--spurious",
        default="low_relevance",
        choices=SPURIOUS,
        help="which superpixels to flag: low_relevance (bottom-k LIME weights), "
        "high_relevance (top-k), annotated (the data set's ground-truth "
        "masks; digits_shortcut) (default: low_relevance)",
    )
    lgr.add_argument(
        "--explain-fraction",
        type=float,
        default=1.0,
        help="share of the training set explained each round (default: 1.0)",
    )
    lgr.add_argument(
        "--lime-samples",
        type=int,
        default=1000,
        help="LIME samples per explanation (default: 1000)",
    )
    lgr.add_argument(
        "--start-checkpoint",
        default=None,
        metavar="C",
        help="model to refine (default: pretrain with ERM for --pretrain-epochs)",
    )
    lgr.add_argument(
        "--pretrain-epochs",
        type=int,
        default=None,
        help="ERM epochs before the first round (default: --epochs)",
    )
    lgr.add_argument("--actors", type=int, default=2, help="LIME actors (default: 2)")
    ray_group = train.add_argument_group("Ray (distributed training and LIME)")
    ray_group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Ray Train workers (DDP); 1 trains inline without Ray (default: 1)",
    )
    ray_group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0,
        help="GPU share per Train worker; > 0 also uses Ray Train (default: 0)",
    )
    ray_group.add_argument(
        "--storage",
        default=None,
        help="root for Ray Train runs (default: OUT/ray) and the LIME mask store "
        "(default: ./results); a path or a pyarrow URI such as s3://bucket/path",
    )
    ray_group.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="run directory (default: results/train/DATASET-METHOD-seedSEED)",
    )
    _add_data_flags(train)
    _add_eval_flags(train, "evaluation eps grid (default: the data set's grid plus --attack-eps)")
    train.set_defaults(handler=_train)

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
    _add_data_flags(evaluate)
    _add_eval_flags(evaluate, "eps grid (default: the data set's grid)")
    evaluate.set_defaults(handler=_evaluate)

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
    explain.add_argument("--actors", type=int, default=2, help="Ray actors (default: 2)")
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
        "--address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)",
    )
    explain.add_argument(
        "--storage",
        default="results",
        help="results root, a path or pyarrow URI such as s3://b/p (default: ./results)",
    )
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
    _add_data_flags(explain)
    explain.set_defaults(handler=_explain)
    return parser


# ----------------------------------------------------------------------------- verbs


def _eval_config(args: argparse.Namespace) -> EvalConfig:
    return EvalConfig(
        eps=args.eps,
        attacks=args.attacks,
        pgd_steps=args.pgd_steps,
        pgd_restarts=args.pgd_restarts,
        limit=args.limit,
        seed=args.seed,
    )


def _check_device(name: str) -> None:
    try:
        resolve_device(name)
    except (ValueError, RuntimeError) as error:
        raise UsageError(f"--device: {str(error).splitlines()[0]}") from error


def _load_data(name: str, args: argparse.Namespace, seed: int = 0):
    try:
        return load_dataset(name, data_dir=args.data_dir, download=args.download, seed=seed)
    except DataNotFoundError as error:
        raise UsageError(str(error)) from error


def _train(args: argparse.Namespace) -> int:
    config = TrainConfig(
        method=args.method,
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        attack_eps=args.attack_eps,
        training_attack=args.training_attack,
        attack_steps=args.attack_steps,
        seed=args.seed,
        mask_ratio=args.mask_ratio,
        reg_weight=args.reg_weight,
        rounds=args.rounds,
        spurious=args.spurious,
        explain_fraction=args.explain_fraction,
        lime_samples=args.lime_samples,
        start_checkpoint=args.start_checkpoint,
        pretrain_epochs=args.pretrain_epochs,
    )
    eval_config = _eval_config(args)
    _check_device(args.device)
    out_dir = args.out or default_out_dir(config)
    check_resumable(out_dir, config)
    _check_scaling_flags(args, config)
    if config.method == "lgr":
        check_start_checkpoint(config)
    dataset = _load_data(config.dataset, args, seed=config.seed)
    _check_model_fits(config.model_name, dataset)
    if config.method == "lgr":
        outcome = _run_lgr(config, dataset, out_dir, eval_config, args)
    else:
        outcome = run_training(
            config,
            dataset,
            out_dir=out_dir,
            device=args.device,
            eval_config=eval_config,
            workers=args.workers,
            gpus_per_worker=args.gpus_per_worker,
            storage=args.storage,
            address=args.address,
            data_dir=args.data_dir,
            download=args.download,
        )
    final = outcome.history[-1]
    print(
        f"\n{outcome.config.method} on {dataset.name} ({outcome.config.model_name}), "
        f"{final.epoch} epochs, seed {outcome.config.seed}, train eps "
        f"{outcome.config.attack_eps:g}, {outcome.wall_s:.1f}s"
    )
    print(format_results([(outcome.config.method, outcome.evaluation)]))
    print(f"checkpoint: {outcome.checkpoint}\ntensorboard --logdir {out_dir / 'tensorboard'}")
    return EXIT_OK


def _check_model_fits(name: str, dataset) -> None:
    try:
        build_model(name, dataset.input_shape, dataset.num_classes, dataset.mean, dataset.std)
    except ValueError as error:
        raise ConfigError(
            "model", f"{error} ({dataset.name} is {'x'.join(map(str, dataset.input_shape))})"
        ) from error


def _check_scaling_flags(args: argparse.Namespace, config: TrainConfig) -> None:
    if args.workers < 1:
        raise ConfigError("workers", f"must be >= 1, got {args.workers}")
    if args.gpus_per_worker < 0:
        raise ConfigError("gpus_per_worker", f"must be >= 0, got {args.gpus_per_worker:g}")
    if config.batch_size % args.workers:
        raise ConfigError(
            "batch_size",
            f"{config.batch_size} must be a multiple of --workers ({args.workers}): "
            "each worker takes an equal shard of every batch",
        )
    if args.actors < 1:
        raise ConfigError("actors", f"must be >= 1, got {args.actors}")


def _run_lgr(config, dataset, out_dir, eval_config, args):
    if config.spurious != "annotated":  # only LIME needs Ray
        from orchestrator.explain import connect

        connect(args.address)
    return run_lgr(
        config,
        dataset,
        out_dir=out_dir,
        device=args.device,
        eval_config=eval_config,
        storage=args.storage or "results",
        actors=args.actors,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        data_dir=args.data_dir,
    )


def _evaluate(args: argparse.Namespace) -> int:
    eval_config = _eval_config(args)
    _check_device(args.device)
    states = []
    for path in args.checkpoint:  # read all first: a bad path fails before any attack runs
        try:
            states.append(read_checkpoint(path))
        except CheckpointError as error:
            raise UsageError(f"--checkpoint: {error}") from error
    results: list[tuple[str, EvalResult]] = []
    datasets: dict[str, object] = {}
    for path, state in zip(args.checkpoint, states, strict=False):
        name = args.dataset or state["meta"]["dataset"]
        if name not in datasets:
            datasets[name] = _load_data(name, args)
        dataset = datasets[name]
        try:
            check_fits(state["meta"], dataset)
            model = restore_model(state)
        except CheckpointError as error:
            raise UsageError(f"--checkpoint: {path}: {error}") from error
        train_eps = state["meta"]["config"].get("attack_eps")
        result = evaluate_split(model, dataset, eval_config, train_eps, args.device)
        write_json(
            path.with_name(path.stem + ".eval.json"),
            {"checkpoint": str(path), "dataset": dataset.name, **result.to_dict()},
        )
        results.append((path.parent.name or str(path), result))
    print(format_results(results))
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    from orchestrator.explain import connect, explain_split

    settings = _lime_settings(args)
    _check_explain_flags(args)
    try:
        state = read_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UsageError(f"--checkpoint: {error}") from error
    dataset = _load_data(args.dataset or state["meta"]["dataset"], args)
    try:
        check_fits(state["meta"], dataset)
    except CheckpointError as error:
        raise UsageError(f"--checkpoint: {args.checkpoint}: {error}") from error
    connect(args.address)
    report = explain_split(
        str(args.checkpoint),
        dataset,
        split=args.split,
        settings=settings,
        limit=args.limit,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
        chunk=args.chunk,
        storage=args.storage,
    )
    print(
        f"explained {report.computed} images ({report.reused} already in the store) "
        f"in {report.seconds:.1f}s, {report.images_per_s:.1f} images/s; "
        f"mean surrogate R^2 {report.mean_score:.3f}"
    )
    print(f"mask store: {report.store}")
    if args.png is not None:
        written = _write_overlays(args, dataset, MaskStore(args.storage, report.key))
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
    if args.actors < 1:
        raise ConfigError("actors", f"must be >= 1, got {args.actors}")
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
    lines.append(
        f"(n = {', '.join(map(str, sorted(n)))} test images; "
        "worst = survives every attack at that eps)"
    )
    for label, result in results:
        for flag in result.audit_flags:
            lines.append(f"audit warning [{label}]: {flag}")
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
        print(f"{prog}: error: {_flag(error.field)}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as error:
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
