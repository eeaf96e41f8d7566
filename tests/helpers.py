"""Plain helpers the tests share: reading and making model directories, and naive oracles.

conftest.py holds the fixtures and what runs the tools (run, tool_env, parse, savetxt,
assert_one_line_error, the process helpers); this module holds what is neither:

    weights(folder)          {'layer_01/W': array, 'layer_01/b': array, …} of a model directory
    assert_weights(a, b)     two such dicts hold the same keys and arrays (within atol)
    make_model, copy_model   a model directory from a description, and a copy of one
    fingerprint(folder)      every file of a folder hashed: to show that nothing changed
    processes_column(folder) trace.tsv's processes column: that forked workers did compute
    softmax, naive_conv, naive_maxpool, naive_slice
                             independent references, written the slow and obvious way
    assert_network_gradient(net, objective, x, y)
                             the network's gradient against central differences of its loss
"""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np

from conftest import run


def weights(folder):
    """{'layer_NN/NAME': array} of every layer's parameter files (W, b) in a model directory, a version or a
    checkpoint folder, read with numpy (independently of kerash)."""
    return {f"{p.parent.name}/{p.stem}": np.load(p) for p in sorted(Path(folder).glob("layer_*/*.npy"))}


def assert_weights(actual, expected, atol=1e-12):
    """Two weights() dicts hold the same parameters, each equal within `atol` (no relative tolerance)."""
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=0, atol=atol, err_msg=key)


def make_model(folder, text, name="m", seed=1, dtype="float64"):
    """folder/name.model holding `text`, made into the model directory folder/name by `model-init`."""
    (folder / f"{name}.model").write_text(text)
    run(["model-init", f"{name}.model", "-o", name, "--seed", str(seed), "--dtype", dtype], cwd=folder)
    return folder / name


def copy_model(folder, name):
    """A second model directory with the same weights (cheaper than another model-init)."""
    target = folder.parent / name
    shutil.copytree(folder, target, symlinks=True)
    return target


def fingerprint(folder):
    """{relative path: content hash or link target} of everything under `folder`."""
    found = {}
    for root, dirs, files in os.walk(folder, followlinks=True):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[rel + " ->"] = os.readlink(path)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    found[rel] = hashlib.sha256(f.read()).hexdigest()
            elif not os.path.exists(path):
                found[rel] = "broken link"
    return found


def processes_column(folder):
    """trace.tsv's processes column: how many processes computed the steps of each epoch (mean).

    A batch of one logical shard (the rule's choice for a small model: step.shard_count) leaves forked workers
    nothing to compute; tests of several computing processes give --shards and KERASH_ENGINE_ADAPT=0, and
    check here that they did."""
    lines = (Path(folder) / "trace.tsv").read_text().splitlines()
    column = lines[0].split("\t").index("processes")
    return [float(line.split("\t")[column]) for line in lines[1:]]


# ---------------------------------------------------------------- naive oracles


def softmax(z):
    """Row-wise softmax of a matrix."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def naive_conv(x, k, stride, pad, bias=None):
    """Cross-correlation of x (N,C,H,W) with k (F,C,KH,KW), one output pixel at a time."""
    n, c, h, w = x.shape
    f, _, kh, kw = k.shape
    padded = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    padded[:, :, pad : pad + h, pad : pad + w] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    for b in range(n):
        for o in range(f):
            for i in range(oh):
                for j in range(ow):
                    patch = padded[b, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    out[b, o, i, j] = np.sum(patch * k[o]) + (0.0 if bias is None else bias[o])
    return out


def naive_maxpool(x, kh, kw, stride, pad):
    """Max over KH×KW windows of x (N,C,H,W) padded with −∞, one output pixel at a time."""
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * pad, w + 2 * pad), -np.inf)
    padded[:, :, pad : pad + h, pad : pad + w] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw].max(axis=(2, 3))
    return out


def naive_slice(t, x, y, z, w, h, d, pad):
    """Value by value: out[n, k, j, i] is the padded input at channel z+k, row y+j, column x+i, or 0."""
    n, c, height, width = t.shape
    out = np.zeros((n, d, h, w))
    for k in range(d):
        for j in range(h):
            for i in range(w):
                zz, yy, xx = z + k, y + j - pad, x + i - pad
                if 0 <= zz < c and 0 <= yy < height and 0 <= xx < width:
                    out[:, k, j, i] = t[:, zz, yy, xx]
    return out


def assert_network_gradient(net, objective, x, y, tol=1e-7, eps=1e-6, indices=None):
    """net.gradient of Σ per-sample losses against central finite differences of net.losses, at every parameter
    of the flat arena (or at `indices`); float64 networks."""
    net.gradient(objective, x, y, 1.0)
    analytic = net.arena.grads.copy()
    p = net.arena.params
    for i in range(p.size) if indices is None else indices:
        old = p[i]
        p[i] = old + eps
        up = net.losses(objective, x, y)[0].sum()
        p[i] = old - eps
        down = net.losses(objective, x, y)[0].sum()
        p[i] = old
        assert abs((up - down) / (2 * eps) - analytic[i]) < tol, i
    return analytic
