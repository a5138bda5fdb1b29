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


def test_numba_driver_chatter_stays_out_of_the_log(tmp_path):
    """numba-cuda logs each device deallocation at INFO and warns about small grids: on the
    first real GPU run (H200) that was most of an induction's log. Our own INFO lines stay."""
    script = f"""
import logging, warnings
from cardiotwin.pipeline.cli import main
out = {str(tmp_path / "c.json")!r}
assert main(["verify", "cell", "--model", "mitchell-schaeffer", "--json", out]) == 0
logging.getLogger("numba.cuda.cudadrv.driver").info("add pending dealloc: cuMemFree 8 bytes")
warnings.warn("\\x1b[1mGrid size 1 will likely result in GPU under-utilization (low occupancy)")
logging.getLogger("cardiotwin.pipeline.induction").info("batch 1 still shown")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "batch 1 still shown" in done.stderr
    assert "cuMemFree" not in done.stderr and "Grid size" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["segment", "--lge", "{lge}", "--wall", "{wall}", "--out", "{lge}"],
         "--out would overwrite the input --lge"),
        (["segment", "--lge", "{lge}", "--wall", "{wall}", "--out", "{tmp}/l.nii.gz",
          "--stats", "{lge}"], "--stats would overwrite the input --lge"),
        (["segment", "--lge", "{lge}", "--wall", "{wall}", "--out", "{tmp}/l.nii.gz",
          "--stats", "{tmp}/./l.nii.gz"], "--out and --stats name the same file"),
        (["mesh", "--kind", "ventricle", "--labels", "{lge}", "--out", "{tmp}/m.vtu",
          "--quality-json", "{lge}"],
         "--quality-json would overwrite the input --labels"),
        (["mesh", "--kind", "ventricle", "--labels", "{lge}", "--out", "{tmp}/m.vtu",
          "--quality-json", "{tmp}/m.vtu"],
         "--out and --quality-json name the same file"),
        (["induce", "--mesh", "{wall}", "--out", "{lge}"], "--out {lge} is a file: name a folder"),
        (["cohort-summary", "--results", "{wall}", "--out", "{lge}"], "is a file: name a folder"),
    ],
)  # fmt: skip
def test_outputs_never_overwrite_inputs_or_each_other(tmp_path, capsys, argv, message):
    """Before, each of these ran and exited 0, writing over the input (or one output over
    the other); an output folder that was a file gave a NotADirectoryError traceback."""
    lge, wall = tmp_path / "lge.nii.gz", tmp_path / "wall.nii.gz"
    lge.write_bytes(b"precious")
    wall.write_bytes(b"mask")
    values = {"lge": str(lge), "wall": str(wall), "tmp": str(tmp_path)}
    rc = main([part.format(**values) for part in argv])
    assert rc == 2
    assert message.format(**values) in capsys.readouterr().err
    assert lge.read_bytes() == b"precious" and wall.read_bytes() == b"mask"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lge.nii.gz", "wall.nii.gz"]


def test_a_folder_shared_by_outputs_or_holding_an_input_is_fine(tmp_path):
    """segment --out DIR --qc DIR (labels and pictures in one folder) is an ordinary call."""
    from argparse import Namespace
    from pathlib import Path

    from cardiotwin.pipeline.cli import check_paths

    check_paths(Namespace(command="segment", lge=tmp_path / "lge.nii.gz", out=tmp_path,
                          qc=tmp_path, stats=None))  # fmt: skip
    check_paths(Namespace(command="induce", mesh=Path("m.vtu"), out=tmp_path / "x",
                          journal=tmp_path / "x"))  # fmt: skip


def test_more_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    """A new user's trial found each of these ending in a Python traceback."""
    binary = tmp_path / "settings.yaml"
    binary.write_bytes(bytes(range(256)))
    assert main(["config", "check", str(binary)]) == 2
    assert "not a text file" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exc:
        main(["phantom", "lv-healthy", "--seed", "-1", "--out", str(tmp_path / "ph")])
    assert exc.value.code == 2
    assert "seeds are 0 or more" in capsys.readouterr().err

    labels = tmp_path / "labels.nii.gz"
    labels.write_bytes(b"")
    mesh, pictures = str(tmp_path / "m.vtu"), str(tmp_path / "pics")
    argv = ["mesh", "--kind", "ventricle", "--labels", str(labels), "--out", mesh,
            "--no-prepare", "--pictures", pictures]  # fmt: skip
    assert main(argv) == 2
    assert "drop --no-prepare or --pictures" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "settings.yaml"]


@pytest.mark.parametrize(
    ("amplitude", "message"),
    [("0", "must be a positive number"), ("-40", "must be a positive number"),
     ("1", "did not fire an action potential")],
)  # fmt: skip
def test_a_stimulus_that_cannot_excite_is_an_error_not_a_nan(tmp_path, capsys, amplitude, message):
    """--stim-amplitude 0 exited 0 and wrote a bare NaN APD into the JSON."""
    out = tmp_path / "cell.json"
    argv = ["verify", "cell", "--model", "tp06-epi", "--stim-amplitude", amplitude]
    assert main([*argv, "--json", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_redaction_names_inputs_by_option_in_log_records(tmp_path):
    import argparse
    import logging
    from pathlib import Path

    from cardiotwin.pipeline.cli import Redaction

    args = argparse.Namespace(
        command="segment", lge=Path("/data/DOE_JANE_99887766"), wall=Path("data/P01/wall.nii.gz"),
        out=Path("results/P01/segmentation/labels.nii.gz"),
    )  # fmt: skip
    redact = Redaction.of(args)
    text = "%s has no sform; metadata of %s/IM1"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, text,
                               ("data/P01/wall.nii.gz", "DOE_JANE_99887766"), None)  # fmt: skip
    assert redact.filter(record)
    message = record.getMessage()
    assert message == "<--wall> has no sform; metadata of <--lge>/IM1"
    # the output's folders (the workflow's case id) are left alone
    assert redact("wrote results/P01/segmentation/labels.nii.gz") == (
        "wrote results/P01/segmentation/labels.nii.gz"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["phantom", "lv-infarct", "--seed", "1", "--fibrosis-percent", "35"],
         "--fibrosis-percent applies to la-fibrosis only"),
        (["phantom", "la-fibrosis", "--seed", "1", "--variant", "transmural"],
         "--variant applies to lv-infarct only"),
        (["prepare", "--kind", "atrium", "--mesh", "{tmp}/m.vtu", "--septum-mm", "1", "2", "3"],
         "--septum-mm orients a ventricle's AHA segments"),
    ],
)  # fmt: skip
def test_options_the_kind_ignores_are_refused(tmp_path, capsys, argv, message):
    """Accepted and ignored before: a 35 % 'infarct' phantom was an ordinary one."""
    out = tmp_path / "out"
    argv = [part.format(tmp=tmp_path) for part in argv]
    out_option = ["--out", str(out / "m.vtu" if argv[0] == "prepare" else out)]
    assert main([*argv, *out_option]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
