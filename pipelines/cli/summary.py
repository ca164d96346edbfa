"""The summary ``make run`` (``pmp run``) prints at the end: the gates, each model's registration and test figures,
each campaign's audience, the readouts, and where to look next."""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines.config import Settings


def _tool(name: str) -> str:
    """The path of a console script of this environment (``mlflow``, ``airflow``, ``pmp``), as a user can type it."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
        f"MLflow UI:  {_tool('pmp')} mlflow ui [--port 5000]   (then open http://127.0.0.1:5000)",
        f"Airflow UI: {_tool('pmp')} airflow standalone [--port 8080]   (then open http://127.0.0.1:8080 as admin; "
        f"password in {settings.airflow_home / 'simple_auth_manager_passwords.json.generated'})",
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
