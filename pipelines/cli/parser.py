"""The ``pmp`` command line's grammar: sub-commands, their options and the checks of option values."""

from __future__ import annotations

import argparse
from datetime import date

from pipelines.cli import commands, decide
from pipelines.data.products import PRODUCT_IDS


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


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {value}")
    return number


def _months(value: str) -> list[str]:
    months = [m.strip() for m in value.split(",") if m.strip()]
    for month in months:
        try:
            date.fromisoformat(f"{month}-01")
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected months YYYY-MM[,YYYY-MM...], got {month!r}") from None
    if not months:
        raise argparse.ArgumentTypeError("expected months YYYY-MM[,YYYY-MM...]")
    return months


def _port(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port between 1 and 65535, got {value}")
    return number


def airflow_standalone_parser() -> argparse.ArgumentParser:
    """The options of ``pmp airflow standalone`` (parsed by ``commands.airflow`` from what follows the word)."""
    parser = argparse.ArgumentParser(
        prog="pmp airflow standalone",
        description="Airflow's API server and UI, scheduler, DAG processor and triggerer for this project, on "
        "127.0.0.1 only, until Ctrl-C. Sign in as admin; the password is in "
        "<AIRFLOW_HOME>/simple_auth_manager_passwords.json.generated (printed at start).",
    )
    parser.add_argument(
        "--port", type=_port, default=8080, help="port of the UI and API on 127.0.0.1 (default 8080)"
    )
    parser.add_argument("--data", default=None, help="data folder (default PM_DATA_DIR or ./data)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of every ``pmp`` command; each sub-command's ``func`` default is its function in ``commands``."""
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
    synth.add_argument(
        "--shift-month",
        default=None,
        help="inject a behaviour shift from this month on, YYYY-MM (with --shift)",
    )
    synth.add_argument(
        "--shift",
        choices=("dormancy", "spend"),
        default=None,
        help="the shift: dormancy (under-35s fall dormant more often) or spend (amounts rise); truth/shift.json",
    )
    synth.add_argument(
        "--shift-factor", type=float, default=None, help="size of the shift (default: dormancy 5, spend 1.3)"
    )
    synth.set_defaults(func=commands.synth)

    validate = sub.add_parser("validate", help="run the data-quality gates on the lake")
    validate.add_argument(
        "--as-of", type=_as_of, default=None, help="run date (default: the day after the data)"
    )
    validate.set_defaults(func=commands.validate)

    ingest = sub.add_parser(
        "ingest", help="load an external source into the lake through its mapping (sources/NAME.yaml)"
    )
    ingest.add_argument(
        "--source", required=True, help="a mapping's name in the sources folder, or a mapping file's path"
    )
    ingest.add_argument(
        "--dry-run",
        action="store_true",
        help="map a sample, count faults and run the gates on it; write nothing",
    )
    ingest.add_argument(
        "--months", type=_months, default=None, help="only these months, YYYY-MM[,YYYY-MM...] (default: all)"
    )
    ingest.set_defaults(func=commands.ingest)

    train = sub.add_parser(
        "train", help="train, register and maybe promote a model on a customer table (CSV or Parquet)"
    )
    train.add_argument(
        "model",
        nargs="?",
        choices=("churn", "value", "response", "uplift"),
        help="train a platform model on the lake (--data, --as-of); response: on the lake's past campaigns; "
        "uplift: on an experiment with --table",
    )
    train.add_argument("--table", default=None, help="CSV (any of , ; tab |, may be gzipped) or Parquet file")
    train.add_argument("--label", default=None, help="the target column (two classes), with --table")
    train.add_argument("--treatment", default=None, help="with uplift: the column holding the group")
    train.add_argument("--treated", default=None, help="with uplift: the value of the treated group")
    train.add_argument("--control", default=None, help="with uplift: the value of the control group")
    train.add_argument(
        "--outcome", default=None, help="with uplift: the response column (0/1, boolean, or see --positive)"
    )
    train.add_argument(
        "--as-of", type=_as_of, default=None, help="with churn, value, response: run date (default: lake end)"
    )
    train.add_argument("--horizon", type=int, choices=(90, 150), default=90, help="with churn: label horizon")
    train.add_argument(
        "--window-days",
        type=int,
        choices=(7, 14),
        default=14,
        help="with response: days after selection a conversion counts (the campaigns' response window)",
    )
    train.add_argument(
        "--definition",
        choices=("closure", "inactivity", "balance_outflow"),
        default=None,
        help="churn label (default: closure when the lake has closed accounts, else inactivity, as pmp run)",
    )
    train.add_argument("--positive", default=None, help="the label value of the positive class (e.g. yes)")
    train.add_argument("--id", default=None, help="identifier column, never used as a feature")
    train.add_argument("--exclude", default=None, help="comma-separated columns to leave out (e.g. leaks)")
    train.add_argument(
        "--name", default=None, help="registered model name with --table (default: the file's stem)"
    )
    train.add_argument(
        "--allow-column",
        action="append",
        default=None,
        metavar="COL",
        help="with --table: use this column as a feature although it looks like personal data (repeatable)",
    )
    train.add_argument(
        "--group-by-id",
        action="store_true",
        help="with --table and --id: accept repeated ids and keep each id's rows on one side of the split",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="with --table: register under --name even when that model has another input schema (the new version "
        "is not compared with nor promoted over the other schema's champion)",
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
        "--calibration",
        choices=("auto", "isotonic", "platt"),
        default="auto",
        help="probability calibration (ranking is always on the raw score); default auto: isotonic when the "
        "validation frame has at least 1000 rows of its rarer class, Platt otherwise",
    )
    train.add_argument(
        "--tune-trials",
        type=_count,
        default=None,
        help="with churn or --table: trials of the hyperparameter search on the validation split, the first the "
        "untuned parameters (default PM_TUNE_TRIALS or 0 = no search; capped at PM_TUNE_SECONDS, default 120)",
    )
    train.set_defaults(func=commands.train)

    run = sub.add_parser(
        "run",
        help="the main job through Airflow: the training DAGs, campaign_scoring for each campaign, the readouts; "
        "prints a summary and keeps the tasks' output in runs/pmp_run__<as_of>/run.log",
    )
    run.add_argument("--as-of", type=_as_of, default=None, help="run date (default: the day after the data)")
    run.add_argument("--campaign", action="append", help="only this campaign (repeatable; default: all)")
    run.set_defaults(func=commands.run)

    score = sub.add_parser(
        "score", help="one campaign run without Airflow (gates, score, select, hold out, write)"
    )
    score.add_argument("--campaign", required=True, help="campaign name (campaigns/<name>.yaml)")
    score.add_argument(
        "--as-of", type=_as_of, default=None, help="run date (default: the day after the data)"
    )
    score.set_defaults(func=commands.score)

    campaigns = sub.add_parser("campaigns", help="campaign runs in the campaign database")
    campaigns_sub = campaigns.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = campaigns_sub.add_parser("list", help="runs with their counts, newest first")
    listing.add_argument("--campaign", default=None, help="only this campaign")
    listing.set_defaults(func=commands.campaigns_list)

    lists = sub.add_parser("lists", help="campaign lists for campaign staff")
    lists_sub = lists.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = lists_sub.add_parser(
        "export",
        help="write a run's target list to CSV, Parquet or Excel, reasons in plain language, score as percentile",
    )
    export.add_argument("--campaign", required=True, help="campaign name")
    export.add_argument("--run", default="latest", help="a run id, or latest (default)")
    export.add_argument("--out", required=True, help="FILE.csv, FILE.parquet or FILE.xlsx")
    export.add_argument("--all-groups", action="store_true", help="include the holdout rows (group column)")
    export.add_argument(
        "--with-contact",
        action="store_true",
        help="add name, phone and email (personal data): only for members of the contact role (PostgreSQL) or "
        "OS accounts in PM_CONTACT_USERS (SQLite); the file is mode 0600 and audited in contact_exports",
    )
    export.set_defaults(func=commands.lists_export)
    exports = lists_sub.add_parser(
        "exports", help="the recorded list exports (who, when, run, rows, file, sha256)"
    )
    exports.add_argument("--campaign", default=None, help="only this campaign")
    exports.add_argument("--limit", type=_positive, default=50, help="newest N (default 50)")
    exports.set_defaults(func=commands.lists_exports)

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
    readout.set_defaults(func=commands.readout)

    airflow = sub.add_parser(
        "airflow",
        help="this project's Airflow: 'pmp airflow standalone [--port P]' runs the UI, scheduler, DAG processor and "
        "triggerer on 127.0.0.1 (default port 8080); any other arguments go to the airflow command line",
    )
    airflow.add_argument(
        "airflow_args", nargs=argparse.REMAINDER, help="standalone [--port P], or airflow arguments"
    )
    airflow.set_defaults(func=commands.airflow)

    mlflow = sub.add_parser("mlflow", help="MLflow on this project's tracking store")
    mlflow_sub = mlflow.add_subparsers(dest="action", required=True, metavar="ACTION")
    mlflow_ui = mlflow_sub.add_parser(
        "ui", help="the MLflow UI (mlflow server) on 127.0.0.1 over the tracking store, until Ctrl-C"
    )
    mlflow_ui.add_argument("--port", type=_port, default=5000, help="port on 127.0.0.1 (default 5000)")
    mlflow_ui.set_defaults(func=commands.mlflow_ui)
    mlflow_serve = mlflow_sub.add_parser(
        "serve", help="a registered model (default: its champion) answering POST /invocations on 127.0.0.1"
    )
    mlflow_serve.add_argument("model", help="registered model name, e.g. churn, value, response, uplift")
    mlflow_serve.add_argument(
        "--alias", default="champion", help="registry alias to serve (default champion)"
    )
    mlflow_serve.add_argument("--port", type=_port, default=5001, help="port on 127.0.0.1 (default 5001)")
    mlflow_serve.add_argument(
        "--env-manager",
        choices=("local", "uv", "virtualenv"),
        default="local",
        help="local: this environment; uv: build the model's own environment from its requirements first",
    )
    mlflow_serve.set_defaults(func=commands.mlflow_serve)

    audit = sub.add_parser("audit", help="checks of what the platform wrote")
    audit_sub = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit_pii = audit_sub.add_parser(
        "pii",
        help="look for the lake's personal values (names, phones, e-mails, national ids) in run folders, "
        "reports, logs, exports, MLflow and Airflow logs; exit 1 on any, naming the place",
    )
    audit_pii.set_defaults(func=commands.audit_pii)

    monitor = sub.add_parser(
        "monitor",
        help="model monitoring: per scoring run, score and feature stability (PSI) and realised AUC; ALERT marks "
        "lines past the alert threshold (exit 0 either way)",
    )
    monitor.add_argument("--model", default=None, help="one model (churn, response, ...); default: all")
    monitor.add_argument(
        "--update",
        action="store_true",
        help="first measure the realised performance that is due (what the model_monitoring DAG does)",
    )
    monitor.set_defaults(func=commands.monitor)

    rules = sub.add_parser(
        "rules",
        help="cross-sell association rules of the customers' products and spending (support, confidence, lift; "
        "docs/next-best-action.md)",
    )
    rules.add_argument("--as-of", default=None, help="date of the baskets (default: the lake's end)")
    rules.add_argument(
        "--product", default=None, choices=PRODUCT_IDS, help="only rules that lead to this product"
    )
    rules.add_argument("--top", type=int, default=20, help="rules to print (default 20)")
    rules.set_defaults(func=commands.rules)

    serve = sub.add_parser("serve", help="the staff app: campaigns, readouts, lists and the campaign builder")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.set_defaults(func=commands.serve)

    decide_cmd = sub.add_parser("decide", help="real-time decisions: the decision service and its snapshot")
    decide_sub = decide_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    decide_serve = decide_sub.add_parser(
        "serve",
        help="answer POST /decide for the real-time campaigns (campaigns with a trigger), until Ctrl-C",
    )
    decide_serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    decide_serve.add_argument("--port", type=_port, default=8100, help="port (default 8100)")
    decide_serve.set_defaults(func=decide.decide_serve)
    decide_refresh = decide_sub.add_parser(
        "refresh", help="load the online snapshot from a written batch run of CAMPAIGN"
    )
    decide_refresh.add_argument("campaign", help="a batch campaign whose run at --as-of was written")
    decide_refresh.add_argument("--as-of", type=_as_of, default=None, help="YYYY-MM-DD (default: lake end)")
    decide_refresh.set_defaults(func=decide.decide_refresh)
    decide_close = decide_sub.add_parser(
        "close",
        help="turn one day's decisions of a real-time campaign into a run that reads out like a batch run",
    )
    decide_close.add_argument("campaign", help="a real-time campaign (a spec with a trigger)")
    decide_close.add_argument("--day", type=_as_of, required=True, help="YYYY-MM-DD")
    decide_close.set_defaults(func=decide.decide_close)

    users = sub.add_parser("users", help="the staff app's users and roles")
    users_sub = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    users_add = users_sub.add_parser("add", help="add a user, or change a user's role and password")
    users_add.add_argument("name", help="user name (lower case)")
    users_add.add_argument(
        "--role",
        required=True,
        choices=("viewer", "manager", "privileged"),
        help="viewer: results; manager: also the builder and lists without contact details; privileged: also "
        "contact details",
    )
    secret = users_add.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    secret.add_argument("--generate", action="store_true", help="generate a password and print it once")
    users_add.set_defaults(func=commands.users_add)
    users_list = users_sub.add_parser("list", help="the users and their roles")
    users_list.set_defaults(func=commands.users_list)
    users_demo = users_sub.add_parser(
        "demo", help="one demo user per role with generated passwords (make run)"
    )
    users_demo.add_argument(
        "--serve-command",
        default="make serve",
        help="the command the closing hint names (default: make serve)",
    )
    users_demo.set_defaults(func=commands.users_demo)

    for command in (
        synth,
        validate,
        ingest,
        train,
        run,
        score,
        listing,
        export,
        exports,
        readout,
        airflow,
        audit_pii,
        monitor,
        rules,
        serve,
        decide_serve,
        decide_refresh,
        decide_close,
        users_add,
        users_list,
        users_demo,
    ):
        command.add_argument("--data", default=None, help="data folder (default PM_DATA_DIR or ./data)")
    return parser
