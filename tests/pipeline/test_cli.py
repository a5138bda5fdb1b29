"""The cardiotwin command: subcommands, errors for people, JSON output."""

import json
import subprocess
import sys

import pytest

from cardiotwin.pipeline.cli import main


def test_help_lists_stages(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("verify", "phantom", "segment"):
        assert command in out


def test_verify_cell_writes_json(tmp_path, capsys):
    out = tmp_path / "sub" / "cell.json"
    rc = main(["verify", "cell", "--model", "mitchell-schaeffer", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"v_rest_mv", "v_peak_mv", "dvdt_max_v_per_s", "apd90_ms"}
    assert result["v_peak_mv"] > 0.0
    assert not list(out.parent.glob("*.tmp")), "no temporary file left behind"


def test_unknown_model_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "cell.json"
    rc = main(["verify", "cell", "--model", "tp07", "--json", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown ionic model 'tp07'" in err and "mitchell-schaeffer" in err
    assert not out.exists()


@pytest.mark.parametrize("dt", ["0", "-0.01", "nan"])
def test_bad_time_step_is_refused(dt, capsys):
    assert main(["verify", "cell", "--model", "aliev-panfilov", "--dt", dt]) == 2
    assert "--dt" in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "cardiotwin.pipeline", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("cardiotwin ")
