"""Recurrent layers over whole sequences: lstm and gru, numerically PyTorch's nn.LSTM and nn.GRU.

A sequence layer reads a batch of sequences (N, T, I) at once — with each
sequence's length when they differ (the steps after it are padding, zeros)
— and returns every step's output (N, T, H) or each sequence's last (N, H).
Computing a whole sequence in one call is what makes it fast: the inputs of
all steps are projected by one product before the loop, a step's gates are
one product of the state, and the element-wise work is in place.

Parameters, one layer of PyTorch's (gate order and biases as there):

* lstm: W (I+H, 4H) = [weight_ih_l0ᵀ; weight_hh_l0ᵀ], gates i, f, g, o;
  b (4H,) = bias_ih_l0 + bias_hh_l0 (the two biases only ever appear summed).
* gru: W (I+H, 3H) = [weight_ih_l0ᵀ; weight_hh_l0ᵀ], gates r, z, n;
  b (3H,) = bias_ih_l0 + bias_hh_l0 for r and z, bias_ih_l0 for n;
  bh (H,) = the n gate's bias_hh_l0, which r multiplies.

The states start at zero.  Padded steps come after a sequence's last, so
they never change its outputs; their output gradients are zero, so they
add nothing to any gradient (equal to PyTorch's pack_padded_sequence).
Sigmoids are computed as 0.5·tanh(z/2) + 0.5 so that all gates of a step
take one tanh call (the weights of the sigmoid gates are halved once per
batch, not per step).
"""

import numpy as np

from ..errors import ModelError
from .base import Layer, int_args, register, size_of

_MODES = ("last", "sequences")


class _Recurrent(Layer):
    """What lstm and gru share: syntax, shapes, the last step's selection."""

    sequence_layer = True  # reads (N, T, I) with lengths; see Network
    mdl_width = True  # written (NAME, UNITS, <lstm>) or (NAME, UNITS, <lstm, sequences>) in MDL
    gates = 4
    syntax = "UNITS [last|sequences]"

    def __init__(self, units, every=False):
        self.units = units
        self.every = every

    @classmethod
    def parse(cls, args):
        (units,) = int_args(args[:1], ["UNITS"], cls.kind)
        if len(args) > 2 or (len(args) == 2 and args[1] not in _MODES):
            raise ModelError(f"{cls.kind} takes UNITS [last|sequences]: 'last' (the default) returns each sequence's "
                             f"last output, 'sequences' the output of every step, e.g. '{cls.kind} 64 sequences'; "
                             f"found {' '.join(args)}")
        return cls(units, len(args) == 2 and args[1] == "sequences")

    def text(self):
        return f"{self.kind} {self.units}" + (" sequences" if self.every else "")

    def describe(self):
        return "every step" if self.every else "last step"

    def output_shape(self, shapes):
        return (self.units,)

    def check(self, shapes):
        if len(shapes[0]) == 3 and shapes[0][:2] != (1, 1):
            raise ModelError(f"{self.kind} reads a vector at each step, not {'×'.join(map(str, shapes[0]))} images")

    def param_shapes(self, shapes):
        i, h = size_of(shapes[0]), self.units
        return {"W": (i + h, self.gates * h), "b": (self.gates * h,)}

    def fans(self, shapes):
        return size_of(shapes[0]) + self.units, self.units

    def macs(self, shapes):
        return (size_of(shapes[0]) + self.units) * self.gates * self.units

    def _output(self, hs, lengths):
        """(N, T, H) every step, or each sequence's last (N, H), from the states hs (T, N, H)."""
        if self.every:
            return hs.transpose(1, 0, 2)
        if lengths is None:
            return hs[-1]
        return hs[lengths - 1, np.arange(hs.shape[1])]

    def _state_gradients(self, dy, lengths, shape, dtype):
        """The output gradient as (T, N, H), time first."""
        if self.every:
            return np.ascontiguousarray(dy.transpose(1, 0, 2))
        d = np.zeros(shape, dtype=dtype)
        if lengths is None:
            d[-1] = dy
        else:
            d[lengths - 1, np.arange(shape[1])] = dy
        return d


def _halved(w, cols):
    """A copy of w with its first `cols` columns halved: the sigmoid gates' share of 0.5·tanh(z/2) + 0.5."""
    w = np.array(w, copy=True)
    w[..., :cols] *= 0.5
    return w


def _finish_gradients(layer, p, g, x, xs, dz_x, dz_h, hs_prev, accumulate, need_dx, extra=None):
    """The parameter gradients from the pre-activation gradients of all steps, and the input gradient."""
    n, steps, i = x.shape
    h = layer.units
    w = p["W"]
    if g is not None:
        rows = steps * n
        gw = g["W"]
        wx = xs.reshape(rows, i).T @ dz_x.reshape(rows, -1)
        wh = hs_prev.reshape(rows, h).T @ dz_h.reshape(rows, -1)
        gb = dz_x.reshape(rows, -1).sum(axis=0)
        if accumulate:
            gw[:i] += wx
            gw[i:] += wh
            g["b"] += gb
        else:
            gw[:i] = wx
            gw[i:] = wh
            g["b"][...] = gb
        for name, value in (extra or {}).items():
            if accumulate:
                g[name] += value
            else:
                g[name][...] = value
    if not need_dx:
        return (None,)
    return ((dz_x.reshape(steps * n, -1) @ w[:i].T).reshape(steps, n, i).transpose(1, 0, 2),)


@register
class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter and Schmidhuber), as torch.nn.LSTM: gates i, f, g, o."""

    kind = "lstm"
    keras_name = "LSTM"
    gates = 4

    def forward(self, p, x, lengths=None):
        n, steps, i = x.shape
        h = self.units
        w, b = p["W"], p["b"]
        # Internal gate order i, f, o, g: the three sigmoids side by side, halved for 0.5·tanh(z/2) + 0.5.
        order = np.r_[0:2 * h, 3 * h:4 * h, 2 * h:3 * h]
        wi = _halved(w[:i][:, order], 3 * h)
        wh = _halved(w[i:][:, order], 3 * h)
        bb = _halved(b[order], 3 * h)
        xs = np.ascontiguousarray(x.transpose(1, 0, 2))  # (T, N, I): a step is contiguous
        acts = (xs.reshape(steps * n, i) @ wi).reshape(steps, n, 4 * h)
        acts += bb
        hs = np.empty((steps, n, h), dtype=x.dtype)
        cs = np.empty((steps, n, h), dtype=x.dtype)
        tcs = np.empty((steps, n, h), dtype=x.dtype)
        ig = np.empty((n, h), dtype=x.dtype)
        zh = np.empty((n, 4 * h), dtype=x.dtype)
        hp = cp = None
        for t in range(steps):
            a = acts[t]
            if hp is not None:
                np.matmul(hp, wh, out=zh)
                a += zh
            np.tanh(a, out=a)
            s = a[:, :3 * h]
            s *= 0.5
            s += 0.5
            c = cs[t]
            if cp is None:
                np.multiply(a[:, :h], a[:, 3 * h:], out=c)
            else:
                np.multiply(a[:, h:2 * h], cp, out=c)
                np.multiply(a[:, :h], a[:, 3 * h:], out=ig)
                c += ig
            np.tanh(c, out=tcs[t])
            np.multiply(a[:, 2 * h:3 * h], tcs[t], out=hs[t])
            hp, cp = hs[t], c
        y = self._output(hs, lengths)
        return y, (x, xs, acts, hs, cs, tcs, lengths, order)

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        x, xs, acts, hs, cs, tcs, lengths, order = ctx
        steps, n, h = hs.shape
        i = x.shape[2]
        wh = p["W"][i:][:, order]  # not halved: the gradients below are of the true pre-activations
        dh_out = self._state_gradients(dy, lengths, hs.shape, hs.dtype)
        # Derivatives of the activations, all steps at once: s(1−s) for sigmoids, 1−g² for the tanh gate.
        deriv = np.empty_like(acts)
        np.subtract(1.0, acts[..., :3 * h], out=deriv[..., :3 * h])
        deriv[..., :3 * h] *= acts[..., :3 * h]
        np.multiply(acts[..., 3 * h:], acts[..., 3 * h:], out=deriv[..., 3 * h:])
        np.subtract(1.0, deriv[..., 3 * h:], out=deriv[..., 3 * h:])
        dtc = np.multiply(tcs, tcs)
        np.subtract(1.0, dtc, out=dtc)
        dz = np.empty_like(acts)  # (T, N, 4H) in the internal order i, f, o, g
        dh = np.empty((n, h), dtype=hs.dtype)
        dc = np.empty((n, h), dtype=hs.dtype)
        dcn = None
        dhn = None
        whT = np.ascontiguousarray(wh.T)
        for t in range(steps - 1, -1, -1):
            a, d = acts[t], dz[t]
            if dhn is None:
                dh[...] = dh_out[t]
            else:
                np.add(dh_out[t], dhn, out=dh)
            np.multiply(dh, a[:, 2 * h:3 * h], out=dc)
            dc *= dtc[t]
            if dcn is not None:
                dc += dcn
            np.multiply(dc, a[:, 3 * h:], out=d[:, :h])  # i
            if t:
                np.multiply(dc, cs[t - 1], out=d[:, h:2 * h])  # f
            else:
                d[:, h:2 * h] = 0
            np.multiply(dh, tcs[t], out=d[:, 2 * h:3 * h])  # o
            np.multiply(dc, a[:, :h], out=d[:, 3 * h:])  # g
            d *= deriv[t]
            if t:
                dcn = dc * a[:, h:2 * h]
                dhn = d @ whT
        back = np.argsort(order)  # internal order → i, f, g, o
        dz = dz[..., back]
        hs_prev = np.concatenate([np.zeros((1, n, h), dtype=hs.dtype), hs[:-1]])
        return _finish_gradients(self, p, g, x, xs, dz, dz, hs_prev, accumulate, need_dx)


@register
class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al.), as torch.nn.GRU: gates r, z, n; h' = (1 − z)·n + z·h."""

    kind = "gru"
    keras_name = "GRU"
    gates = 3

    def param_shapes(self, shapes):
        return dict(super().param_shapes(shapes), bh=(self.units,))

    def forward(self, p, x, lengths=None):
        n, steps, i = x.shape
        h = self.units
        w, b, bh = p["W"], p["b"], p["bh"]
        wi = _halved(w[:i], 2 * h)
        wh = _halved(w[i:], 2 * h)
        bb = _halved(b, 2 * h)
        xs = np.ascontiguousarray(x.transpose(1, 0, 2))
        acts = (xs.reshape(steps * n, i) @ wi).reshape(steps, n, 3 * h)  # r, z, then n
        acts += bb
        hns = np.empty((steps, n, h), dtype=x.dtype)  # W_hn·h + b_hn, which r multiplies
        hs = np.empty((steps, n, h), dtype=x.dtype)
        hp_all = np.empty((n, 3 * h), dtype=x.dtype)
        prev = None
        for t in range(steps):
            a = acts[t]
            if prev is None:
                hns[t] = bh
            else:
                np.matmul(prev, wh, out=hp_all)
                a[:, :2 * h] += hp_all[:, :2 * h]
                np.add(hp_all[:, 2 * h:], bh, out=hns[t])
            rz = a[:, :2 * h]
            np.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            nn = a[:, 2 * h:]
            nn += a[:, :h] * hns[t]
            np.tanh(nn, out=nn)
            out = hs[t]
            if prev is None:  # h' = n − z·n
                np.multiply(a[:, h:2 * h], nn, out=out)
                np.subtract(nn, out, out=out)
            else:  # h' = n + z·(h − n)
                np.subtract(prev, nn, out=out)
                out *= a[:, h:2 * h]
                out += nn
            prev = out
        y = self._output(hs, lengths)
        return y, (x, xs, acts, hns, hs, lengths)

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        x, xs, acts, hns, hs, lengths = ctx
        steps, n, h = hs.shape
        i = x.shape[2]
        whT = np.ascontiguousarray(p["W"][i:].T)
        dh_out = self._state_gradients(dy, lengths, hs.shape, hs.dtype)
        dx_pre = np.empty_like(acts)  # gradients of the input-side pre-activations r, z, n
        dh_pre = np.empty_like(acts)  # of the state-side ones: r, z, and W_hn·h + b_hn
        dh = np.empty((n, h), dtype=hs.dtype)
        tmp = np.empty((n, h), dtype=hs.dtype)
        dhn = None
        for t in range(steps - 1, -1, -1):
            a, dxp, dhp = acts[t], dx_pre[t], dh_pre[t]
            r, z, nn = a[:, :h], a[:, h:2 * h], a[:, 2 * h:]
            if dhn is None:
                dh[...] = dh_out[t]
            else:
                np.add(dh_out[t], dhn, out=dh)
            # dn_pre = dh·(1 − z)·(1 − n²)
            dn = dxp[:, 2 * h:]
            np.subtract(1.0, z, out=dn)
            dn *= dh
            np.multiply(nn, nn, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            dn *= tmp
            # dz_pre = dh·(h_prev − n)·z(1 − z)
            dz = dxp[:, h:2 * h]
            if t:
                np.subtract(hs[t - 1], nn, out=dz)
            else:
                np.negative(nn, out=dz)
            dz *= dh
            np.subtract(1.0, z, out=tmp)
            tmp *= z
            dz *= tmp
            # dr_pre = dn_pre·hn·r(1 − r); the state side of n: dn_pre·r
            dr = dxp[:, :h]
            np.multiply(dn, hns[t], out=dr)
            np.subtract(1.0, r, out=tmp)
            tmp *= r
            dr *= tmp
            dhp[:, :2 * h] = dxp[:, :2 * h]
            np.multiply(dn, r, out=dhp[:, 2 * h:])
            if t:
                dhn = dhp @ whT
                dhn += dh * z
        hs_prev = np.concatenate([np.zeros((1, n, h), dtype=hs.dtype), hs[:-1]])
        gbh = dh_pre[..., 2 * h:].reshape(steps * n, h).sum(axis=0)
        return _finish_gradients(self, p, g, x, xs, dx_pre, dh_pre, hs_prev, accumulate, need_dx, {"bh": gbh})
