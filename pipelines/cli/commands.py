"""The ``pmp`` sub-commands: each takes the parsed arguments and the settings and returns the exit code, a thin
layer over the stage functions and the jobs (:mod:`pipelines.cli.parser` maps the command line onto them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.config import Settings


def synth(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.synthetic.bank import SynthConfig, generate_bank, summary_lines

    out = Path(args.out or args.data or settings.data_dir)
    config = SynthConfig(
        customers=args.customers,
        months=args.months,
        seed=settings.seed if args.seed is None else args.seed,
        start=args.start,
        dirty=args.dirty,
        workers=args.workers,
        shift_month=args.shift_month,
        shift=args.shift,
        shift_factor=args.shift_factor,
    )
    manifest = generate_bank(config, out, progress=print)
    for line in summary_lines(manifest):
        print(f"  {line}")
    print(f"lake: {out / 'lake'}   truth: {out / 'truth'}   next: pmp validate --data {out}")
    return 0


def validate(args: argparse.Namespace, settings: Settings) -> int:
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


def ingest(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.data.ingest import ingest_source
    from pipelines.data.mapping import load_mapping

    settings = settings.with_data_dir(args.data)
    mapping = load_mapping(args.source, settings.sources_dir)
    report = ingest_source(
        mapping,
        settings.data_dir,
        months=args.months,
        dry_run=args.dry_run,
        expectations_dir=settings.expectations_dir,
        progress=print,
    )
    if report.report_dir:
        print(f"report: {report.report_dir}/report.md   next: pmp validate --data {settings.data_dir}")
    return 0


def train(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.jobs.training import train_churn, value_train
    from pipelines.models.propensity import TrainConfig
    from pipelines.models.tables import train_table
    from pipelines.models.tuning import budget

    tune = budget(settings)
    if args.tune_trials is not None:
        tune["tune_trials"] = args.tune_trials
    if args.model == "uplift":
        return _train_uplift(args, settings)
    if args.model is None and args.outcome is not None:
        raise ValueError("--outcome is for uplift models: pmp train uplift --table FILE --treatment COL ...")
    if (args.model is None) == (args.table is None):
        raise ValueError("give either a model name (pmp train churn) or --table FILE --label COL")
    if args.model == "value":
        settings = settings.with_data_dir(args.data)
        print(f"tracking: {settings.mlflow_tracking_uri}")
        value_train(settings, args.as_of, progress=print)
        print("champion: models:/value@champion")
        return 0
    if args.model == "response":
        from pipelines.jobs.campaign_models import campaign_history, response_train

        settings = settings.with_data_dir(args.data)
        print(f"tracking: {settings.mlflow_tracking_uri}")
        campaign_history(settings, args.as_of, args.window_days, progress=print)
        response_train(settings, args.as_of, progress=print)
        print("champion: models:/response@champion")
        return 0
    if args.model == "churn":
        from pipelines.features.labels import LabelDefinition

        settings = settings.with_data_dir(args.data)
        definition = args.definition
        if definition is None:
            from pipelines.jobs.common import churn_definition

            definition, why = churn_definition(settings)
            print(f"churn definition: {definition} ({why}; --definition chooses another)")
        print(f"tracking: {settings.mlflow_tracking_uri}")
        result = train_churn(
            settings.data_dir,
            tracking_uri=settings.mlflow_tracking_uri,
            as_of=args.as_of,
            definition=LabelDefinition(definition, args.horizon),
            config=TrainConfig(model_name="churn", calibration=args.calibration, seed=settings.seed, **tune),
            progress=print,
        )
        print(result.summary())
        print(f"mlflow run id: {result.run_id}   champion: models:/churn@champion")
        return 0
    if args.label is None:
        raise ValueError("--table needs --label COL")

    exclude = [c.strip() for c in (args.exclude or "").split(",") if c.strip()]
    config = TrainConfig(calibration=args.calibration, **tune)
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
        allow=args.allow_column or (),
        group_by_id=args.group_by_id,
        force=args.force,
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
    (``jobs.campaign_models.uplift_train``)."""
    if args.table is None:
        from pipelines.jobs.campaign_models import uplift_train

        settings = settings.with_data_dir(args.data)
        print(f"tracking: {settings.mlflow_tracking_uri}")
        uplift_train(
            settings, args.as_of, progress=print
        )  # prints the learners, the test figures and the verdict
        return 0
    if args.label is not None:
        raise ValueError("pmp train uplift takes --outcome COL (the response), not --label")
    for flag in ("treatment", "treated", "control", "outcome"):
        if getattr(args, flag) is None:
            raise ValueError(f"pmp train uplift --table needs --{flag}")
    if args.ordered:
        raise ValueError("pmp train uplift splits at random by treatment x outcome: --ordered does not apply")
    from pipelines.models.uplift_tables import train_uplift_table

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
        name=args.name,
        seed=settings.seed if args.seed is None else args.seed,
        test_size=0.25 if args.test_size is None else args.test_size,
        allow=args.allow_column or (),
        group_by_id=args.group_by_id,
        force=args.force,
        tracking_uri=settings.mlflow_tracking_uri,
        progress=print,
    )
    _print_registered(result)
    return 0


def readout(args: argparse.Namespace, settings: Settings) -> int:
    """The readout of an experiment in a flat file: rates, lift with CI, p-value and the SRM verdict."""
    from pipelines.models.tables import read_table
    from pipelines.readout.stats import readout

    if (args.table is None) == (args.campaign_id is None):
        raise ValueError(
            "give either --table FILE (an experiment in a file) or --campaign-id ID (a platform run or lake campaign)"
        )
    if args.campaign_id is not None:
        from pipelines.jobs.readouts import readout_campaign

        row = readout_campaign(
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


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The main job through Airflow (``dags/_local_run.py``, in its own process: ``pipelines`` never imports
    Airflow): the training DAGs, every campaign DAG and the readouts, then the run summary
    (:mod:`pipelines.cli.summary`); Airflow's own output goes to the run's log file, whose path is printed."""
    import subprocess

    argv = [sys.executable, str(settings.dags_dir / "_local_run.py")]
    if args.data:
        argv += ["--data", args.data]
    if args.as_of:
        argv += ["--as-of", args.as_of.isoformat()]
    for name in args.campaign or ():
        argv += ["--campaign", name]
    return subprocess.run(argv, check=False).returncode


def score(args: argparse.Namespace, settings: Settings) -> int:
    """One campaign run without Airflow: the spec, the campaign database and the MLflow store are checked first
    (a bad one fails in seconds, one line), then the gates, features, score, select and hold out, write."""
    from pipelines.jobs.campaigns import run_campaign, validate_campaign

    settings = settings.with_data_dir(args.data)
    validate_campaign(settings, args.campaign, args.as_of, progress=print)
    summary = run_campaign(settings, args.campaign, args.as_of, progress=print)
    print(f"run {summary['run_id']}: treatment {summary['treatment']:,}, holdout {summary['holdout']:,}")
    return 0


def campaigns_list(args: argparse.Namespace, settings: Settings) -> int:
    import pandas as pd

    from pipelines.campaigns import store, store_schema

    settings = settings.with_data_dir(args.data)
    engine = store_schema.make_engine(settings.database_url)
    store_schema.ensure_schema(engine)
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
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(runs[columns].to_string(index=False))
    return 0


def lists_export(args: argparse.Namespace, settings: Settings) -> int:
    """Export a campaign list for campaign staff: treatment rows unless --all-groups; contact details only with
    --with-contact, for an identity allowed to (PostgreSQL: a member of the contact role; SQLite: an OS account in
    PM_CONTACT_USERS), in a 0600 file released only once its audit row is committed
    (:mod:`pipelines.campaigns.contact_export`). Every export is recorded in the campaign database."""
    from pipelines.campaigns import contact_export, store_schema

    settings = settings.with_data_dir(args.data)
    out = Path(args.out)
    if out.suffix.lower() not in contact_export.EXPORT_SUFFIXES:
        raise ValueError(f"--out must end in {', '.join(contact_export.EXPORT_SUFFIXES)}, got {out.name}")
    engine = store_schema.make_engine(settings.database_url)
    groups = ("treatment", "holdout") if args.all_groups else ("treatment",)
    try:
        store_schema.ensure_schema(engine, roles=(settings.staff_role, settings.contact_role))
        record = contact_export.export_list(
            engine, settings, args.campaign, args.run, out, groups, with_contact=args.with_contact
        )
    finally:
        engine.dispose()
    if args.with_contact:
        print(
            f"NOTE: this export holds personal contact data (file mode 0600); recorded as row {record.row_id} of "
            f"{record.table} for {record.exported_by}, sha256 {record.sha256[:16]}..."
        )
    print(f"wrote {record.n_rows:,} rows of {record.run_id} ({', '.join(groups)}) to {out}")
    return 0


def lists_exports(args: argparse.Namespace, settings: Settings) -> int:
    """The recorded list exports, newest first (reading contact exports needs the contact role on PostgreSQL)."""
    import pandas as pd

    from pipelines.campaigns import contact_export, store_schema

    settings = settings.with_data_dir(args.data)
    engine = store_schema.make_engine(settings.database_url)
    try:
        store_schema.ensure_schema(engine, roles=(settings.staff_role, settings.contact_role))
        exports = contact_export.read_exports(engine, args.campaign, args.limit)
    finally:
        engine.dispose()
    if exports.empty:
        print(f"no list exports recorded in {store_schema.safe_url(settings.database_url)}")
        return 0
    exports = exports.assign(
        exported_at=exports["exported_at"].map(lambda t: t.isoformat(timespec="seconds")),
        contact=exports["contact"].map({True: "yes", False: "no"}),
        sha256=exports["sha256"].str[:12],
    )
    columns = ["exported_at", "exported_by", "contact", "campaign", "run_id", "target_groups", "n_rows"]
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 120):
        print(exports[[*columns, "sha256", "file_path"]].to_string(index=False))
    return 0


def airflow(args: argparse.Namespace, settings: Settings) -> int:
    """``pmp airflow standalone [--port P]``: this project's Airflow components on 127.0.0.1 until Ctrl-C
    (:func:`pipelines.cli.services.airflow_standalone`). Any other ``pmp airflow ARGS``: the airflow command line of
    this environment with the project's environment (home, DAG folder, data, stores)."""
    import os

    from pipelines.cli import services

    if args.airflow_args[:1] == ["standalone"]:
        from pipelines.cli.parser import airflow_standalone_parser

        options = airflow_standalone_parser().parse_args(args.airflow_args[1:])
        settings = settings.with_data_dir(options.data or args.data)
        return services.airflow_standalone(settings, options.port)
    settings = settings.with_data_dir(args.data)
    env = services.with_async_metadata_url(services.airflow_cli_environment(settings))
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    airflow = services.executable("airflow")
    os.execve(airflow, [airflow, *args.airflow_args], env)
    return 0  # not reached


def mlflow_ui(args: argparse.Namespace, settings: Settings) -> int:
    """``pmp mlflow ui [--port P]``: the MLflow UI (``mlflow server``) on 127.0.0.1 over the settings' tracking
    store until Ctrl-C (:func:`pipelines.cli.services.mlflow_ui`)."""
    from pipelines.cli import services

    return services.mlflow_ui(settings, args.port)


def mlflow_serve(args: argparse.Namespace, settings: Settings) -> int:
    """``pmp mlflow serve MODEL [--alias A] [--port P] [--env-manager M]``: a registered model answering on
    127.0.0.1 until Ctrl-C (:func:`pipelines.cli.services.mlflow_serve`)."""
    from pipelines.cli import services

    return services.mlflow_serve(settings, args.model, args.alias, args.port, args.env_manager)


def audit_pii(args: argparse.Namespace, settings: Settings) -> int:
    """Look for the lake's personal values in everything the platform wrote: one line per place found (values
    masked), exit 1 on any; recorded contact exports are listed apart as released."""
    from pipelines.jobs.pii_audit import audit_pii as run_audit

    settings = settings.with_data_dir(args.data)
    result = run_audit(settings, progress=None)
    for path in result.released:
        print(f"released export (its audit row in contact_exports matches the file): {path}")
    for hit in result.hits:
        print(hit.line())
    print(result.summary())
    return 1 if result.hits else 0


def monitor(args: argparse.Namespace, settings: Settings) -> int:
    """The monitoring table (``jobs.monitoring.monitor_table``): one line per scoring run, ``ALERT`` or ``WARN``
    at the end of a line past a threshold; exit 0 either way (the DAG, not this command, asks for retraining)."""
    import pandas as pd

    from pipelines.jobs import monitoring

    settings = settings.with_data_dir(args.data)
    if args.update:
        monitoring.realised_due(settings, progress=print)
    table = monitoring.monitor_table(settings, args.model)
    if table.empty:
        print("no monitoring yet: scoring runs of a model with a monitoring reference record their stability")
        return 0
    print(
        f"thresholds: PSI warn {settings.psi_warn}, alert {settings.psi_alert}; realised AUC drop warn "
        f"{settings.decay_warn}, alert {settings.decay_alert}"
    )
    print(
        f"{'as of':<10}  {'model':<12} {'psi score':>9}  {'worst feature (psi)':<32} {'realised auc':>12}  run"
    )
    for r in table.itertuples():
        feature = f"{r.worst_feature} ({r.psi_feature:.3f})" if r.worst_feature else "-"
        realised = f"{r.realised_auc:.3f}/{r.test_auc:.3f}" if pd.notna(r.realised_auc) else "-"
        psi = f"{r.psi_score:.3f}" if pd.notna(r.psi_score) else "-"
        flag = {"alert": "  ALERT", "warn": "  WARN"}.get(r.level, "")
        print(f"{r.as_of!s:<10}  {r.model:<12} {psi:>9}  {feature:<32} {realised:>12}  {r.run_id}{flag}")
    return 0


def rules(args: argparse.Namespace, settings: Settings) -> int:
    """Cross-sell association rules (``jobs.nba.product_rules``): the strongest ``--top`` by lift, for one
    ``--product`` or all; the whole table goes to a CSV whose path is printed."""
    from pipelines.jobs.nba import product_rules

    table, path = product_rules(settings.with_data_dir(args.data), args.as_of)
    if args.product:
        table = table.loc[table["consequent"] == args.product]
    print(
        f"{'antecedent':<52} {'consequent':<18} {'customers':>9} {'support':>8} {'confidence':>10} {'lift':>6}"
    )
    for r in table.head(args.top).itertuples():
        print(
            f"{r.antecedent:<52} {r.consequent:<18} {r.customers:>9,} {r.support:>8.3f} {r.confidence:>10.3f} "
            f"{r.lift:>6.2f}"
        )
    print(f"{len(table):,} rule(s); all of them in {path}")
    return 0


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """The staff app (pipelines.web) on --host/--port until Ctrl-C."""
    from pipelines.web.serve import serve as serve_app

    settings = settings.with_data_dir(args.data)
    try:
        serve_app(settings, host=args.host, port=args.port)
    except KeyboardInterrupt:
        print("staff app stopped")
    return 0


def users_add(args: argparse.Namespace, settings: Settings) -> int:
    """Add a staff-app user (or change their role and password): the password from stdin, a prompt, or generated."""
    import getpass
    import secrets

    from pipelines.web import users

    settings = settings.with_data_dir(args.data)
    if args.generate:
        password = secrets.token_urlsafe(12)
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the two passwords differ; nothing was changed")
    user = users.add_user(users.users_path(settings.web_dir), args.name, args.role, password)
    print(f"user {user.name}: {users.ROLE_TEXT[user.role]}, in {users.users_path(settings.web_dir)}")
    if args.generate:
        print(f"password: {password}")
    return 0


def users_list(args: argparse.Namespace, settings: Settings) -> int:
    from pipelines.web import users

    settings = settings.with_data_dir(args.data)
    path = users.users_path(settings.web_dir)
    found = users.load_users(path)
    if not found:
        print(f"no users in {path}")
    for user in found.values():
        print(f"{user.name:<20} {users.ROLE_TEXT[user.role]}")
    return 0


def users_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The demo's users (one per role, generated passwords) unless users exist; then how to open the app."""
    from pipelines.web import users

    settings = settings.with_data_dir(args.data)
    passwords, made = users.ensure_demo_users(settings.web_dir)
    data = f" --data {args.data}" if args.data else ""
    if made:
        print(f"staff app: demo users {', '.join(made)} created; their passwords are in {passwords}")
    else:
        print(
            f"staff app: users already in {users.users_path(settings.web_dir)} (demo passwords: {passwords})"
        )
    print(
        f"open the staff app: {args.serve_command}  (or: .tools/bin/uv run pmp serve{data}), then "
        "http://127.0.0.1:8000/"
    )
    return 0
