"""The ``pmp`` command line: a thin layer over the stage functions, one sub-command per stage.

Every command that reads the lake takes ``--data DIR`` (default: ``PM_DATA_DIR`` or ``./data`` in the project).
Exit codes: 0 success, 1 a data-quality gate or a stage failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pipelines.config import Settings, load_settings


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def _cmd_synth(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.synth import SynthConfig, generate_bank, summary_lines

    out = Path(args.out or args.data or settings.data_dir)
    config = SynthConfig(
        customers=args.customers,
        months=args.months,
        seed=settings.seed if args.seed is None else args.seed,
        start=args.start,
        dirty=args.dirty,
        workers=args.workers,
    )
    manifest = generate_bank(config, out, progress=print)
    for line in summary_lines(manifest):
        print(f"  {line}")
    print(f"lake: {out / 'lake'}   truth: {out / 'truth'}   next: pmp validate --data {out}")
    return 0


def _cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines import io
    from pipelines.runs import make_run_id, run_dir
    from pipelines.validate import validate_lake

    settings = settings.with_data_dir(args.data)
    as_of = args.as_of or io.lake_end(settings.lake_dir)
    run_id = make_run_id("validate", as_of)
    report_dir = run_dir(settings.runs_dir, run_id) / "validation"
    result = validate_lake(
        settings.lake_dir, as_of, settings.expectations_dir, report_dir=report_dir, progress=print
    )
    print(result.summary())
    print(f"report: {report_dir / 'validation.md'}")
    return 0 if result.success else 1


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.train import TrainConfig, train_churn, train_table

    if (args.model is None) == (args.table is None):
        raise ValueError("give either a model name (pmp train churn) or --table FILE --label COL")
    if args.model == "churn":
        from pipelines.labels import LabelDefinition

        settings = settings.with_data_dir(args.data)
        print(f"tracking: {settings.mlflow_tracking_uri}")
        result = train_churn(
            settings.data_dir,
            tracking_uri=settings.mlflow_tracking_uri,
            as_of=args.as_of,
            definition=LabelDefinition(args.definition, args.horizon),
            config=TrainConfig(model_name="churn", calibration=args.calibration, seed=settings.seed),
            progress=print,
        )
        print(result.summary())
        print(f"mlflow run id: {result.run_id}   champion: models:/churn@champion")
        return 0
    if args.label is None:
        raise ValueError("--table needs --label COL")

    exclude = [c.strip() for c in (args.exclude or "").split(",") if c.strip()]
    config = TrainConfig(calibration=args.calibration)
    print(f"tracking: {settings.mlflow_tracking_uri}")
    result = train_table(
        args.table,
        args.label,
        positive=args.positive,
        id_col=args.id,
        exclude=exclude,
        name=args.name,
        seed=settings.seed if args.seed is None else args.seed,
        test_size=args.test_size,
        ordered=args.ordered,
        tracking_uri=settings.mlflow_tracking_uri,
        config=config,
        progress=print,
    )
    print(result.summary())
    print(f"mlflow run id: {result.run_id}")
    print(
        f"model: models:/{result.model_name}/{result.version}   champion: models:/{result.model_name}@champion"
    )
    return 0


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmp", description="Precision-marketing ML platform.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="generate a synthetic credit-card bank (lake + ground truth)")
    synth.add_argument(
        "--customers", type=_positive, default=20_000, help="number of customers (default 20000)"
    )
    synth.add_argument("--months", type=_positive, default=12, help="months of history (default 12)")
    synth.add_argument("--seed", type=int, default=None, help="random seed (default PM_SEED or 42)")
    synth.add_argument("--start", default="2025-01", help="first month of data, YYYY-MM (default 2025-01)")
    synth.add_argument(
        "--out", default=None, help="data folder to write lake/ and truth/ into (default --data)"
    )
    synth.add_argument("--dirty", action="store_true", help="inject realistic faults to exercise the gates")
    synth.add_argument(
        "--workers", type=int, default=0, help="worker processes (default: one per core, max 2)"
    )
    synth.set_defaults(func=_cmd_synth)

    validate = sub.add_parser("validate", help="run the data-quality gates on the lake")
    validate.add_argument(
        "--as-of", type=_as_of, default=None, help="run date (default: the day after the data)"
    )
    validate.set_defaults(func=_cmd_validate)

    train = sub.add_parser(
        "train", help="train, register and maybe promote a model on a customer table (CSV or Parquet)"
    )
    train.add_argument(
        "model", nargs="?", choices=("churn",), help="train a platform model on the lake (--data, --as-of)"
    )
    train.add_argument("--table", default=None, help="CSV (any of , ; tab |, may be gzipped) or Parquet file")
    train.add_argument("--label", default=None, help="the target column (two classes), with --table")
    train.add_argument("--as-of", type=_as_of, default=None, help="with churn: run date (default: lake end)")
    train.add_argument("--horizon", type=int, choices=(90, 150), default=90, help="with churn: label horizon")
    train.add_argument(
        "--definition",
        choices=("closure", "inactivity", "balance_outflow"),
        default="closure",
        help="churn label",
    )
    train.add_argument("--positive", default=None, help="the label value of the positive class (e.g. yes)")
    train.add_argument("--id", default=None, help="identifier column, never used as a feature")
    train.add_argument("--exclude", default=None, help="comma-separated columns to leave out (e.g. leaks)")
    train.add_argument("--name", default=None, help="registered model name (default: the file's stem)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default PM_SEED or 42)")
    train.add_argument(
        "--test-size", type=_fraction, default=0.3, help="share of rows held out for test (default 0.3)"
    )
    train.add_argument(
        "--ordered", action="store_true", help="split by row order (test = last rows) instead of stratified"
    )
    train.add_argument(
        "--calibration", choices=("isotonic", "platt"), default="isotonic", help="default isotonic"
    )
    train.set_defaults(func=_cmd_train)

    for command in (synth, validate, train):
        command.add_argument("--data", default=None, help="data folder (default PM_DATA_DIR or ./data)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    try:
        return args.func(args, settings)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"pmp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"pmp {args.command}: failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
