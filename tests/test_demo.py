"""make demo's script and tmpfs_setup.sh leave no RAM disk or work folder behind unless asked to,
and --umount finds what was set up from any folder."""

import os

from conftest import ROOT, run, tool_env

SETUP = str(ROOT / "tmpfs_setup.sh")
DEMO = str(ROOT / "bin" / "demo")


def env(tmp_path, **extra):
    """Tools on PATH, no work folder yet, and a private record of what tmpfs_setup.sh made."""
    e = tool_env(XDG_RUNTIME_DIR=tmp_path, **extra)
    if "KERASH_WORKDIR" not in extra:
        e.pop("KERASH_WORKDIR", None)
    return e


def mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def workdir_of(proc):
    """The folder named by the export line tmpfs_setup.sh printed."""
    line = proc.stdout.decode().strip()
    assert line.startswith("export KERASH_WORKDIR="), line
    return line.split("=", 1)[1]


def test_umount_from_any_folder_undoes_what_setup_recorded(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    made = workdir_of(run([SETUP, "16m"], cwd=a, env=env(tmp_path)))
    assert os.path.isdir(made)
    record = tmp_path / f"kerash-tmpfs-{os.getuid()}.list"
    assert record.read_text().split(" ", 1)[1].strip() == made
    # as root the tmpfs is mounted in the folder it ran from; elsewhere a /dev/shm folder stands in
    assert mounted(made) == (made == str(a / "kerash_mountpoint"))
    again = run([SETUP, "16m"], cwd=a, env=env(tmp_path))  # harmless twice
    assert workdir_of(again) == made and record.read_text().count("\n") == 1
    proc = run([SETUP, "--umount"], cwd=b, env=env(tmp_path))
    assert proc.stdout.decode() == "unset KERASH_WORKDIR\n"
    assert not os.path.exists(made) and not mounted(made)
    assert not record.exists()


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
    run([SETUP, "--umount"], cwd=ROOT, env=env(tmp_path))
    assert not os.path.exists(kept)

    # a work folder of the caller's is theirs: used, never removed
    mine = tmp_path / "mine"
    mine.mkdir()
    proc = run([DEMO, "--out", str(tmp_path / "file" / "x")], cwd=tmp_path, env=env(tmp_path, KERASH_WORKDIR=mine),
               check=False)
    assert proc.returncode != 0 and "removed" not in proc.stdout.decode() and "kept" not in proc.stdout.decode()
    assert os.path.isdir(mine / "demo")
