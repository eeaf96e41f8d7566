"""docs/tutorial.md never rots: every fenced bash block runs, in order, in one shell."""

import os
import re
import tempfile

from conftest import ROOT, run, tool_env


def test_every_tutorial_command_runs(tmp_path):
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 15
    script = ["set -euo pipefail"]
    for i, block in enumerate(blocks, 1):
        script.append(f"echo '### block {i}' >&2")
        script.append(block)
    # The lesson starts a warm server (and stops it at the end): a private one, stopped whatever happens.
    warm = tempfile.mkdtemp(prefix="kerash-warm-", dir="/tmp")  # short: socket paths are limited to 107 bytes
    os.rmdir(warm)  # the server makes it, and removes it when it stops
    env = tool_env(KERASH_WORKDIR=tmp_path, KERASH_WARM_DIR=warm)
    try:
        proc = run("\n".join(script), cwd=ROOT, env=env, check=False, timeout=240)
    finally:
        run(["kerash", "warm", "stop"], env=env)
    err = proc.stderr.decode()
    failed_at = re.findall(r"### block (\d+)", err)
    assert proc.returncode == 0, f"tutorial block {failed_at[-1] if failed_at else '?'} failed:\n{err[-3000:]}"
    out = proc.stdout.decode()
    # What the lesson promises along the way
    assert "same matrix" in out
    assert "the halves add up" in out
    assert "1 worker or 2: the same bits" in out
    assert "best validation accuracy" in out
    memory = dict(re.findall(r"^(elman|flat): (\d+)% right on the steps that need memory$", out, flags=re.M))
    assert int(memory["elman"]) >= 95 and int(memory["flat"]) <= 65, memory
    assert re.search(r"^hidden layer: \(\d+, 25\) units that never move: \d+$", out, flags=re.M), out[-2000:]
    assert "epoch\tnode\tindex\tmean\tstd\tmin\tmax" in out
    # chapter 14: sequences of lengths 5 to 40, classified by an lstm
    assert re.search(r"^5 steps: \d+ sequences$", out, re.M), out[-2000:]
    assert "\n1\n0\n" in out  # the two new sequences: a run of three, then none
    # chapter 15: a character model of the README writes from its prime
    assert re.search(r"^\d+ characters, \d+ distinct$", out, re.M) and "\nThe " in out
    # the lesson's unit: layer_03's unit 7 settles, its deviation shrinking; layer_01's unit 0 keeps a spread
    units = {(int(e), n): float(sd) for e, n, sd in re.findall(r"^(\d+)\t(layer_0[13])\t\d+\t[^\t]+\t([^\t]+)\t", out, re.M)}
    assert units[(60, "layer_03")] < units[(20, "layer_03")] / 3 and units[(60, "layer_01")] > 0.05, units
    assert "kerash warm: started" in out and "kerash warm: stopped" in out
    assert not os.path.exists(warm)  # the server left nothing behind
