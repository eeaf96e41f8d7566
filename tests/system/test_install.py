"""pip install of the package, away from the checkout: the tools, shell programs, models, man pages and completion."""

import importlib.util
import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from conftest import ROOT, parse


def _can_build_offline():
    """Building the wheel without network needs setuptools with bdist_wheel (>= 70.1, or the wheel package)."""
    return bool(importlib.util.find_spec("wheel") or importlib.util.find_spec("setuptools.command.bdist_wheel"))


def _sh(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """A fresh venv with kerash installed from a wheel; numpy and typer come from the test venv's site-packages."""
    if not _can_build_offline():
        pytest.skip("setuptools without bdist_wheel: pip install -e '.[test]' brings a newer one")
    tmp = tmp_path_factory.mktemp("install")
    # Build from a copy of the files git knows (committed or not), so the checkout gets no build/ or egg-info.
    listed = _sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).split("\0")
    source = tmp / "source"
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes((ROOT / rel).read_bytes())
    _sh([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp / "wheel"), str(source)], cwd=tmp)
    venv = tmp / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # a path line, not a site folder: the test venv's own .pth files (its editable kerash) stay unread
    (site / "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((tmp / "wheel").glob("kerash-*.whl"))
    _sh([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
         "--no-index", str(wheel)])
    return venv


def _env(prefix):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASH_")}
    env.update(PATH=f"{prefix}/bin:/usr/bin:/bin", KERASH_WARM="0")  # only the installed tools
    return env


def test_installed_tools_train_with_shipped_models_from_any_folder(prefix, tmp_path):
    env = _env(prefix)

    def sh(script):
        return _sh(["bash", "-c", "set -euo pipefail\n" + script], cwd=tmp_path, env=env)

    assert sh("command -v pipeline-train forward-pipeline train kerash").split() == [
        f"{prefix}/bin/{n}" for n in ("pipeline-train", "forward-pipeline", "train", "kerash")]
    assert not (prefix / "bin" / "demo").exists()
    listing = sh("kerash models")
    assert "xor.model\t" in listing and "digits-mlp.model\t" in listing and "echo-elman.mdl\t" in listing
    assert sh("kerash models --path").strip().startswith(str(prefix / "lib"))
    assert sh("kerash models xor") == (ROOT / "models" / "xor.model").read_text()
    sh("printf '0 0\\n0 1\\n1 0\\n1 1\\n' > x.txt; printf '0\\n1\\n1\\n0\\n' > y.txt\n"
       "kerash models xor > xor.model && model-init xor.model -o xor --seed 3\n"
       "pipeline-train xor --data x.txt --labels y.txt --epochs 2 --batch-size 4 --lr 1 --workers 2 --seed 1")
    assert "epochs" in (tmp_path / "xor" / "state.json").read_text()
    forward = parse(sh("forward-pipeline xor x.txt"))
    assert forward.shape == (4, 1)
    np.testing.assert_allclose(forward, parse(sh("predict xor x.txt")), rtol=1e-6)  # float32: rounding apart
    assert sh("kerash dataset digits -o digits && wc -l < digits/labels.txt").strip() == "1797"


def test_man_pages_and_completion_are_installed_under_the_prefix(prefix):
    share = prefix / "share"
    for page in ("kerash.1", "train.1", "pipeline-train.1", "forward-pipeline.1", "kerash-models.1"):
        assert (share / "man" / "man1" / page).read_text() == (ROOT / "share" / "man" / "man1" / page).read_text()
    assert (share / "bash-completion" / "completions" / "kerash").is_file()
    assert (share / "bash-completion" / "completions" / "train").is_file()
    assert (share / "zsh" / "site-functions" / "_kerash").is_file()
    # the installed stub finds the installed script next to it
    script = (f". {share}/bash-completion/completions/train\n"
              'COMP_WORDS=(train --bat); COMP_CWORD=1; _kerash; echo "${COMPREPLY[@]}"\n')
    assert _sh(["bash", "-c", script]).split() == ["--batch-size", "--batch-growth"]
