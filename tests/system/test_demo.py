"""make demo's script and tmpfs_setup.sh leave no RAM disk or work folder behind unless asked to,
and a bare --umount undoes only what was set up for its own folder."""

import os
from pathlib import Path

import pytest

from conftest import ROOT, run, tool_env

SETUP = str(ROOT / "tmpfs_setup.sh")
DEMO = str(ROOT / "bin" / "demo")


def env(tmp_path, **extra):
    """Tools on PATH, no work folder yet, and a private record of what tmpfs_setup.sh made."""
    e = tool_env(**{"XDG_RUNTIME_DIR": tmp_path, **extra})
    if "KERASH_WORKDIR" not in extra:
        e.pop("KERASH_WORKDIR", None)
    return e


def mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def setup_line(proc):
    """(folder, made) of the line tmpfs_setup.sh printed: `export KERASH_WORKDIR=DIR; KERASH_TMPFS_MADE=0|1`."""
    line = proc.stdout.decode()
    assert line.count("\n") == 1 and line.startswith("export KERASH_WORKDIR="), line
    folder, made = line.strip().removeprefix("export KERASH_WORKDIR=").rsplit("; KERASH_TMPFS_MADE=", 1)
    return folder, made == "1"


def workdir_of(proc):
    return setup_line(proc)[0]


def test_a_bare_umount_undoes_only_what_was_set_up_for_its_folder(tmp_path):
    """Issue 19: a bare --umount removed another checkout's RAM folder, with its contents."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = run([SETUP, "16m"], cwd=a, env=env(tmp_path))
    made_a, new = setup_line(first)
    assert os.path.isdir(made_a) and new
    assert f"--umount {made_a})" in first.stderr.decode()  # the undo it prints names the folder
    # as root the tmpfs is mounted in the folder it ran from; elsewhere a /dev/shm folder stands in
    assert mounted(made_a) == (made_a == str(a / "kerash_mountpoint"))
    record = tmp_path / f"kerash-tmpfs-{os.getuid()}.list"
    again = run([SETUP, "16m"], cwd=a, env=env(tmp_path))  # harmless twice
    assert setup_line(again) == (made_a, False) and record.read_text().count("\n") == 1
    made_b, _ = setup_line(run([SETUP, "16m"], cwd=b, env=env(tmp_path)))
    assert made_b != made_a
    (Path(made_a) / "precious").write_text("another checkout's work")

    proc = run([SETUP, "--umount"], cwd=b, env=env(tmp_path))
    assert proc.stdout.decode() == "unset KERASH_WORKDIR\n"
    assert not os.path.exists(made_b) and not mounted(made_b)
    assert (Path(made_a) / "precious").read_text() == "another checkout's work"
    proc = run([SETUP, "--umount"], cwd=b, env=env(tmp_path))  # nothing left for b: says so, removes nothing
    assert "nothing removed (1 other record(s): --all" in proc.stderr.decode()
    assert os.path.isdir(made_a)

    run([SETUP, "--umount", made_a], cwd=b, env=env(tmp_path))  # named: from any folder
    assert not os.path.exists(made_a) and not mounted(made_a) and not record.exists()


def test_a_work_folder_named_but_not_made_yet_is_created_and_then_undone_like_any(tmp_path):
    wanted = tmp_path / "not" / "yet"
    proc = run([SETUP], cwd=tmp_path, env=env(tmp_path, KERASH_WORKDIR=wanted))
    assert setup_line(proc) == (str(wanted), True) and wanted.is_dir()
    run([SETUP, "--umount", str(wanted)], cwd=ROOT, env=env(tmp_path))
    assert not wanted.exists() and (tmp_path / "not").is_dir()
    (tmp_path / "file").write_text("")
    proc = run([SETUP], cwd=tmp_path, env=env(tmp_path, KERASH_WORKDIR=tmp_path / "file" / "sub"), check=False)
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode() == f"tmpfs_setup: error: KERASH_WORKDIR={tmp_path}/file/sub cannot be created: Not a directory\n"


def test_umount_all_lists_what_it_removes_and_reads_old_records(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    made, _ = setup_line(run([SETUP, "16m"], cwd=a, env=env(tmp_path)))
    old = tmp_path / "old-style"
    old.mkdir()
    record = tmp_path / f"kerash-tmpfs-{os.getuid()}.list"
    with open(record, "a") as f:
        f.write(f"folder {old}\n")  # written by an earlier version: no owner, so no bare --umount takes it
    run([SETUP, "--umount"], cwd=tmp_path, env=env(tmp_path))
    assert old.is_dir() and os.path.isdir(made)
    proc = run([SETUP, "--all"], cwd=tmp_path, env=env(tmp_path))
    err = proc.stderr.decode()
    assert f"  folder {old}\n" in err and f"{made} (set up from {a})" in err
    assert not old.exists() and not os.path.exists(made) and not record.exists()


def test_demo_removes_its_work_folder_and_keeps_it_only_when_asked(tmp_path):
    out = tmp_path / "pictures"
    proc = run([DEMO, "--quick", "--out", str(out)], cwd=tmp_path, env=env(tmp_path), timeout=300)
    text = proc.stdout.decode()
    assert "accuracy" in text and sorted(os.listdir(out)) == ["curves.png", "digits-cnn-confusion.png",
                                                               "digits-mlp-confusion.png"]
    work = text.split("== work folder: ", 1)[1].split(" ", 1)[0].rsplit("/demo", 1)[0]
    assert text.rstrip().endswith(f"== removed the work folder {work} (bin/demo --keep keeps it)")
    assert not os.path.exists(work) and not mounted(work)
    assert not (tmp_path / f"kerash-tmpfs-{os.getuid()}.list").exists()

    # a failure after the set-up cleans up too; --keep keeps the folder and says how to remove it
    (tmp_path / "file").write_text("not a folder")
    proc = run([DEMO, "--out", str(tmp_path / "file" / "x")], cwd=tmp_path, env=env(tmp_path), check=False)
    assert proc.returncode != 0 and "removed the work folder" in proc.stdout.decode()
    assert not os.path.exists(tmp_path / "kerash_mountpoint")
    proc = run([DEMO, "--keep", "--out", str(tmp_path / "file" / "x")], cwd=tmp_path, env=env(tmp_path), check=False)
    kept = proc.stdout.decode().split("== kept the work folder ", 1)[1].split(" ", 1)[0]
    assert os.path.isdir(kept) and "--umount" in proc.stdout.decode()
    run([SETUP, "--umount"], cwd=tmp_path, env=env(tmp_path))
    assert not os.path.exists(kept)

    # a work folder of the caller's is theirs: used, never removed
    mine = tmp_path / "mine"
    mine.mkdir()
    proc = run([DEMO, "--out", str(tmp_path / "file" / "x")], cwd=tmp_path, env=env(tmp_path, KERASH_WORKDIR=mine),
               check=False)
    assert proc.returncode != 0 and "removed" not in proc.stdout.decode() and "kept" not in proc.stdout.decode()
    assert os.path.isdir(mine / "demo")


def test_demo_never_removes_a_work_folder_that_was_there_before(tmp_path):
    # set up by an earlier session, which still has files in it
    made, new = setup_line(run([SETUP, "16m"], cwd=tmp_path, env=env(tmp_path)))
    assert new
    try:
        with open(os.path.join(made, "precious"), "w") as f:
            f.write("x")
        proc = run([DEMO, "--quick", "--out", str(tmp_path / "pictures")], cwd=tmp_path, env=env(tmp_path), timeout=300)
        assert "was there before and stays" in proc.stdout.decode()
        assert os.listdir(made) == ["precious"]  # the demo's own folder gone, the rest untouched
    finally:
        run([SETUP, "--umount", made], cwd=ROOT, env=env(tmp_path))
    assert not os.path.exists(made)


def test_umount_of_a_busy_mount_fails_and_keeps_it_recorded(tmp_path):
    import subprocess

    made, _ = setup_line(run([SETUP, "16m"], cwd=tmp_path, env=env(tmp_path)))
    if not mounted(made):
        run([SETUP, "--umount"], cwd=tmp_path, env=env(tmp_path))
        pytest.skip("no mount without root here: a /dev/shm folder is removed whatever uses it")
    busy = subprocess.Popen(["sleep", "60"], cwd=made)
    try:
        proc = run([SETUP, "--umount"], cwd=tmp_path, env=env(tmp_path), check=False)
        assert proc.returncode == 1 and "cannot unmount" in proc.stderr.decode()
        assert mounted(made) and made in (tmp_path / f"kerash-tmpfs-{os.getuid()}.list").read_text()
    finally:
        busy.kill()
        busy.wait()
    run([SETUP, "--umount", made], cwd=ROOT, env=env(tmp_path))
    assert not mounted(made) and not os.path.exists(made)


def test_a_record_that_cannot_be_written_is_a_warning(tmp_path):
    proc = run([SETUP, "16m"], cwd=tmp_path, env=env(tmp_path, XDG_RUNTIME_DIR="/proc/nonexistent"))
    made, new = setup_line(proc)
    assert new and os.path.isdir(made) and "cannot write /proc/nonexistent" in proc.stderr.decode()
    if mounted(made):
        run(["umount", made])
        os.rmdir(made)
    else:
        import shutil

        shutil.rmtree(made)
