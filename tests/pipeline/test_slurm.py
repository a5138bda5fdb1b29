"""A real single-node SLURM cluster runs a two-patient cohort through the executor plugin.

Installs Debian's slurm-wlm and munge when absent (root only), starts munged, slurmctld and
slurmd without systemd (proctrack/linuxproc, task/none, no cgroup.conf; a GPU gres declared
with AutoDetect=off and File=/dev/null; MinJobAge=600 so finished jobs stay visible), runs the
workflow with ``--executor slurm``, checks that exactly the simulation rules (resources
``gpu``) asked SLURM for a GPU, and stops every daemon it started, by PID.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_workflow import TEST_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data_samples"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
MUNGE_KEY = Path("/etc/munge/munge.key")
#: rules of the Snakefile that run simulations and so declare resources gpu=1
GPU_RULES = {"induce", "ablate"}

pytestmark = [pytest.mark.slow]


def _run(*command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def _install() -> None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("slurm-wlm/munge are not installed and this is not a root Debian machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run("apt-get", "update", "-qq", env=env, timeout=600)
    result = _run("apt-get", "install", "-y", "-qq", "slurm-wlm", "munge", env=env, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"apt-get install slurm-wlm munge failed:\n{result.stderr[-2000:]}")


def _pid(path: Path, timeout_s: float = 20.0) -> int:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text().strip())
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear: the daemon did not start")


@pytest.fixture
def slurm_cluster(tmp_path):
    _install()
    if SLURM_CONF.exists():
        pytest.skip(f"{SLURM_CONF} exists: not replacing a real cluster's configuration")
    host = socket.gethostname()
    state = tmp_path / "slurm"
    for sub in ("state", "spool", "log"):
        (state / sub).mkdir(parents=True)
    started: list[int] = []
    written: list[Path] = []
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(
        f"""ClusterName=cardiotwin-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/state
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MinJobAge=600
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    written.append(SLURM_CONF)
    GRES_CONF.write_text(f"AutoDetect=off\nNodeName={host} Name=gpu File=/dev/null\n")
    written.append(GRES_CONF)
    try:
        if _run("pgrep", "-x", "munged").returncode != 0:
            if not MUNGE_KEY.exists():
                _run("mungekey", "--create", timeout=30)
                shutil.chown(MUNGE_KEY, "munge", "munge")
                MUNGE_KEY.chmod(0o400)
            Path("/run/munge").mkdir(exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            _run("su", "-s", "/bin/sh", "munge", "-c", "munged --force", timeout=30)
            started.append(_pid(Path("/run/munge/munged.pid")))
        result = _run("slurmctld", "-i", timeout=30)
        assert result.returncode == 0, result.stderr
        started.append(_pid(state / "slurmctld.pid"))
        result = _run("slurmd", timeout=30)
        assert result.returncode == 0, result.stderr
        started.append(_pid(state / "slurmd.pid"))
        end = time.monotonic() + 60
        while "idle" not in _run("sinfo", "-h", "-o", "%T", timeout=30).stdout:
            if time.monotonic() > end:
                log = (state / "log" / "slurmd.log").read_text()[-2000:]
                raise AssertionError(f"the SLURM node never became idle:\n{log}")
            time.sleep(1)
        yield state
    finally:
        for pid in reversed(started):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for path in written:
            path.unlink(missing_ok=True)


def test_cohort_on_slurm(slurm_cluster, tmp_path):
    sheet = tmp_path / "cohort.tsv"
    sheet.write_text(
        "case_id\tkind\tlge\twall\tblood\n"
        + "".join(
            f"{c}\tventricle\t{SAMPLES / c / 'lge.nii.gz'}\t{SAMPLES / c / 'wall.nii.gz'}\t-\n"
            for c in ("lv-infarct", "lv-healthy")
        )
    )
    config = tmp_path / "config.yaml"
    # one simulation thread: SLURM must be asked for what the job runs (the profile once
    # asked every job for 2 CPUs whatever simulation_threads said)
    config.write_text(
        f"config_version: 1\nworkflow:\n  cohort: {sheet}\n  results: results\n"
        "  simulation_threads: 1\n" + TEST_SETTINGS
    )
    # the project's SLURM profile, with this one-node cluster's partition, time and memory
    # (the profile's per-rule memory is more than the node has)
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
        "--profile", str(ROOT / "configs" / "profiles" / "slurm"),
        "--jobs", "4", "--configfile", str(config), "--retries", "0",
        "--slurm-status-command", "squeue", "--slurm-no-account", "--latency-wait", "10",
        "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "3",
        "--default-resources", "slurm_partition=debug", "runtime=20", "mem_mb=1000",
        "--set-resources", "mesh:mem_mb=1000", "induce:mem_mb=1000", "ablate:mem_mb=1000",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for case in ("lv-infarct", "lv-healthy"):
        assert (tmp_path / "results" / case / "report" / "report.pdf").is_file()
    jobs = _run("scontrol", "show", "job", "-o", timeout=30).stdout.splitlines()
    assert jobs, "no job visible to scontrol (MinJobAge=600 should keep finished ones)"
    asked = {}
    for line in jobs:
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        assert fields["JobState"] == "COMPLETED", line
        rule = fields.get("Comment", "").removeprefix("rule_").split("_wildcards")[0]
        asked[rule] = asked.get(rule, False) or "gpu" in fields.get("TresPerNode", "") + fields.get(
            "TresPerJob", ""
        )
        assert fields["NumCPUs"] == "1", f"rule {rule} asked for {fields['NumCPUs']} CPUs"
    assert set(asked) >= {"segment", "mesh", "report", "cohort_summary"}, asked
    for rule, gpu in asked.items():
        assert gpu == (rule in GPU_RULES), f"rule {rule} asked for a GPU: {gpu}"
