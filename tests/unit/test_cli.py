"""The `pmp` command line: exit codes, progress output and where reports land."""

from __future__ import annotations

import pytest

from pipelines.cli import main


def test_synth_then_validate_passes_and_writes_the_report(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", "--customers", "1500", "--months", "2", "--seed", "5", "--out", str(data)]) == 0
    out = capsys.readouterr().out
    assert "chunk 1/1" in out and "customers: 1,500 rows" in out
    assert main(["validate", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out
    report = data / "runs" / "validate__2025-03-01" / "validation"
    assert (report / "validation.json").is_file() and (report / "validation.md").is_file()


def test_validate_exits_non_zero_on_a_critical_failure_and_names_it(dirty_bank, capsys):
    assert main(["validate", "--data", str(dirty_bank)]) == 1
    out = capsys.readouterr().out
    assert "transactions.amount: rule 'amount not negative' (critical) failed on 11 rows" in out
    assert "balances.aum: column missing (critical)" in out


def test_validate_with_an_explicit_as_of_uses_it_for_the_run_id(dirty_bank, capsys):
    main(["validate", "--data", str(dirty_bank), "--as-of", "2025-03-01"])
    assert (dirty_bank / "runs" / "validate__2025-03-01" / "validation" / "validation.md").is_file()


def test_validate_of_a_missing_lake_is_a_clear_error(tmp_path, capsys):
    assert main(["validate", "--data", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "nowhere" in err and "transactions" in err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["synth", "--customers", "0"], "positive integer"),
        (["validate", "--as-of", "01/02/2025"], "YYYY-MM-DD"),
        (["synth", "--start", "2025-13"], "start must be a month"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(argv, fragment, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main([*argv, "--out" if argv[0] == "synth" else "--data", str(tmp_path)])
        raise SystemExit(code)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err
