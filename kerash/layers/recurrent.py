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
An lstm's gates take one exp call a step (σ(z) = 1/(1 + exp(−z)) and
tanh(z) = 2σ(2z) − 1, the weights scaled once per batch), a gru's sigmoids
one tanh call (σ(z) = 0.5·tanh(z/2) + 0.5): exp and tanh calls are most of
what a step costs besides its product.
"""

import numpy as np

from ..errors import ModelError
from .base import Layer, int_args, register, size_of

_MODES = ("last", "sequences")


class _Recurrent(Layer):
    """What lstm and gru share: syntax, shapes, the last step's selection."""

    sequence_layer = True  # reads (N, T, I) with lengths; see Network
    stateful = True  # its states can carry from one window to the next (train --bptt)
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

    @classmethod
    def parse_width(cls, width, params):
        """MDL: (NAME, UNITS, <lstm>) or (NAME, UNITS, <lstm, sequences>)."""
        return cls.parse([str(width), *params])

    def mdl_params(self):
        return ["sequences"] if self.every else []

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
    """Long short-term memory (Hochreiter and Schmidhuber), as torch.nn.LSTM: gates i, f, g, o.

    Gates are kept gate-major, (4, T, N, H): each gate of a step is one
    contiguous block, so every element-wise call runs over contiguous memory
    (numpy is several times slower on the column slices of an (N, 4H) array).
    """

    kind = "lstm"
    keras_name = "LSTM"
    gates = 4

    def _by_gate(self, w):
        """(K, 4H) → (4, K, H), scaled for one exp of all gates: −1 for the sigmoids, −2 for g (tanh = 2σ(2g) − 1)."""
        h = self.units
        w = (w * -1.0).reshape(-1, 4, h).transpose(1, 0, 2).copy()
        w[2] *= 2.0
        return w

    def forward(self, p, x, lengths=None, initial=None):
        n, steps, i = x.shape
        h = self.units
        w = p["W"]
        wi, wh, bb = self._by_gate(w[:i]), self._by_gate(w[i:]), self._by_gate(p["b"][None])
        xs = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(steps * n, i)  # time-major rows
        acts = np.matmul(xs, wi)  # (4, T·N, H): the inputs of every step projected at once
        acts += bb
        acts = acts.reshape(4, steps, n, h)
        hs = np.empty((steps, n, h), dtype=x.dtype)
        cs = np.empty((steps, n, h), dtype=x.dtype)
        tcs = np.empty((steps, n, h), dtype=x.dtype)
        ig = np.empty((n, h), dtype=x.dtype)
        zh = np.empty((4, n, h), dtype=x.dtype)
        hp, cp = (None, None) if initial is None else (np.asarray(initial[0], x.dtype), np.asarray(initial[1], x.dtype))
        with np.errstate(over="ignore"):  # exp(large) = inf gives σ = 0, exactly the limit
            for t in range(steps):
                a = acts[:, t]
                if hp is not None:
                    np.matmul(hp, wh, out=zh)
                    a += zh
                # σ(z) = 1 / (1 + exp(−z)) for i, f, o; g = tanh(z) = 2σ(2z) − 1: one exp for all four
                np.exp(a, out=a)
                a += 1.0
                np.reciprocal(a, out=a)
                g = a[2]
                g *= 2.0
                g -= 1.0
                c = cs[t]
                np.multiply(a[0], g, out=c)
                if cp is not None:
                    np.multiply(a[1], cp, out=ig)
                    c += ig
                np.tanh(c, out=tcs[t])
                np.multiply(a[3], tcs[t], out=hs[t])
                hp, cp = hs[t], c
        y = self._output(hs, lengths)
        return y, (x, xs, acts, hs, cs, tcs, lengths, initial)

    def final_state(self, ctx):
        """(h, c) after each sequence's last step: where the next window of the same streams starts."""
        hs, cs, lengths = ctx[3], ctx[4], ctx[6]
        last = np.full(hs.shape[1], hs.shape[0] - 1) if lengths is None else lengths - 1
        rows = np.arange(hs.shape[1])
        return hs[last, rows].copy(), cs[last, rows].copy()

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        x, xs, acts, hs, cs, tcs, lengths, initial = ctx
        steps, n, h = hs.shape
        i = x.shape[2]
        w = p["W"]
        whT = np.ascontiguousarray(w[i:].reshape(h, 4, h).transpose(1, 2, 0))  # (4, H, H): gate k's W_hhᵀ
        dh_out = self._state_gradients(dy, lengths, hs.shape, hs.dtype)
        # What multiplies dc (or dh) in each gate's pre-activation gradient, for all steps at once:
        # i: g·σ'(i), f: c₋₁·σ'(f), g: i·(1 − g²), o: tanh(c)·σ'(o); and dc = dh·o·(1 − tanh²(c)) + f·dc₊₁.
        gi, gf, gg, go = acts
        factors = np.subtract(1.0, acts)
        factors *= acts  # σ' of i, f, o
        factors[0] *= gg
        factors[1, 1:] *= cs[:-1]
        if initial is None:
            factors[1, 0] = 0.0  # c₋₁ = 0
        else:
            factors[1, 0] *= initial[1]  # a window's state carried in, as a constant (truncated BPTT)
        np.multiply(gg, gg, out=factors[2])
        np.subtract(1.0, factors[2], out=factors[2])
        factors[2] *= gi
        factors[3] *= tcs
        through = np.multiply(tcs, tcs)
        np.subtract(1.0, through, out=through)
        through *= go
        dz = np.empty_like(acts)  # (4, T, N, H): i, f, g, o
        dh = np.empty((n, h), dtype=hs.dtype)
        dc = np.empty((n, h), dtype=hs.dtype)
        tmp = np.empty((n, h), dtype=hs.dtype)
        back = np.empty((4, n, h), dtype=hs.dtype)
        given = set(np.flatnonzero(dh_out.reshape(steps, -1).any(axis=1)).tolist())  # steps with an output gradient
        for t in range(steps - 1, -1, -1):
            d = dz[:, t]
            if t == steps - 1:
                dh[...] = dh_out[t]
                np.multiply(dh, through[t], out=dc)
            else:
                np.sum(back, axis=0, out=dh)  # the state's gradient through the four gates
                if t in given:
                    dh += dh_out[t]
                dc *= gf[t + 1]
                np.multiply(dh, through[t], out=tmp)
                dc += tmp
            np.multiply(dc, factors[0, t], out=d[0])
            np.multiply(dc, factors[1, t], out=d[1])
            np.multiply(dc, factors[2, t], out=d[2])
            np.multiply(dh, factors[3, t], out=d[3])
            if t:
                np.matmul(d, whT, out=back)
        first = np.zeros((1, n, h), dtype=hs.dtype) if initial is None else np.asarray(initial[0], hs.dtype)[None]
        hs_prev = np.concatenate([first, hs[:-1]]).reshape(steps * n, h)
        rows = dz.reshape(4, steps * n, h)
        if g is not None:
            wx = np.matmul(xs.T, rows).transpose(1, 0, 2).reshape(i, 4 * h)
            wh = np.matmul(hs_prev.T, rows).transpose(1, 0, 2).reshape(h, 4 * h)
            gb = np.matmul(np.ones(steps * n, dtype=rows.dtype), rows).reshape(4 * h)  # a product sums fastest
            _store(g, accumulate, W=np.concatenate([wx, wh]), b=gb)
        if not need_dx:
            return (None,)
        wiT = w[:i].reshape(i, 4, h).transpose(1, 2, 0)  # (4, H, I)
        dx = np.matmul(rows, wiT).sum(axis=0)
        return (dx.reshape(steps, n, i).transpose(1, 0, 2),)


def _store(g, accumulate, **values):
    for name, value in values.items():
        if accumulate:
            g[name] += value
        else:
            g[name][...] = value


@register
class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al.), as torch.nn.GRU: gates r, z, n; h' = (1 − z)·n + z·h."""

    kind = "gru"
    keras_name = "GRU"
    gates = 3

    def param_shapes(self, shapes):
        return dict(super().param_shapes(shapes), bh=(self.units,))

    def forward(self, p, x, lengths=None, initial=None):
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
        prev = None if initial is None else np.asarray(initial[0], x.dtype)
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
        return y, (x, xs, acts, hns, hs, lengths, initial)

    def final_state(self, ctx):
        """(h,) after each sequence's last step."""
        hs, lengths = ctx[4], ctx[5]
        last = np.full(hs.shape[1], hs.shape[0] - 1) if lengths is None else lengths - 1
        return (hs[last, np.arange(hs.shape[1])].copy(),)

    def backward(self, p, g, ctx, dy, need_dx=True, accumulate=False):
        x, xs, acts, hns, hs, lengths, initial = ctx
        h0 = None if initial is None else np.asarray(initial[0], hs.dtype)
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
            elif h0 is not None:
                np.subtract(h0, nn, out=dz)
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
        hs_prev = np.concatenate([np.zeros((1, n, h), dtype=hs.dtype) if h0 is None else h0[None], hs[:-1]])
        gbh = dh_pre[..., 2 * h:].reshape(steps * n, h).sum(axis=0)
        return _finish_gradients(self, p, g, x, xs, dx_pre, dh_pre, hs_prev, accumulate, need_dx, {"bh": gbh})
