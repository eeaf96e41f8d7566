"""The warm server (issue 10): tools run through it behave byte for byte as cold starts, signals and
processes are handled as for a cold tool, the server is safe and serves many clients.

Each shell case runs twice, with KERASH_WARM=0 (cold) and KERASH_WARM=1 (warm, which would say on
standard error if a run went cold), and the two runs must print the same bytes and exit alike."""

import errno
import marshal
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from conftest import BIN, ROOT, children, run, savetxt, start_warm_server, stop_warm_server, tool_env
from kerash.warm.server import SPARES

XOR = "/uniform -1 1,uniform -1 1/\n2 1 1\ninput\ndense 3 tanh\ndense 1 sigmoid\nloss mse\n"


def served(env):
    """Runs served so far by the server `env` reaches."""
    out = run(["kerash", "warm", "status"], env=env).stdout.decode()
    return int(re.search(r"(\d+) runs served", out)[1])


def server_pid(env):
    out = run(["kerash", "warm", "status"], env=env).stdout.decode()
    return int(re.search(r"pid (\d+)", out)[1])


def socket_path(env):
    out = run(["kerash", "warm", "status"], env=env).stdout.decode()
    return re.search(r"socket (\S+),", out)[1]


@pytest.fixture(scope="module")
def server():
    """A private server for this module, with buffered standard streams (as Python's default, without -u)."""
    folder = tempfile.mkdtemp(prefix="kerash-warm-", dir="/tmp")
    base = {k: v for k, v in tool_env().items() if k != "PYTHONUNBUFFERED"}
    env = start_warm_server(folder, base)
    yield env
    stop_warm_server(env)
    os.rmdir(folder)


@pytest.fixture
def warm_folder():
    """A private, short socket folder; whatever server a failing test leaves in it is stopped."""
    folder = tempfile.mkdtemp(prefix="kerash-warm-", dir="/tmp")
    yield folder
    run(["kerash", "warm", "stop"], env=tool_env(KERASH_WARM_DIR=folder), check=False)
    shutil.rmtree(folder, ignore_errors=True)


def cold_env(env, **extra):
    return dict(env, KERASH_WARM="0", **{k: str(v) for k, v in extra.items()})


def warm_env(env, **extra):
    return dict(env, KERASH_WARM="1", **{k: str(v) for k, v in extra.items()})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder with a few tensors, a bad file, a sub-folder and a model to train."""
    folder = tmp_path_factory.mktemp("battery")
    rng = np.random.default_rng(7)
    savetxt(folder / "a.txt", rng.normal(size=(3, 2)))
    np.save(folder / "b.npy", rng.normal(size=(2, 4)))
    (folder / "bad.txt").write_text("1 2\n3\n")
    (folder / "sub").mkdir()
    savetxt(folder / "x.txt", np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
    savetxt(folder / "y.txt", np.array([[0], [1], [1], [0]]))
    (folder / "xor.model").write_text(XOR)
    run(["model-init", "xor.model", "-o", "xor", "--seed", "3"], cwd=folder)
    return folder


def cases(*commands):
    """A bash script running each command, with a marker and its exit status on both outputs."""
    lines = []
    for i, command in enumerate(commands):
        lines.append(f"echo '## {i}: {command}'; echo '## {i}' >&2")
        lines.append(f"{command}\necho \"status $?\"")
    return "\n".join(lines)


def same_cold_and_warm(script, env, cwd, **extra):
    """Run `script` cold and warm; they must print the same bytes and exit alike.  Returns the warm run."""
    before = served(env)
    cold = run(script, env=cold_env(env, **extra), cwd=cwd, check=False)
    warm = run(script, env=warm_env(env, **extra), cwd=cwd, check=False)
    assert warm.stdout.decode() == cold.stdout.decode()
    assert warm.stderr.decode() == cold.stderr.decode()
    assert warm.returncode == cold.returncode
    assert served(env) > before  # it did run warm
    return warm


# ---------------------------------------------------------------- the shell battery


def test_pipes_and_descriptors(server, files):
    script = cases(
        "matrix-create 3 2 --fill 1.5 | cat",
        "matrix-mul - b.npy < a.txt | matrix-apply tanh | matrix-scale 2 | matrix-transpose | matrix-sum --axis 0",
        "matrix-add a.txt <(matrix-scale 2 a.txt)",
        "matrix-mul a.txt b.npy -o out.npy && od -c out.npy | tail -3 && rm out.npy",
        "{ matrix-transpose a.txt >&3; } 3> fd3.txt; cat fd3.txt",
        "matrix-transpose /dev/fd/5 5< a.txt",
        "{ read first; matrix-transpose; } < a.txt",  # the shell's read moved the shared file offset
        "matrix-create 3000 300 --fill 1.5 | head -1 | wc -c; echo \"${PIPESTATUS[0]}\"",
        "cd sub && (umask 027; matrix-transpose ../a.txt -o ../rel.txt) && cd .. && stat -c %a rel.txt && rm rel.txt",
        "KERASH_FORMAT=npy matrix-transpose a.txt | od -c | head -3",
        "kerash matrix-transpose --version; matrix-mul --help | head -4",
    )
    same_cold_and_warm(script, server, files)


def test_closed_descriptors_and_full_disk(server, files):
    script = cases(
        "matrix-transpose <&-",
        "matrix-transpose a.txt >&-",
        "matrix-transpose nowhere.txt 2>&-",
        "matrix-create 2 2 > /dev/full",
        "matrix-create 300 300 --fill 1 > /dev/full",
    )
    same_cold_and_warm(script, server, files)


def test_errors_of_every_kind(server, files):
    script = cases(
        "matrix-transpose bad.txt 2>&1 | cat",
        "matrix-transpose nowhere.txt",
        "matrix-mul a.txt a.txt",
        "matrix-mul - - < a.txt",
        "matrix-add --frobnicate a b",
        "kerash matrix-mull",
        "predict nowhere a.txt",
        "KERASH_WORKDIR=a.txt/work train xor -x x.txt -y y.txt --epochs 1 --workers 2",
        "cp -r xor t && KERASH_WORKDIR=$PWD/work train t -x x.txt -y y.txt --epochs 2 --workers 2 | cut -f 1-6;"
        " ls -A work; rm -r t work",
    )
    same_cold_and_warm(script, server, files)


def test_progress_bar_on_a_terminal(server, files, tmp_path):
    """train draws its bar when standard error is a terminal; warm and cold draw the same bytes."""
    outputs = []
    for env in (cold_env(server), warm_env(server)):
        shutil.copytree(files / "xor", tmp_path / "m", symlinks=True, dirs_exist_ok=True)
        master, slave = os.openpty()
        proc = subprocess.Popen(["train", str(tmp_path / "m"), "-x", "x.txt", "-y", "y.txt", "--epochs", "3",
                                 "--batch-size", "1"], cwd=files, env=env, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError as e:  # EIO: every writer closed the terminal
                assert e.errno == errno.EIO
                break
            if not chunk:
                break
            err += chunk
        os.close(master)
        out = proc.stdout.read()
        assert proc.wait() == 0
        # the last column is the epoch's duration
        outputs.append((re.sub(rb"\t[0-9.e-]+\n", b"\t-\n", out), err))
        shutil.rmtree(tmp_path / "m")
    assert outputs[0] == outputs[1]
    assert b"\repoch 3 [" in outputs[1][1] and outputs[1][0].count(b"\n") == 4


def test_settings_read_at_start_up_make_the_run_cold(server, files):
    """What a forked child cannot change goes cold, says why (KERASH_WARM=1), and gives the cold result."""
    cold = run(["matrix-transpose", "a.txt"], env=cold_env(server), cwd=files)
    settings = [
        ({"PYTHONHASHSEED": "1"}, "PYTHONHASHSEED differs"),
        ({"LC_ALL": "C"}, "LC_ALL differs"),
        ({"OPENBLAS_CORETYPE": "Haswell"}, "OPENBLAS_CORETYPE differs"),
        ({"PYTHONPATH": str(files)}, "PYTHONPATH differs"),
        ({"KERASH_DEBUG": "1"}, "KERASH_DEBUG is set"),
        ({"PMI_RANK": "0"}, "an MPI rank"),
    ]
    for extra, reason in settings:
        warm = run(["matrix-transpose", "a.txt"], env=warm_env(server, **extra), cwd=files)
        assert warm.stdout == cold.stdout
        assert warm.stderr.decode().startswith(f"matrix-transpose: cold start: {reason}"), warm.stderr
    warm = run("ulimit -v 8000000; matrix-transpose a.txt", env=warm_env(server), cwd=files)
    assert warm.stdout == cold.stdout
    assert warm.stderr.startswith(b"matrix-transpose: cold start: a memory limit (ulimit -v or -d)")
    if len(os.sched_getaffinity(0)) > 1:
        one_cpu = {min(os.sched_getaffinity(0))}
        warm = subprocess.run(["matrix-transpose", "a.txt"], env=warm_env(server), cwd=files, capture_output=True,
                              preexec_fn=lambda: os.sched_setaffinity(0, one_cpu))
        assert warm.stdout == cold.stdout
        assert warm.stderr.startswith(b"matrix-transpose: cold start: CPU affinity differs")


# ---------------------------------------------------------------- the process a warm run gets


def _state(pid):
    """The scheduler state letter of `pid` (R, S, T, Z…), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _wait_until(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _gone(pid):
    return _state(pid) in (None, "Z")


def _held_pipe_tool(env, cwd=None, preexec=None, pass_fds=()):
    """`matrix-transpose` blocked reading a pipe we hold: (launcher, pipe write end, pipe inode)."""
    r, w = os.pipe()
    proc = subprocess.Popen(["matrix-transpose"], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, env=env, preexec_fn=preexec, pass_fds=pass_fds)
    os.close(r)
    return proc, w, os.fstat(w).st_ino


def _free_fd(low=30):
    for fd in range(low, 1000):
        try:
            os.fstat(fd)
        except OSError:
            return fd


def _readers(inode):
    """Processes with the pipe `inode` on descriptor 0."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/fd/0") == f"pipe:[{inode}]":
                found.append(int(pid))
        except OSError:
            pass
    return found


def _tool_process(proc, inode, env):
    """The process running the tool: the launcher itself when cold, the server's child when warm."""
    if env["KERASH_WARM"] == "0":
        return proc.pid
    found = []
    _wait_until(lambda: found.extend(p for p in _readers(inode) if p != proc.pid) or found)
    return found[0]


def _blocked_in_read(pid):
    """Wait until the tool has started and waits for its input."""

    def reading():
        with open(f"/proc/{pid}/wchan") as f:
            return "pipe" in f.read()

    _wait_until(reading)


def _process_state(pid):
    """What a tool process inherits: signal masks, umask, limits, descriptors, folder, priority, CPUs."""
    with open(f"/proc/{pid}/status") as f:
        status = {k: v.strip() for k, v in (line.split(":", 1) for line in f)}
    with open(f"/proc/{pid}/limits") as f:
        limits = f.read()
    fds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        # pipes are the test's own per run; files must be the same file at the same offset
        fds[int(fd)] = ("pipe" if target.startswith("pipe:") else target, info["pos"].strip(), info["flags"].strip())
    with open(f"/proc/{pid}/stat") as f:
        nice = f.read().rsplit(")", 1)[1].split()[16]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = [arg for arg in f.read().split(b"\0") if arg]
    keys = ("Name", "SigBlk", "SigIgn", "SigCgt", "Umask", "Cpus_allowed_list", "Uid", "Gid", "Groups")
    return {k: status[k] for k in keys}, limits, fds, os.readlink(f"/proc/{pid}/cwd"), nice, cmdline


def test_a_warm_tool_inherits_what_a_cold_one_does(server, files):
    """Descriptors (numbers, files, offsets, flags), signal dispositions and mask, umask, limits, folder, nice,
    command line and name (as ps shows them)."""
    with open(files / "a.txt", "rb") as extra:
        extra.read(5)
        fd = os.dup2(extra.fileno(), _free_fd())  # an extra inherited descriptor, at an offset

        def preexec():
            os.umask(0o027)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            resource.setrlimit(resource.RLIMIT_NOFILE, (200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            os.nice(2)

        states, outputs = [], []
        for env in (cold_env(server), warm_env(server)):
            proc, w, inode = _held_pipe_tool(env, files / "sub", preexec, (fd,))
            pid = _tool_process(proc, inode, env)
            _blocked_in_read(pid)
            states.append(_process_state(pid))
            os.write(w, b"1 2 3\n")
            os.close(w)
            outputs.append((proc.stdout.read(), proc.stderr.read(), proc.wait()))
        os.close(fd)
    assert states[1] == states[0]
    assert outputs[1] == outputs[0] == (b"1\n2\n3\n", b"", 0)


# ---------------------------------------------------------------- signals and processes


def _warm_child(server_env, launcher):
    """The server's child running the launcher's tool (it has the launcher's standard input)."""
    target = os.readlink(f"/proc/{launcher}/fd/0")
    found = []
    for pid in children(server_pid(server_env)):  # spare children have no standard input
        try:
            if os.readlink(f"/proc/{pid}/fd/0") == target:
                found.append(pid)
        except OSError:
            pass
    assert len(found) == 1, (found, target)
    return found[0]


BIG = "784 1 1\ninput\ndense 256 relu\ndense 256 relu\ndense 10 softmax\n"


@pytest.fixture
def big_model(tmp_path, server):
    """A model slow enough to be interrupted mid-epoch, its data, and a work folder."""
    (tmp_path / "big.model").write_text(BIG)
    run(["model-init", "big.model", "-o", "m", "--seed", "1"], cwd=tmp_path, env=warm_env(server))
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.random((600, 784)))
    np.savetxt(tmp_path / "y.txt", rng.integers(0, 10, size=(600, 1)), fmt="%d")
    (tmp_path / "work").mkdir()
    return tmp_path


def _train_on_a_terminal(folder, env):
    """A warm `train --workers 2` in its own session, with a terminal as controlling terminal on its standard input."""
    import fcntl
    import termios

    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["train", "m", "-x", "x.npy", "-y", "y.txt", "--epochs", "1000", "--batch-size", "8", "--workers", "2",
         "--seed", "5", "-q"],
        cwd=folder, env=warm_env(env, KERASH_WORKDIR=folder / "work"), stdin=slave, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    assert proc.stdout.readline().startswith(b"epoch\t")
    assert proc.stdout.readline().startswith(b"1\t")  # an epoch done: the workers run
    child = _warm_child(env, proc.pid)
    workers = children(child)
    assert workers  # forked by the tool: its coordinator computes a shard too
    return proc, master, child, workers


def _stopped_cleanly(proc, code, child, workers, folder):
    rest, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == code, err
    assert len(err.strip().splitlines()) == 1 and "saved" in err, err
    assert all(_gone(p) for p in workers)
    _wait_until(lambda: _gone(child), 5)  # it reported its status with its descriptors closed, then exited
    assert os.listdir(folder / "work") == []


def test_ctrl_c_and_ctrl_z_on_a_terminal_reach_the_warm_tool(big_model, server):
    proc, master, child, workers = _train_on_a_terminal(big_model, server)
    try:
        os.write(master, b"\x1a")  # Ctrl-Z: the terminal stops the launcher, which stops the tool's group
        _wait_until(lambda: all(_state(p) == "T" for p in [proc.pid, child, *workers]))
        os.killpg(proc.pid, signal.SIGCONT)  # as the shell's fg does
        _wait_until(lambda: all(_state(p) != "T" for p in [proc.pid, child, *workers]))
        os.write(master, b"\x03")  # Ctrl-C: SIGINT from the terminal, to the whole group as for a cold tool
        _stopped_cleanly(proc, 130, child, workers, big_model)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sigterm_to_the_launcher_stops_the_warm_tool_cleanly(big_model, server):
    proc, master, child, workers = _train_on_a_terminal(big_model, server)
    try:
        proc.send_signal(signal.SIGTERM)  # as kill does: the launcher only, passed on to the tool only
        _stopped_cleanly(proc, 143, child, workers, big_model)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1])
def test_the_launcher_dies_of_the_signal_that_killed_the_tool(server, tmp_path, sig):
    def no_core():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    codes = []
    for env in (cold_env(server), warm_env(server)):
        proc, w, inode = _held_pipe_tool(env, tmp_path, no_core)
        tool = _tool_process(proc, inode, env)
        _blocked_in_read(tool)
        proc.send_signal(sig)
        proc.communicate(timeout=30)
        os.close(w)
        codes.append(proc.returncode)
        assert _gone(tool)
    assert codes == [-sig, -sig]
    assert os.listdir(tmp_path) == []


def test_killing_the_launcher_kills_the_tool_and_killing_the_tool_ends_the_launcher(server, tmp_path):
    proc, w, inode = _held_pipe_tool(warm_env(server), tmp_path)
    tool = _tool_process(proc, inode, warm_env(server))
    proc.kill()
    proc.wait()
    _wait_until(lambda: _gone(tool), 5)
    os.close(w)

    proc, w, inode = _held_pipe_tool(warm_env(server), tmp_path)
    tool = _tool_process(proc, inode, warm_env(server))
    os.kill(tool, signal.SIGKILL)  # as the out-of-memory killer would
    proc.communicate(timeout=30)
    os.close(w)
    assert proc.returncode == -signal.SIGKILL
    assert "running: " in run(["kerash", "warm", "status"], env=server).stdout.decode()


# ---------------------------------------------------------------- safety


def _socket_files(folder):
    return sorted(os.listdir(folder))


def test_the_socket_is_private(server):
    folder = server["KERASH_WARM_DIR"]
    assert os.stat(folder).st_mode & 0o777 == 0o700
    for name in _socket_files(folder):
        st = os.stat(os.path.join(folder, name))
        assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o600, name
    assert sorted(n.rsplit(".", 1)[1] for n in _socket_files(folder)) == ["lock", "sock"]


def test_a_folder_others_can_enter_is_refused(warm_folder):
    folder = warm_folder
    os.chmod(folder, 0o755)
    env = tool_env(KERASH_WARM_DIR=folder)
    proc = run(["kerash", "warm", "start"], env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"kerash warm: error: {folder} is a folder of {_user(os.getuid())} with mode 0755, not a folder of yours with "
        "mode 0700 (another user may have made it first): set KERASH_WARM_DIR to a folder of your own, or remove it\n")
    assert os.listdir(folder) == []
    if os.getuid() == 0:  # a folder of another user
        os.chmod(folder, 0o700)
        os.chown(folder, 65534, 65534)
        proc = run(["kerash", "warm", "start"], env=env, check=False)
        assert proc.returncode == 1 and b"is a folder of nobody (uid 65534) with mode 0700" in proc.stderr


def _user(uid):
    import pwd

    return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_both_sides_check_the_other_users_id(server, tmp_path, warm_folder):
    nobody = 65534
    folder = warm_folder
    path = os.path.join(folder, os.path.basename(socket_path(server)))
    # A "server" of another user, its socket moved into our folder: the launcher refuses to send it anything.
    theirs = tempfile.mkdtemp(prefix="kerash-theirs-", dir="/tmp")
    os.chown(theirs, nobody, nobody)
    r, w = os.pipe()
    fake = subprocess.Popen(["python3", "-c", f"import os, socket, sys; os.setgid({nobody}); os.setuid({nobody}); "
                             f"s = socket.socket(socket.AF_UNIX); s.bind({theirs + '/s'!r}); s.listen(); "
                             f"os.write({w}, b'x'); c, _ = s.accept(); sys.exit(3 if c.recv(1) else 0)"], pass_fds=(w,))
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    os.rename(theirs + "/s", path)
    os.rmdir(theirs)
    try:
        (tmp_path / "a.txt").write_text("1 2\n")
        proc = run(["matrix-transpose", "a.txt"], env=warm_env(server, KERASH_WARM_DIR=folder), cwd=tmp_path)
        assert proc.stdout == b"1\n2\n"
        assert proc.stderr.decode() == f"matrix-transpose: cold start: {path} is served by another user\n"
        assert fake.wait(timeout=10) == 0  # it received nothing
    finally:
        if fake.poll() is None:
            fake.kill()
        fake.wait()
    # A client of another user reaching the server (its folder opened up for the test) gets no answer.
    folder = server["KERASH_WARM_DIR"]
    path = socket_path(server)
    os.chmod(folder, 0o711)
    os.chmod(path, 0o666)
    try:
        code = (f"import os, socket; os.setgid({nobody}); os.setuid({nobody}); s = socket.socket(socket.AF_UNIX); "
                f"s.connect({path!r}); print(len(s.recv(100)))")  # 0: the server hung up at once
        out = subprocess.run(["python3", "-c", code], capture_output=True, timeout=30)
        assert out.stdout == b"0\n", out.stderr
    finally:
        os.chmod(path, 0o600)
        os.chmod(folder, 0o700)


def test_a_stale_socket_is_reported_and_replaced(tmp_path, warm_folder):
    folder = warm_folder
    env = start_warm_server(folder)
    pid = server_pid(env)
    (tmp_path / "a.txt").write_text("1 2\n")
    proc, w, inode = _held_pipe_tool(warm_env(env), tmp_path)  # a run in flight
    tool = _tool_process(proc, inode, warm_env(env))
    spares = children(pid)
    os.kill(pid, signal.SIGSTOP)
    # A run the frozen server has not answered: it may start cold, since no child can have started it.
    waiting = subprocess.Popen(["matrix-transpose", "a.txt"], cwd=tmp_path, env=warm_env(env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: _gone(pid) and all(_gone(p) for p in spares), 10)
    assert tool in spares  # it died with the server, and its launcher says so
    assert proc.wait(timeout=10) == 1
    assert proc.stderr.read() == b"matrix-transpose: error: the warm server ended during the run\n"
    os.close(w)
    out, err = waiting.communicate(timeout=60)
    assert (waiting.returncode, out) == (0, b"1\n2\n")
    assert err.startswith(b"matrix-transpose: cold start: ")
    assert any(name.endswith(".sock") for name in os.listdir(folder))  # left behind
    proc = run(["matrix-transpose", "a.txt"], env=warm_env(env), cwd=tmp_path)
    assert proc.stdout == b"1\n2\n"
    assert proc.stderr.decode().startswith("matrix-transpose: cold start: no warm server (stale socket ")
    assert run(["kerash", "warm", "status"], env=env, check=False).returncode == 1
    start_warm_server(folder)
    before = served(env)
    assert run(["matrix-transpose", "a.txt"], env=warm_env(env), cwd=tmp_path).stderr == b""
    assert served(env) == before + 1
    stop_warm_server(env)
    assert os.listdir(folder) == []


def test_a_server_whose_kerash_files_change_refuses_and_exits(tmp_path, warm_folder):
    """A copy of the package (on PYTHONPATH) is another installation with its own server; edit it."""
    shutil.copytree(ROOT / "kerash", tmp_path / "copy" / "kerash", ignore=shutil.ignore_patterns("__pycache__"))
    env = start_warm_server(warm_folder, tool_env(PYTHONPATH=tmp_path / "copy"))
    (tmp_path / "a.txt").write_text("1 2\n")
    assert run(["matrix-transpose", "a.txt"], env=warm_env(env), cwd=tmp_path).stderr == b""
    assert served(env) == 1
    with open(tmp_path / "copy" / "kerash" / "cli" / "matrix.py", "a") as f:
        f.write("\n# edited\n")
    proc = run(["matrix-transpose", "a.txt"], env=warm_env(env), cwd=tmp_path)
    assert proc.stdout == b"1\n2\n"
    assert proc.stderr.decode() == (
        "matrix-transpose: cold start: kerash files changed since the warm server started (it stops now)\n")
    _wait_until(lambda: os.listdir(warm_folder) == [], 10)
    assert run(["kerash", "warm", "status"], env=env, check=False).returncode == 1


# ---------------------------------------------------------------- many clients


def _version_request(env):
    """A launcher's request for `kerash --version`, made by a python that has a console script's sys.path."""
    code = (f"import marshal, sys; sys.path[0] = {str(BIN)!r}; from kerash.warm import launch; "
            "sys.stdout.buffer.write(marshal.dumps(launch._request('kerash', [0, 1, 2], [])))")
    out = subprocess.run([str(BIN / "python3"), "-c", code], env=env, capture_output=True, check=True).stdout
    return dict(marshal.loads(out), argv=["kerash", "--version"])


class _Clients:
    """Launchers played by this process: each run's output goes to one pipe, read back here."""

    def __init__(self, env):
        from kerash.warm import launch

        self.launch, self.path, self.request = launch, socket_path(env), _version_request(env)
        self.out_r, self.out_w = os.pipe()
        self.null = os.open(os.devnull, os.O_RDWR)
        self.cwd = os.open("/", os.O_PATH)

    def send(self):
        """Hand a run over as a launcher does: "run", the server's "ready", then "go"."""
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(self.path)
        self.launch.send_frame(sock, ("run", self.request))
        ready = self.launch.recv_frame(sock)
        assert ready[0] == "ready", ready
        self.launch.send_frame(sock, ("go",), [self.null, self.out_w, self.null, self.cwd])
        return sock

    def finish(self, sock):
        frame = self.launch.recv_frame(sock)
        sock.close()
        assert frame == ("exit", 0), frame
        assert os.read(self.out_r, 13) == b"kerash 0.1.0\n"

    def close(self):
        for fd in (self.out_r, self.out_w, self.null, self.cwd):
            os.close(fd)


def test_two_hundred_clients_at_once(server):
    clients = _Clients(server)
    before = served(server)
    socks = [clients.send() for _ in range(200)]
    for sock in socks:
        clients.finish(sock)
    clients.close()
    assert served(server) == before + 200


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read())[1])


def test_memory_stays_flat(server):
    """The server's memory and descriptors do not grow with the runs it serves
    (KERASH_WARM_SOAK=10000 makes it a longer soak)."""
    runs = int(os.environ.get("KERASH_WARM_SOAK", "300"))
    clients, pid = _Clients(server), server_pid(server)

    def settled():  # no run left, every spare child forked
        _wait_until(lambda: len(children(pid)) == SPARES)
        time.sleep(0.1)
        return _rss_kb(pid), sorted(os.listdir(f"/proc/{pid}/fd"))

    for _ in range(50):  # caches and allocator pools settle
        clients.finish(clients.send())
    rss, fds = settled()
    for _ in range(runs):
        clients.finish(clients.send())
    clients.close()
    rss_after, fds_after = settled()
    print(f"server RSS {rss} kB, {rss_after - rss:+} kB after {runs} more runs")
    assert rss_after - rss < 512
    assert len(fds_after) == len(fds)


# ---------------------------------------------------------------- the server's life


def test_stop_ends_the_running_tools_and_idle_servers_exit(tmp_path, warm_folder):
    folder = warm_folder
    env = start_warm_server(folder)
    again = run(["kerash", "warm", "start"], env=env).stdout.decode()  # one server per installation
    assert again.startswith(f"kerash warm: already running: pid {server_pid(env)}")
    proc, w, inode = _held_pipe_tool(warm_env(env), tmp_path)
    tool = _tool_process(proc, inode, warm_env(env))
    spares = [p for p in children(server_pid(env)) if p != tool]
    stop_warm_server(env)  # returns once the server and its children are gone
    assert proc.wait(timeout=10) == -signal.SIGTERM
    os.close(w)
    assert all(_gone(p) for p in [tool, *spares])
    assert os.listdir(folder) == []

    run(["kerash", "warm", "start", "--idle", "1s"], env=env)
    pid = server_pid(env)
    assert run(["matrix-transpose", "-"], input="1 2\n", env=warm_env(env)).stdout == b"1\n2\n"
    _wait_until(lambda: _gone(pid), 10)
    assert os.listdir(folder) == []
    proc = run(["kerash", "warm", "start", "--idle", "soon"], env=env, check=False)
    assert proc.returncode == 2 and b"--idle wants a duration" in proc.stderr


# ---------------------------------------------------------------- issue 19: what a warm run must not do


def _launcher_python(code, env, **kw):
    """Run `code` in a python that has a console script's sys.path (so that the server accepts its requests)."""
    return subprocess.run([str(BIN / "python3"), "-c", f"import sys; sys.path[0] = {str(BIN)!r}\n{code}"],
                          env=env, capture_output=True, **kw)


def _socket_file(folder):
    """The path of this installation's socket in `folder`, as the launchers compute it."""
    out = _launcher_python("from kerash.warm import launch; print(launch.socket_path())",
                           tool_env(KERASH_WARM_DIR=folder), check=True)
    return out.stdout.decode().strip()


def _bare_server():
    """A server with only what _cold_reason reads; the test process plays its own launcher."""
    from kerash.warm import launch
    from kerash.warm.server import Server

    server = Server.__new__(Server)
    server.stopping = None
    server.env = dict(os.environb)
    server.startup_keys = set()
    server.identity = launch.identity()
    server.code_paths, server.code_stamp = [], []
    return server


def test_another_root_namespace_or_personality_makes_the_run_cold():
    """chroot, unshare and setarch give a run another view of the system than the server's children have."""
    import copy

    from kerash.warm import launch

    server = _bare_server()
    request = launch._request("matrix-transpose", [0, 1, 2], [])
    assert server._cold_reason(request, os.getpid()) is None
    assert set(request["identity"]["namespaces"]) == set(os.listdir("/proc/self/ns"))

    def reason(key, value, ns=None):
        changed = copy.deepcopy(request)
        if ns:
            changed["identity"]["namespaces"][ns] = value
        else:
            changed["identity"][key] = value
        return server._cold_reason(changed, os.getpid()) or ""

    assert "root folder" in reason("root", (0, 0))
    for ns in os.listdir("/proc/self/ns"):  # mnt, pid, user, net, uts, ipc, cgroup, time…
        assert f"{ns} namespace" in reason(None, f"{ns}:[1]", ns), ns
    assert "personality" in reason("personality", b"00040000\n")


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("unshare"), reason="needs root to chroot and mount")
def test_a_chrooted_launcher_does_not_reach_the_files_outside(tmp_path):
    """chroot JAIL matrix-transpose FILE -o OUT, with FILE and OUT outside the jail, runs cold (where they do not
    exist) and never in a server's child, which sees the real root.  In a mount namespace of its own, where
    /proc is mounted in the jail and the server runs too, so that only the root differs."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here")
    jail = tempfile.mkdtemp(prefix="kerash-jail-", dir="/tmp")  # short: the socket path is limited
    try:
        os.mkdir(os.path.join(jail, "proc"))
        os.mkdir(os.path.join(jail, "w"), 0o700)
        (tmp_path / "f.txt").write_text("1 2\n")
        out = tmp_path / "out.txt"
        code = (f"import os, sys, resource\nsys.path[0] = {str(BIN)!r}\n"  # resource: imported before the chroot
                "from kerash.warm import launch\n"
                f"os.chroot({jail!r}); os.chdir('/'); os.environ['KERASH_WARM_DIR'] = '/w'\n"
                f"sys.argv = ['matrix-transpose', {str(tmp_path / 'f.txt')!r}, '-o', {str(out)!r}]\n"
                "print(launch.warm('matrix-transpose')); sys.exit(3)")
        script = (f"mount -t proc proc {jail}/proc && kerash warm start --idle 5m >/dev/null || exit 1\n"
                  f'{BIN}/python3 -c "$CODE"; status=$?\n'
                  "kerash warm stop >/dev/null; exit $status")
        env = tool_env(KERASH_WARM_DIR=os.path.join(jail, "w"), KERASH_WARM="1", CODE=code)
        proc = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script], env=env,
                              capture_output=True, timeout=120)
        assert proc.returncode == 3, proc.stderr
        assert b"another root folder" in proc.stdout, proc.stdout
        assert not out.exists()
    finally:
        run(["kerash", "warm", "stop"], env=tool_env(KERASH_WARM_DIR=os.path.join(jail, "w")), check=False)
        shutil.rmtree(jail, ignore_errors=True)


def test_the_default_socket_folder_is_the_users_runtime_folder(monkeypatch, tmp_path):
    from kerash.warm import launch

    monkeypatch.delenv("KERASH_WARM_DIR", raising=False)
    runtime = tmp_path / "run"
    runtime.mkdir()
    os.chmod(runtime, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert launch.socket_dir() == f"{runtime}/kerash-warm"
    os.chmod(runtime, 0o755)  # not private: not used
    assert launch.socket_dir() == f"/tmp/kerash-warm-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/run")
    assert launch.socket_dir() == f"/tmp/kerash-warm-{os.getuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert launch.socket_dir() == f"/tmp/kerash-warm-{os.getuid()}"
    monkeypatch.setenv("KERASH_WARM_DIR", str(tmp_path))
    assert launch.socket_dir() == str(tmp_path)


def test_a_socket_folder_that_is_not_private_is_never_used(tmp_path, warm_folder):
    """Another user can make the shared socket folder first, open to all or their own: the launcher never
    connects through it (it runs cold) and `kerash warm start` says what is wrong and what to do."""
    folder = warm_folder
    (tmp_path / "a.txt").write_text("1 2\n")
    env = warm_env(tool_env(KERASH_WARM_DIR=folder))
    owners = [(0o777, os.getuid(), "0777")]
    if os.getuid() == 0:
        owners.append((0o700, 65534, "0700"))  # another user's
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(_socket_file(folder))  # a planted "server"
    listener.listen(8)
    listener.setblocking(False)
    try:
        for mode, uid, shown in owners:
            os.chmod(folder, mode)
            os.chown(folder, uid, -1)
            proc = run(["matrix-transpose", "a.txt"], env=env, cwd=tmp_path, timeout=30)
            assert proc.stdout == b"1\n2\n"
            err = proc.stderr.decode()
            assert err.startswith(f"matrix-transpose: cold start: {folder} ") and f"mode {shown}" in err, err
            with pytest.raises(BlockingIOError):
                listener.accept()  # nobody connected
            proc = run(["kerash", "warm", "start"], env=tool_env(KERASH_WARM_DIR=folder), check=False, timeout=60)
            err = proc.stderr.decode()
            assert proc.returncode == 1 and len(err.splitlines()) == 1, err
            assert err.startswith(f"kerash warm: error: {folder} ") and "KERASH_WARM_DIR" in err, err
            assert f"uid {uid}" in err and f"mode {shown}" in err, err
    finally:
        listener.close()
        os.chown(folder, os.getuid(), -1)
        os.chmod(folder, 0o700)


def test_a_listener_with_a_full_queue_does_not_hang_the_tools(tmp_path, warm_folder):
    (tmp_path / "a.txt").write_text("1 2\n")
    path = _socket_file(warm_folder)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)  # never accepts
    queued = []
    try:
        while True:
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            queued.append(sock)
            try:
                sock.connect(path)
            except BlockingIOError:
                break
        start = time.monotonic()
        proc = run(["matrix-transpose", "a.txt"], env=warm_env(tool_env(KERASH_WARM_DIR=warm_folder)), cwd=tmp_path,
                   timeout=30)
        assert time.monotonic() - start < 10
        assert proc.stdout == b"1\n2\n"
        assert proc.stderr.decode().startswith("matrix-transpose: cold start: "), proc.stderr
    finally:
        for sock in [*queued, listener]:
            sock.close()


def test_a_stopped_server_neither_hangs_a_tool_nor_runs_it_later(tmp_path, warm_folder):
    """The launcher gives up on a server that does not answer and runs cold; the server, woken up, must not
    run it too (a run starts only once its launcher has committed to it)."""
    env = start_warm_server(warm_folder)
    pid = server_pid(env)
    (tmp_path / "a.txt").write_text("1 2\n")
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        proc = run("matrix-transpose a.txt >> log.txt", env=warm_env(env), cwd=tmp_path, timeout=30)
        assert time.monotonic() - start < 10
        assert proc.stderr.decode().startswith("matrix-transpose: cold start: the warm server did not answer"), \
            proc.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(1)  # time for a late run to show
    assert (tmp_path / "log.txt").read_bytes() == b"1\n2\n"
    assert served(env) == 0
    assert run(["matrix-transpose", "a.txt"], env=warm_env(env), cwd=tmp_path).stderr == b""
    assert served(env) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_end_a_run_whose_server_is_stopped(tmp_path, warm_folder, sig):
    """A stopped server relays nothing: the launcher, unanswered, signals the tool itself and exits as it does."""
    env = start_warm_server(warm_folder)
    codes = []
    for mode in (cold_env(env), warm_env(env)):
        proc, w, inode = _held_pipe_tool(mode, tmp_path)
        tool = _tool_process(proc, inode, mode)
        _blocked_in_read(tool)
        pid = server_pid(env)
        if mode["KERASH_WARM"] == "1":
            os.kill(pid, signal.SIGSTOP)
        try:
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=20)
            codes.append((proc.returncode, out, err))
            assert _state(tool) in (None, "Z")  # ended; its stopped parent has not reaped it
        finally:
            os.kill(pid, signal.SIGCONT)
            os.close(w)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes[1] == codes[0]
    assert "running: " in run(["kerash", "warm", "status"], env=env).stdout.decode()


def _live(cmdline):
    """Pids of running (not zombie) processes whose command line is `cmdline`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:-1] == cmdline and not _gone(int(pid)):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_timeout_ends_the_tools_children_as_it_does_cold(server, files):
    """timeout signals its whole process group; the children a warm tool starts must get it as a cold tool's do."""
    for env, marker in ((cold_env(server), b"3141"), (warm_env(server), b"3142")):
        try:
            # the outputs are no pipe: one would stay open as long as the children live
            proc = run(f"timeout 3 kerash snapshot xor -- sh -c 'sleep {marker.decode()} | cat' >/dev/null 2>&1",
                       env=env, cwd=files, check=False, timeout=60)
            assert proc.returncode == 124, proc.stderr
            _wait_until(lambda: not _live([b"sleep", marker]), 5)
        finally:
            for pid in _live([b"sleep", marker]):
                os.kill(pid, signal.SIGKILL)


def test_a_slow_group_signaller_still_ends_the_tools_children(server, files):
    """timeout(1) signals the tool, then ignores the signal, then signals its group: slowed down between the two
    (a loaded machine), the warm launcher must not end with its child before the group signal reaches the rest."""
    # a timeout(1) that is preempted between its two kill()s, in a process group of its own
    slow_timeout = """if 1:
        import os, signal, subprocess, sys, time
        tool = subprocess.Popen(sys.argv[2:])
        while subprocess.run(["pgrep", "-x", "-f", "sleep " + sys.argv[1]], stdout=subprocess.DEVNULL).returncode:
            time.sleep(0.02)
        os.kill(tool.pid, signal.SIGTERM)
        time.sleep(0.05)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.kill(0, signal.SIGTERM)
        sys.exit(tool.wait() & 255)
    """
    for env, marker in ((cold_env(server), "3143"), (warm_env(server), "3144")):
        try:
            proc = subprocess.run(["setsid", sys.executable, "-c", slow_timeout, marker, "kerash", "snapshot", "xor",
                                   "--", "sh", "-c", f"sleep {marker} | cat"],
                                  env=env, cwd=files, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert proc.returncode == 256 - signal.SIGTERM, proc.returncode
            _wait_until(lambda: not _live([b"sleep", marker.encode()]), 5)
        finally:
            for pid in _live([b"sleep", marker.encode()]):
                os.kill(pid, signal.SIGKILL)


def test_few_descriptors_give_the_cold_result(server, files):
    """ulimit -n: the launcher needs descriptors of its own to hand a run over (below 5 the interpreter fails)."""
    for limit in (5, 6, 8):
        command = f"ulimit -n {limit}; matrix-transpose a.txt"
        cold = run(command, env=cold_env(server), cwd=files, check=False)
        warm = run(command, env=warm_env(server), cwd=files, check=False)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), (limit, warm.stderr)
        err = warm.stderr.decode()
        assert err == cold.stderr.decode() or (err.startswith("matrix-transpose: cold start: ")
                                               and err.split("\n", 1)[1] == cold.stderr.decode()), (limit, err)
        assert "Traceback" not in err


def test_io_priority_oom_score_and_personality_make_the_run_cold(server, files):
    """A forked child would keep the server's: the run goes cold, as it must to inherit the launcher's."""
    cold = run(["matrix-transpose", "a.txt"], env=cold_env(server), cwd=files)
    for command, reason in (("ionice -c 3 matrix-transpose a.txt", "I/O priority"),
                            ("echo 500 > /proc/self/oom_score_adj; matrix-transpose a.txt", "oom_score_adj"),
                            ('setarch "$(uname -m)" -R matrix-transpose a.txt', "personality")):
        warm = run(command, env=warm_env(server), cwd=files)
        assert warm.stdout == cold.stdout
        err = warm.stderr.decode()
        assert err.startswith("matrix-transpose: cold start: ") and reason in err, (command, err)


@pytest.mark.parametrize("mode", ["cold", "warm"])
def test_one_ctrl_d_ends_the_input_from_a_terminal(server, mode):
    """As for cat: ^D at the start of a line is the end of the input, the first time."""
    import fcntl
    import select
    import termios

    env = cold_env(server) if mode == "cold" else warm_env(server)
    master, slave = os.openpty()
    proc = subprocess.Popen(["matrix-transpose"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    try:
        os.write(master, b"1 2\n3 4\n\x04")  # one ^D; a terminal hands over a line per read, then the end
        out, deadline = b"", time.monotonic() + 20
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:  # EIO: the tool closed the terminal
                    break
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=1) == 0, out
        assert out.endswith(b"1 3\r\n2 4\r\n"), out
        if mode == "warm":
            assert b"cold start" not in out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_launcher_imports_nothing_slow(server, tmp_path):
    """Only modules built into the interpreter, _socket and resource are imported on the way to a warm run."""
    (tmp_path / "a.txt").write_text("1 2\n")
    code = ("import os\nbefore = set(sys.modules)\nfrom kerash.warm import launch\n"
            "def report(status):\n"
            "    print(sorted(set(sys.modules) - before), flush=True); os._exit(status >> 8)\n"
            "launch._exit_as = report\nsys.argv = ['matrix-transpose', 'a.txt']\n"
            "print(launch.warm('matrix-transpose'), flush=True); os._exit(7)")
    proc = _launcher_python(code, warm_env(server), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["1", "2"]
    imported = set(eval(lines[2])) - set(sys.builtin_module_names)
    assert imported <= {"kerash", "kerash.warm", "kerash.warm.launch", "_socket", "resource"}, imported
