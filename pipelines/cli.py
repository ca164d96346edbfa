"""The ``pmp`` command line: a thin layer over the stage functions, one sub-command per stage.

Every command that reads the lake takes ``--data DIR`` (default: ``PM_DATA_DIR`` or ``./data`` in the project).
Exit codes: 0 success, 1 a data-quality gate or a stage failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, date
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
    from pipelines.synthetic.bank import SynthConfig, generate_bank, summary_lines

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
    from pipelines.data import storage
    from pipelines.data.gates import validate_lake
    from pipelines.runs import make_run_id, run_dir

    settings = settings.with_data_dir(args.data)
    as_of = args.as_of or storage.lake_end(settings.lake_dir)
    run_id = make_run_id("validate", as_of)
    report_dir = run_dir(settings.runs_dir, run_id) / "validation"
    result = validate_lake(
        settings.lake_dir, as_of, settings.expectations_dir, report_dir=report_dir, progress=print
    )
    print(result.summary())
    print(f"report: {report_dir / 'validation.md'}")
    return 0 if result.success else 1


def _cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.jobs.training import train_churn
    from pipelines.models.propensity import TrainConfig, train_table

    if args.model == "uplift":
        return _train_uplift(args, settings)
    if args.model is None and args.outcome is not None:
        raise ValueError("--outcome is for uplift models: pmp train uplift --table FILE --treatment COL ...")
    if (args.model is None) == (args.table is None):
        raise ValueError("give either a model name (pmp train churn) or --table FILE --label COL")
    if args.model == "value":
        from pipelines import jobs

        settings = settings.with_data_dir(args.data)
        print(f"tracking: {settings.mlflow_tracking_uri}")
        jobs.value_train(settings, args.as_of, progress=print)
        print("champion: models:/value@champion")
        return 0
    if args.model == "churn":
        from pipelines.features.labels import LabelDefinition

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
        test_size=0.3 if args.test_size is None else args.test_size,
        ordered=args.ordered,
        tracking_uri=settings.mlflow_tracking_uri,
        config=config,
        progress=print,
    )
    _print_registered(result)
    return 0


def _print_registered(result) -> None:
    print(result.summary())
    print(f"mlflow run id: {result.run_id}")
    print(
        f"model: models:/{result.model_name}/{result.version}   champion: models:/{result.model_name}@champion"
    )


def _train_uplift(args: argparse.Namespace, settings: Settings) -> int:
    """``pmp train uplift``: on an experiment in a file with --table; without it, on the bank's campaign history
    (``jobs.uplift_train``, once that lands)."""
    if args.table is None:
        from pipelines import jobs

        uplift_train = getattr(jobs, "uplift_train", None)
        if uplift_train is None:
            raise ValueError("pmp train uplift needs --table FILE until campaign-history training lands")
        settings = settings.with_data_dir(args.data)
        print(f"tracking: {settings.mlflow_tracking_uri}")
        result = uplift_train(settings, args.as_of, progress=print)
        if hasattr(result, "summary"):
            print(result.summary())
        return 0
    if args.label is not None:
        raise ValueError("pmp train uplift takes --outcome COL (the response), not --label")
    for flag in ("treatment", "treated", "control", "outcome"):
        if getattr(args, flag) is None:
            raise ValueError(f"pmp train uplift --table needs --{flag}")
    if args.ordered:
        raise ValueError("pmp train uplift splits at random by treatment x outcome: --ordered does not apply")
    from pipelines.models.uplift_training import train_uplift_table

    exclude = [c.strip() for c in (args.exclude or "").split(",") if c.strip()]
    print(f"tracking: {settings.mlflow_tracking_uri}")
    result = train_uplift_table(
        args.table,
        treatment=args.treatment,
        treated=args.treated,
        control=args.control,
        outcome=args.outcome,
        positive=args.positive,
        id_col=args.id,
        exclude=exclude,
        name=args.name or "uplift",
        seed=settings.seed if args.seed is None else args.seed,
        test_size=0.25 if args.test_size is None else args.test_size,
        tracking_uri=settings.mlflow_tracking_uri,
        progress=print,
    )
    _print_registered(result)
    return 0


def _cmd_readout(args: argparse.Namespace, settings: Settings) -> int:
    """The readout of an experiment in a flat file: rates, lift with CI, p-value and the SRM verdict."""
    from pipelines.models.propensity import read_table
    from pipelines.readout.stats import readout

    if (args.table is None) == (args.campaign_id is None):
        raise ValueError(
            "give either --table FILE (an experiment in a file) or --campaign-id ID (a platform run or lake campaign)"
        )
    if args.campaign_id is not None:
        from pipelines import jobs

        row = jobs.readout_campaign(
            settings.with_data_dir(args.data),
            args.campaign_id,
            window_days=args.window_days,
            expected_share=args.expected_share,
            progress=print,
        )
        print(f"report: {row['report']}")
        return 0
    for flag in ("treatment", "treated", "control", "outcome"):
        if getattr(args, flag) is None:
            raise ValueError(f"--table needs --{flag}")
    result = readout(
        read_table(args.table),
        treatment_col=args.treatment,
        treated=args.treated,
        control=args.control,
        outcome_col=args.outcome,
        expected_share=args.expected_share,
        segment_cols=args.segment or (),
        positive=args.positive,
    )
    print(result.describe())
    return 0


def _tool(name: str) -> str:
    """The path of a console script of this environment (``mlflow``, ``airflow``, ``pmp``), as a user can type it."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The main job through Airflow (``dags/_local_run.py``, in its own process: ``pipelines`` never imports
    Airflow): churn_training, value_training, every campaign DAG, then :func:`run_summary`."""
    import subprocess

    argv = [sys.executable, str(settings.dags_dir / "_local_run.py")]
    if args.data:
        argv += ["--data", args.data]
    if args.as_of:
        argv += ["--as-of", args.as_of.isoformat()]
    for name in args.campaign or ():
        argv += ["--campaign", name]
    return subprocess.run(argv, check=False).returncode


def run_summary(
    settings: Settings,
    training: dict,
    campaigns: list[dict],
    valued: dict | None = None,
    models: dict | None = None,
    readouts: list[dict] | None = None,
) -> str:
    """The ``make run`` summary from the DAG runs' task results (task id -> returned value)."""
    gate = training.get("validate")
    reg = training["register"]
    m = reg["metrics"]
    lines = [
        "=" * 100,
        f"data-quality gates as of {gate}: passed (report: {settings.runs_dir / f'validate__{gate}' / 'validation' / 'validation.md'})",
        f"churn model: version {reg['version']} "
        + (
            "PROMOTED to champion"
            if reg["promoted"]
            else f"not promoted (champion stays v{reg['champion_version']})"
        ),
        f"  test auc {m['auc']:.4f}  pr-auc {m['pr_auc']:.4f}  top-decile lift {m['top_decile_lift']:.2f}  "
        f"brier {m['brier']:.4f}  ks {m['ks']:.3f}"
        + (
            f"  ({reg['auc_to_oracle']:.1%} of the oracle AUC {reg['oracle_auc']:.4f})"
            if "oracle_auc" in reg
            else ""
        ),
        f"  feature gate: {int(reg.get('gx_critical_failures', 0))} critical failure(s), "
        f"{int(reg.get('gx_warnings', 0))} warning(s)",
        *[f"  {r}" for r in reg["reasons"]],
        *_value_lines(valued),
        *_model_lines(models),
        "campaigns:",
    ]
    for results in campaigns:
        w = results["write"]
        reasons = ", ".join(f"{k} {v:,}" for k, v in w["excluded_by_reason"].items())
        lines += [
            f"  {w['campaign']}: {w['scored']:,} scored, {w['excluded']:,} excluded, {w['selected']:,} selected -> "
            f"treatment {w['treatment']:,}, holdout {w['holdout']:,} (SRM p = {w['srm_p_value']:.3f})",
            f"    excluded by reason: {reasons or 'none'}",
            *[
                f"    audience by {dim}: "
                + ", ".join(f"{seg} {n:,}" for seg, n in sorted(mix.items(), key=lambda kv: -kv[1]))
                for dim, mix in w.get("segment_mix", {}).items()
            ],
            f"    list: {_tool('pmp')} lists export --campaign {w['campaign']} --out {w['campaign']}.csv",
        ]
    lines += _readout_lines(settings, readouts)
    lines += [
        f"campaign database: {settings.database_url}   runs: {_tool('pmp')} campaigns list",
        f"MLflow UI:  {_tool('mlflow')} ui --backend-store-uri {settings.mlflow_tracking_uri}",
        f"Airflow UI: {_tool('pmp')} airflow standalone   (then open http://localhost:8080)",
        "=" * 100,
    ]
    return "\n".join(lines)


def _model_lines(models: dict | None) -> list[str]:
    """The response and uplift models of ``campaign_models_training`` (task id -> result)."""
    if not models or "uplift" not in models:
        return []
    r, u = models["response"], models["uplift"]
    rm, um = r["metrics"], u["metrics"]
    lines = [
        f"response model: version {r['version']} {'PROMOTED to champion' if r['promoted'] else 'not promoted'}; "
        f"test auc {rm['auc']:.4f}, top-decile lift {rm['top_decile_lift']:.2f} (treated contacts of the newest "
        "campaign)",
        f"uplift model: version {u['version']} ({u['learner']}) "
        f"{'PROMOTED to champion' if u['promoted'] else 'not promoted'}; test qini {um['qini']:.3f} "
        f"[95% CI {um['qini_ci_low']:.3f}, {um['qini_ci_high']:.3f}], auuc {um['auuc']:.4f}, "
        f"uplift@30% {um['uplift_at_30']:+.2%}: {u['verdict']}",
    ]
    if "qini_share_of_oracle" in um:
        lines.append(
            f"  {um['qini_share_of_oracle']:.1%} of the oracle Qini {um['oracle_qini']:.3f} (true uplift from truth/)"
        )
    if "incremental_at_30_by_response" in um:
        lines.append(
            f"  top 30% by uplift: {um['incremental_at_30']:+.1f} incremental conversions; by response score: "
            f"{um['incremental_at_30_by_response']:+.1f}"
        )
    return lines


def _readout_lines(settings: Settings, readouts: list[dict] | None) -> list[str]:
    if not readouts:
        return []
    lines = ["readouts (after the response window; the synthetic world answered each run):"]
    for r in readouts:
        trust = "SRM ok" if r["trustworthy"] else "SRM MISMATCH: untrustworthy"
        lines.append(
            f"  {r['campaign_id']}: treated {r['treated_rate']:.2%} (n={r['treated_n']:,}) vs holdout "
            f"{r['control_rate']:.2%} (n={r['control_n']:,}): lift {r['lift_abs']:+.2%} "
            f"[95% CI {r['lift_ci_low']:+.2%}, {r['lift_ci_high']:+.2%}], p = {r['p_value']:.3g}; {trust}"
        )
        if r.get("true_lift") is not None:
            inside = r["lift_ci_low"] <= r["true_lift"] <= r["lift_ci_high"]
            lines.append(
                f"    true lift {r['true_lift']:+.2%} ({'inside' if inside else 'OUTSIDE'} the interval)"
                + (f"; net return {r['net_return']:,.0f}" if r.get("net_return") is not None else "")
            )
        lines.append(f"    {r['power']}")
        if r.get("alert"):
            lines.append("    " + r["alert"].splitlines()[0])
        lines.append(f"    report: {settings.runs_dir / ('readout__' + r['campaign_id']) / 'report.html'}")
    return lines


def _value_lines(valued: dict | None) -> list[str]:
    if not valued or "train" not in valued:
        return []
    v = valued["train"]
    m = v["metrics"]
    verdict = (
        "PROMOTED to champion" if v["promoted"] else f"not promoted (champion stays v{v['champion_version']})"
    )
    lines = [
        f"value model: version {v['version']} {verdict}",
        f"  normalised gini {m['normalised_gini']:.3f}  top-20% share {m['top20_share']:.1%}  "
        f"total error {m['total_error']:+.1%}",
    ]
    if "baseline_normalised_gini" in m:
        lines.append(
            f"  BG/NBD baseline: gini {m['baseline_normalised_gini']:.3f}  top-20% share "
            f"{m['baseline_top20_share']:.1%}  total error {m['baseline_total_error']:+.1%}"
        )
    return lines


def _cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    """One campaign run without Airflow: the gates, then features, score, select and hold out, write."""
    from pipelines import jobs

    settings = settings.with_data_dir(args.data)
    jobs.validate_data(settings, args.as_of, progress=print)
    summary = jobs.run_campaign(settings, args.campaign, args.as_of, progress=print)
    print(f"run {summary['run_id']}: treatment {summary['treatment']:,}, holdout {summary['holdout']:,}")
    return 0


def _cmd_campaigns(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.campaigns import store

    settings = settings.with_data_dir(args.data)
    engine = store.make_engine(settings.database_url)
    store.ensure_schema(engine)
    runs = store.list_runs(engine, args.campaign)
    if runs.empty:
        print(f"no campaign runs in {settings.database_url}")
        return 0
    columns = [
        "run_id",
        "campaign",
        "logical_date",
        "model_name",
        "model_version",
        "status",
        "n_scored",
        "n_excluded",
        "n_selected",
        "n_treatment",
        "n_holdout",
        "srm_p_value",
    ]
    with pd_options():
        print(runs[columns].to_string(index=False))
    return 0


def pd_options():
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 20)


def _cmd_lists(args: argparse.Namespace, settings: Settings) -> int:
    """Export a campaign list for campaign staff: treatment rows unless --all-groups; contact details only with
    --with-contact, and every such export is recorded in runs/exports.jsonl."""
    import getpass
    import json
    from datetime import datetime

    from pipelines.campaigns import store
    from pipelines.data import storage

    settings = settings.with_data_dir(args.data)
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, got {out.name}")
    engine = store.make_engine(settings.database_url)
    groups = ("treatment", "holdout") if args.all_groups else ("treatment",)
    run_id = store.resolve_run(engine, args.campaign, args.run)
    targets = store.read_targets(engine, args.campaign, run_id, groups=groups)
    if args.with_contact:
        contact = storage.read_table(
            settings.lake_dir, "customers", columns=["customer_id", "full_name", "phone", "email"]
        )
        targets = targets.merge(contact, on="customer_id", how="left", validate="one_to_one")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        targets.to_csv(out, index=False)
    else:
        targets.to_parquet(out, index=False)
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "campaign": args.campaign,
        "run_id": run_id,
        "groups": list(groups),
        "rows": len(targets),
        "with_contact": bool(args.with_contact),
        "file": str(out.resolve()),
    }
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.runs_dir / "exports.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
    if args.with_contact:
        print(
            f"NOTE: this export holds personal contact data; recorded in {settings.runs_dir / 'exports.jsonl'}"
        )
    print(f"wrote {len(targets):,} rows of {run_id} ({', '.join(groups)}) to {out}")
    return 0


def _cmd_airflow(args: argparse.Namespace, settings: Settings) -> int:
    """The airflow command line with this project's environment (home, DAG folder, data, stores)."""
    import os

    from pipelines.config import airflow_environment

    settings = settings.with_data_dir(args.data)
    env = {**os.environ}
    for key, value in airflow_environment(settings).items():
        env.setdefault(key, value)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(settings.dags_dir), env.get("PYTHONPATH", "")) if p)
    airflow = str(Path(sys.executable).parent / "airflow")
    os.execve(airflow, [airflow, *args.airflow_args], env)
    return 0  # not reached


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
        "model",
        nargs="?",
        choices=("churn", "value", "uplift"),
        help="train a platform model on the lake (--data, --as-of); uplift: on an experiment with --table",
    )
    train.add_argument("--table", default=None, help="CSV (any of , ; tab |, may be gzipped) or Parquet file")
    train.add_argument("--label", default=None, help="the target column (two classes), with --table")
    train.add_argument("--treatment", default=None, help="with uplift: the column holding the group")
    train.add_argument("--treated", default=None, help="with uplift: the value of the treated group")
    train.add_argument("--control", default=None, help="with uplift: the value of the control group")
    train.add_argument(
        "--outcome", default=None, help="with uplift: the response column (0/1, boolean, or see --positive)"
    )
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
    train.add_argument(
        "--name", default=None, help="registered model name (default: the file's stem; uplift: uplift)"
    )
    train.add_argument("--seed", type=int, default=None, help="random seed (default PM_SEED or 42)")
    train.add_argument(
        "--test-size",
        type=_fraction,
        default=None,
        help="share of rows held out for test (default 0.3; uplift: 0.25)",
    )
    train.add_argument(
        "--ordered", action="store_true", help="split by row order (test = last rows) instead of stratified"
    )
    train.add_argument(
        "--calibration", choices=("isotonic", "platt"), default="isotonic", help="default isotonic"
    )
    train.set_defaults(func=_cmd_train)

    run = sub.add_parser(
        "run", help="the main job through Airflow: churn_training, then campaign_scoring for each campaign"
    )
    run.add_argument("--as-of", type=_as_of, default=None, help="run date (default: the day after the data)")
    run.add_argument("--campaign", action="append", help="only this campaign (repeatable; default: all)")
    run.set_defaults(func=_cmd_run)

    score = sub.add_parser(
        "score", help="one campaign run without Airflow (gates, score, select, hold out, write)"
    )
    score.add_argument("--campaign", required=True, help="campaign name (campaigns/<name>.yaml)")
    score.add_argument(
        "--as-of", type=_as_of, default=None, help="run date (default: the day after the data)"
    )
    score.set_defaults(func=_cmd_score)

    campaigns = sub.add_parser("campaigns", help="campaign runs in the campaign database")
    campaigns_sub = campaigns.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = campaigns_sub.add_parser("list", help="runs with their counts, newest first")
    listing.add_argument("--campaign", default=None, help="only this campaign")
    listing.set_defaults(func=_cmd_campaigns)

    lists = sub.add_parser("lists", help="campaign lists for campaign staff")
    lists_sub = lists.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = lists_sub.add_parser("export", help="write a run's target list to CSV or Parquet")
    export.add_argument("--campaign", required=True, help="campaign name")
    export.add_argument("--run", default="latest", help="a run id, or latest (default)")
    export.add_argument("--out", required=True, help="FILE.csv or FILE.parquet")
    export.add_argument("--all-groups", action="store_true", help="include the holdout rows (group column)")
    export.add_argument(
        "--with-contact",
        action="store_true",
        help="add name, phone and email (personal data; the export is logged)",
    )
    export.set_defaults(func=_cmd_lists)

    readout = sub.add_parser(
        "readout", help="readout of an experiment in a CSV or Parquet file: lift with CI, p-value, SRM check"
    )
    readout.add_argument(
        "--table", default=None, help="CSV (any of , ; tab |, may be gzipped) or Parquet file"
    )
    readout.add_argument(
        "--campaign-id",
        default=None,
        help="read out a platform run (its run id) or a past campaign of the lake, after its response window",
    )
    readout.add_argument(
        "--window-days",
        type=_positive,
        default=None,
        help="with --campaign-id: response window (default: the run's spec, or 14 for a lake campaign)",
    )
    readout.add_argument("--treatment", default=None, help="the column holding the group")
    readout.add_argument("--treated", default=None, help="the value of the treated group in --treatment")
    readout.add_argument("--control", default=None, help="the value of the control group in --treatment")
    readout.add_argument(
        "--outcome", default=None, help="the response column (0/1, boolean, or see --positive)"
    )
    readout.add_argument("--positive", default=None, help="the outcome value that counts as a response")
    readout.add_argument(
        "--expected-share",
        type=_fraction,
        default=None,
        help="planned treated share, for the SRM check (a platform run's own holdout fraction by default)",
    )
    readout.add_argument(
        "--segment", action="append", default=None, help="also read out by this column (repeatable)"
    )
    readout.set_defaults(func=_cmd_readout)

    airflow = sub.add_parser(
        "airflow", help="the airflow CLI with this project's environment, e.g. pmp airflow standalone"
    )
    airflow.add_argument("airflow_args", nargs=argparse.REMAINDER, help="arguments for airflow")
    airflow.set_defaults(func=_cmd_airflow)

    for command in (synth, validate, train, run, score, listing, export, readout, airflow):
        command.add_argument("--data", default=None, help="data folder (default PM_DATA_DIR or ./data)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    try:
        return args.func(args, settings)
    except (ValueError, FileNotFoundError, LookupError) as exc:
        print(f"pmp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"pmp {args.command}: failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
