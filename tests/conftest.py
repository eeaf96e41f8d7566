"""Fixtures, and running the installed tools as a user does, as subprocesses.

Found by every test under tests/ (unit/, tools/, system/); `from conftest import run, …` works from any of
them because pyproject.toml puts tests/ on the path.  Plain helpers that do not run a tool (weights(),
the model makers, naive oracles) are in helpers.py.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent

# Where tools look for a warm server (KERASH_WARM_DIR): never the user's.  By
# default a folder that does not exist, so tools start cold; the `start`
# fixture points it at a private server for its "warm" runs (and
# KERASH_TEST_WARM=1 for every test).
WARM = {"KERASH_WARM_DIR": f"/tmp/kerash-test-{os.getpid()}-no-server"}


# The environment tools get: as the suite started.  In-process tests change os.environ on the
# way (threadpoolctl sets KMP_DUPLICATE_LIB_OK), which would make tools differ from a warm server
# started earlier, and run cold.
START_ENV = dict(os.environ)


def tool_env(**extra):
    env = dict(START_ENV)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for name in ("KERASH_FORMAT", "KERASH_DEBUG", "KERASH_WARM"):
        env.pop(name, None)
    env.update(WARM)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_warm_server(folder, env=None):
    """Start a warm server for this installation with its socket in `folder`; returns the environment to reach it."""
    env = dict(env or tool_env(), KERASH_WARM_DIR=str(folder))
    run(["kerash", "warm", "start", "--idle", "30m"], env=env)  # gone in the end even if a test leaves it
    return env


def stop_warm_server(env):
    proc = run(["kerash", "warm", "stop"], env=env)
    assert proc.stdout.startswith(b"kerash warm: stopped"), proc.stdout


@pytest.fixture(scope="session")
def warm_server():
    """A private warm server for the whole session (one per xdist worker): its folder."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="kerash-warm-", dir="/tmp")  # short: socket paths are limited to 107 bytes
    env = start_warm_server(folder)
    yield folder
    stop_warm_server(env)
    os.rmdir(folder)


@pytest.fixture(scope="session", autouse=True)
def every_tool_warm(request):
    """KERASH_TEST_WARM=1 runs every test's tools through a private warm server (to time the suite warm)."""
    if os.environ.get("KERASH_TEST_WARM") == "1":
        WARM["KERASH_WARM_DIR"] = request.getfixturevalue("warm_server")


@pytest.fixture(params=["cold", "warm"])
def start(request):
    """Run the test's tools cold, then warm: through a warm server, saying on standard error if one started cold."""
    saved = dict(WARM)
    if request.param == "warm":
        WARM.update(KERASH_WARM_DIR=request.getfixturevalue("warm_server"), KERASH_WARM="1")
    else:
        WARM["KERASH_WARM"] = "0"
    yield request.param
    WARM.clear()
    WARM.update(saved)


# Runs every test of a module (pytestmark = warm_and_cold) or a test (@warm_and_cold) both cold and warm.
warm_and_cold = pytest.mark.usefixtures("start")


def run(args, input=None, cwd=None, env=None, check=True, timeout=120):
    """Run a tool (a list of arguments, or a shell string when it holds a pipe).

    Returns the CompletedProcess with bytes stdout/stderr.  With check=True a
    non-zero exit fails the test and shows standard error.
    """
    if isinstance(input, str):
        input = input.encode()
    shell = isinstance(args, str)
    proc = subprocess.run(
        args,
        input=input,
        capture_output=True,
        cwd=cwd,
        env=env or tool_env(),
        shell=shell,
        executable="/bin/bash" if shell else None,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{args!r} exited {proc.returncode}\nstderr:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


def parse(out):
    """A text tensor printed by a tool, read back with numpy (independently of kerash)."""
    text = out.decode() if isinstance(out, bytes) else out
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return np.array(rows, dtype=float)


def assert_one_line_error(proc, code, *fragments):
    """The tool failed with `code`, one line `TOOL: error: …` and no traceback."""
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ": error: " in lines[0], err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def savetxt(path, a):
    """Write a matrix as text with full precision (independently of kerash); returns the path."""
    np.savetxt(path, np.atleast_2d(a) if np.ndim(a) < 2 else a, fmt="%.17g")
    return path


def children(pid):
    """The pids of a process's children, read from /proc."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def alive(pid):
    """Running (a zombie has exited: it only waits for whoever adopted it to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def all_gone(pids, seconds=5.0):
    """Whether every one of `pids` has exited within `seconds`."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def regression_data(tmp_path):
    """(tmp_path, x, y): 40 samples of 3 features and 2 real targets near a linear map, as x.npy and y.npy."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(0, 0.1, size=(40, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path, x, y
