"""A network: a graph of nodes evaluated in text (topological) order.

Node 0 is the input; every other node is a layer (see kerash.layers) whose
inputs are earlier nodes of the same time step, or — for recurrence — any
node's value at the previous time step (zeros at the first).  A chain of
layers is the graph in which node i reads node i−1.

Forward caches live in per-call lists (one context per node and step), never
on the layers, so a layer can run at every time step.  Backward visits nodes
in reverse order; where a value feeds several nodes, their gradients add up;
a recurrent input sends its gradient to the previous step.  Parameter
gradients are those of the *sum* of per-sample losses, times `scale`: 1 for
sums that several processes add together, 1/N for a mean step.

Sequences are (N, T, I) with targets (N, T, K) scored at every step or
(N, K) at the last; a sequence's loss is the mean over its scored steps.

The loss is not the graph's: passes that score take an Objective (see
objective.py) from the caller, which decides the output's gradient; the
weights and gradients live in an Arena (see arena.py).
"""

import numpy as np

from ..errors import UsageError, close_matches
from ..processes import map_chunks, shared_zeros

from .arena import Arena


def _to(layout, x):
    """A batch of images brought into the other layout, (N,C,H,W) ↔ (C,N,H,W): a view (the swap is its own inverse)."""
    return x.transpose(1, 0, 2, 3) if layout else x


_BACK = {"cnhw": "first", "first": "cnhw", None: None}


def sequence_lengths(x):
    """(lengths (N,) or None when every sequence fills T, x with its padding as zeros) of sequences (N, T, …).

    A padded step is nan in every value; the padding follows a sequence's steps.
    """
    if x.ndim < 3 or not x.size:
        return None, x
    pad = np.isnan(x.reshape(x.shape[0], x.shape[1], -1)[:, :, 0])
    if not pad.any():
        return None, x
    lengths = x.shape[1] - pad.sum(axis=1)
    return lengths, np.where(np.isnan(x), 0, x).astype(x.dtype, copy=False)


class _Carried:
    """States given to forward_states and those it finds, by node."""

    def __init__(self, states):
        self.given, self.found = states or {}, {}

    def initial(self, node, ids):
        return self.given.get(node)

    def keep(self, node, ids, final):
        self.found[node] = final


def _padded(value, lengths):
    """A node's values (N, T, …) with the steps after each sequence's length nan."""
    if lengths is None:
        return value
    value = np.array(value, copy=True)
    value[np.arange(value.shape[1])[None, :] >= lengths[:, None]] = np.nan
    return value


class Node:
    """One node: its layer (None for the input), its inputs, parameter folder and output shape.

    inputs: ((source node index, delay), …), delay 1 reading the previous time step.
    """

    __slots__ = ("name", "layer", "inputs", "key", "shape")

    def __init__(self, name, layer, inputs, key, shape):
        self.name, self.layer, self.inputs, self.key, self.shape = name, layer, tuple(inputs), key, tuple(shape)


class Network:
    """The graph: its nodes, their weights (views of `arena`), forward passes and gradients."""

    def __init__(self, nodes, dtype=np.float32, sequence=False):
        """nodes: Node list, the input first and the output last; sequence: inputs are (N, T, I)."""
        self.nodes = nodes
        self.dtype = np.dtype(dtype)
        self.sequence = sequence
        self.input_shape = nodes[0].shape
        n = self.size = len(nodes)
        self.layers = [node.layer for node in nodes]
        self.recurrent = any(d for node in nodes for _, d in node.inputs)
        self.params = [{} for _ in nodes]
        self.grads = [{} for _ in nodes]
        self._grad_views = {}  # gradient buffer → its per-node views (see write_grads_to)
        self.has_params = [bool(layer is not None and layer.param_shapes(self._in_shapes(i))) for i, layer in enumerate(self.layers)]
        self.param_nodes = [i for i in range(n) if self.has_params[i]]
        self.frozen = set()  # nodes whose parameters are not trained (see freeze)
        self.noisy = [bool(layer is not None and layer.stochastic) for layer in self.layers]
        # Convolution and pooling work on (C, N, H, W): each node's output layout, and
        # for each input the transpose (if any) that brings it into the reader's layout.
        layout = ["first"] * n
        self.sources = [()] * n
        for i in range(1, n):
            wanted = self.layers[i].layout
            srcs = []
            for j, delay in nodes[i].inputs:
                image = len(nodes[j].shape) == 3
                srcs.append((j, delay, wanted if image and layout[j] != wanted else None))
            self.sources[i] = tuple(srcs)
            layout[i] = wanted
        self.single = [len(s) == 1 for s in self.sources]
        self.convert_out = "first" if layout[-1] != "first" and len(nodes[-1].shape) == 3 else None
        self.layouts = layout
        self.needs_grad, self.need_dx, self.backward_nodes = self._plan(want_input=False)
        # Parameters that the output reads within a step get a gradient at every call;
        # others (read only through the previous step) may not, and are zeroed then.
        feeds = [False] * n
        feeds[-1] = True
        for i in range(n - 1, 0, -1):
            if feeds[i]:
                for j, delay, _ in self.sources[i]:
                    feeds[j] = feeds[j] or not delay
        self.maybe_unwritten = [i for i in self.param_nodes if not feeds[i]]
        self.delayed = sorted({j for node in nodes for j, d in node.inputs if d})
        # Whole-sequence mode: a layer that reads whole sequences (lstm, gru) makes every node run once over all
        # steps; timed[i] tells whether node i's value keeps the time axis (N, T, …) or has none (N, …).
        self.whole = sequence and any(getattr(layer, "sequence_layer", False) for layer in self.layers)
        self.timed = [sequence] * n
        if self.whole:
            for i in range(1, n):
                reads = [self.timed[j] for j, _, _ in self.sources[i]]
                if getattr(self.layers[i], "sequence_layer", False):  # (spec.check_time_axes: reads[0] is timed)
                    self.timed[i] = self.layers[i].every
                else:
                    self.timed[i] = reads[0]
        self.param_node = {nodes[i].key: i for i in self.param_nodes}  # 'layer_NN' → node index
        self.arena = Arena(self.param_shapes(), self.dtype)
        self._use_grads(None)

    def _plan(self, want_input):
        """(needs a gradient, computes input gradients, nodes to visit backward) per node.

        A value needs a gradient when it leads back to parameters (or to the
        input, for input_gradient).
        """
        n = self.size
        needs = [self.has_params[i] and i not in self.frozen for i in range(n)]
        needs[0] = want_input
        changed = True
        while changed:
            changed = False
            for i in range(1, n):
                if not needs[i] and any(needs[j] for j, _, _ in self.sources[i]):
                    needs[i] = changed = True
        need_dx = [any(needs[j] for j, _, _ in self.sources[i]) for i in range(n)]
        visit = [i for i in range(n - 1, 0, -1) if (self.has_params[i] and i not in self.frozen) or need_dx[i]]
        return needs, need_dx, visit

    def freeze(self, keys):
        """Leave the parameters of these nodes ('layer_NN') out of training: no gradient, no update.

        The optimiser skips them too: see Arena.trainable_ranges.
        """
        self.frozen = {self.param_node[key] for key in keys}
        self.needs_grad, self.need_dx, self.backward_nodes = self._plan(want_input=False)
        for i in self.frozen:
            for g in self.grads[i].values():
                g.fill(0)

    def _in_shapes(self, i):
        return [self.nodes[j].shape for j, _ in self.nodes[i].inputs]

    # ------------------------------------------------------------ parameters

    def macs_per_sample(self):
        """Multiply-adds of one sample's forward pass (one step of a sequence)."""
        return sum(layer.macs(self._in_shapes(i)) for i, layer in enumerate(self.layers) if layer is not None)

    def param_shapes(self):
        """{'layer_NN': {name: shape}} in initialisation order."""
        return {self.nodes[i].key: self.layers[i].param_shapes(self._in_shapes(i)) for i in self.param_nodes}

    def param_items(self):
        """[(key 'layer_NN', name, array)] in a fixed order."""
        return [(self.nodes[i].key, name, self.params[i][name]) for i in self.param_nodes for name in sorted(self.params[i])]

    def grad_items(self):
        return [(self.nodes[i].key, name, self.grads[i][name]) for i in self.param_nodes for name in sorted(self.params[i])]

    def set_params(self, params):
        """Use `params` ({'layer_NN': {'W': array, 'b': array}}) as the weights, without copying."""
        for i in self.param_nodes:
            self.params[i] = params[self.nodes[i].key]

    def _use_grads(self, grads_buffer):
        """Gradients as views of one flat buffer: a new one of zeros, or the one given."""
        grads = np.zeros(self.arena.size, dtype=self.dtype) if grads_buffer is None else grads_buffer
        for key, name, view in self.arena.views(grads):
            self.grads[self.param_node[key]][name] = view
        self.arena.grads = grads

    def write_grads_to(self, buffer):
        """From now on the layers write their gradients into `buffer`, an arena-shaped flat array.

        The views of each buffer are made once: an engine points the network
        at another shard's row before every shard it computes.
        """
        if self.arena.grads is buffer:
            return
        cache = self._grad_views
        key = (buffer.__array_interface__["data"][0], buffer.size)
        views = cache.get(key)
        if views is None:
            if len(cache) > 64:
                cache.clear()
            views = cache[key] = [(self.param_node[k], name, view) for k, name, view in self.arena.views(buffer)]
        for i, name, view in views:
            self.grads[i][name] = view
        self.arena.grads = buffer

    def use_arena(self, params_buffer=None, grads_buffer=None):
        """Lay every parameter out in one flat buffer, and every gradient in another (see arena.py).

        The current weights are copied in.  The buffers may be given (memory
        shared between processes).  Returns (parameters, gradients) as flat arrays.
        """
        self._use_grads(grads_buffer)
        flat = np.empty(self.arena.size, dtype=self.dtype) if params_buffer is None else params_buffer
        for key, name, view in self.arena.views(flat):
            i = self.param_node[key]
            current = self.params[i].get(name)
            if current is not None and not (current.shape == view.shape and np.shares_memory(current, view)):
                view[...] = current
            self.params[i] = dict(self.params[i], **{name: view})
        self.arena.params = flat
        return flat, self.arena.grads

    def get_params(self):
        return {self.nodes[i].key: self.params[i] for i in self.param_nodes}

    # ------------------------------------------------------------ one time step

    def _step(self, x, prev, ctxs, noise=None, t=0):
        """Values of every node at one time step; prev: the values of the previous step (or None).

        noise: the training call's Noise for stochastic layers (dropout), None outside training.
        """
        layers, params, sources, single, noisy = self.layers, self.params, self.sources, self.single, self.noisy
        vals = [None] * self.size
        vals[0] = x
        for i in range(1, self.size):
            if noisy[i]:
                (j, delay, convert), = sources[i]
                v = prev[j] if delay else vals[j]
                vals[i], ctxs[i] = layers[i].forward(params[i], _to(convert, v) if convert else v, noise, i, t)
            elif single[i]:
                j, delay, convert = sources[i][0]
                v = prev[j] if delay else vals[j]
                vals[i], ctxs[i] = layers[i].forward(params[i], _to(convert, v) if convert else v)
            else:
                args = [_to(c, prev[j] if d else vals[j]) for j, d, c in sources[i]]
                vals[i], ctxs[i] = layers[i].forward(params[i], *args)
        return vals

    def _back_step(self, dvals, carry, ctxs, written, out_dz=None, plan=None):
        """Backward through one time step, reverse order; recurrent inputs add into `carry` (step t−1).

        out_dz: the gradient of a fused loss at the output's pre-activation.
        plan: (needs, need_dx, nodes) of _plan, by default for the parameters only.
        """
        layers, params, grads, sources, single = self.layers, self.params, self.grads, self.sources, self.single
        needs, need_dx, visit = plan or (self.needs_grad, self.need_dx, self.backward_nodes)
        frozen = self.frozen
        last = self.size - 1
        for i in visit:
            dy = dvals[i]
            layer = layers[i]
            g = None if i in frozen else grads[i]
            if i == last and out_dz is not None:
                if dy is not None:  # the output also feeds a later step
                    z, a = layer.pre_activation(ctxs[i])
                    out_dz = out_dz + layer.activation.backward(z, a, dy)
                dxs = layer.backward_z(params[i], g, ctxs[i], out_dz, need_dx[i], written[i])
            elif dy is None:
                continue
            else:
                dxs = layer.backward(params[i], g, ctxs[i], dy, need_dx[i], written[i])
            written[i] = True
            if not need_dx[i]:
                continue
            if single[i]:  # the common case, without a loop
                j, delay, convert = sources[i][0]
                dx = dxs[0]
                if needs[j]:
                    if convert:
                        dx = _to(_BACK[convert], dx)
                    target = carry if delay else dvals
                    if target is not None:
                        target[j] = dx if target[j] is None else target[j] + dx
                continue
            for (j, delay, convert), dx in zip(sources[i], dxs):
                if dx is None or not needs[j]:
                    continue
                if convert:
                    dx = _to(_BACK[convert], dx)
                target = carry if delay else dvals
                if target is None:
                    continue  # a recurrent input at the first step: its gradient goes nowhere
                # A new array when adding: the first gradient may be shared (an additive merge).
                target[j] = dx if target[j] is None else target[j] + dx

    def _zero_unwritten(self, written):
        for i in self.maybe_unwritten:
            if not written[i]:
                for g in self.grads[i].values():
                    g.fill(0)

    # ------------------------------------------------------------ single steps (no time axis)

    def _flat_out(self, vals):
        out = _to(self.convert_out, vals[-1]) if self.convert_out else vals[-1]
        return out.reshape(out.shape[0], -1)

    def _gradient_flat(self, objective, x, y, scale, keep=None, plan=None, noise=None):
        ctxs = [None] * self.size
        vals = self._step(x, None, ctxs, noise)
        out = self._flat_out(vals)
        if keep is None:
            losses = objective.values(ctxs[-1], out, y)
            correct = objective.correct(out, y)
        else:
            keep.append(objective.deferred(ctxs[-1], out, y))
            losses = correct = None
        written = [False] * self.size
        dvals = [None] * self.size
        d = objective.output_gradient(ctxs[-1], out, y)
        if scale != 1.0:
            d *= scale
        if objective.fused:  # d is at the output layer's pre-activation
            self._back_step(dvals, None, ctxs, written, d, plan)
        else:
            last = vals[-1]
            d = d.reshape(_to(self.convert_out, last).shape if self.convert_out else last.shape)
            dvals[-1] = _to(_BACK[self.convert_out], d) if self.convert_out else d
            self._back_step(dvals, None, ctxs, written, None, plan)
        self._zero_unwritten(written)
        return losses, correct, dvals[0]

    # ------------------------------------------------------------ sequences

    def _initial(self, batch):
        """Values before the first step: zeros for every node read at the previous step."""
        prev = [None] * self.size
        for j in self.delayed:
            prev[j] = np.zeros((batch,) + self.nodes[j].shape, dtype=self.dtype)
        return prev

    def _unroll(self, x, noise=None):
        """Forward through every step of x (N, T, I): (values per step, contexts per step)."""
        xs = x.transpose(1, 0, 2)
        prev = self._initial(x.shape[0])
        values, contexts = [], []
        for t in range(x.shape[1]):
            ctxs = [None] * self.size
            prev = self._step(xs[t], prev, ctxs, noise, t)
            values.append(prev)
            contexts.append(ctxs)
        return values, contexts

    def _gradient_steps(self, objective, x, y, scale, noise=None):
        """Exact back-propagation through time over x (N, T, I)."""
        n, steps = x.shape[:2]
        values, contexts = self._unroll(x, noise)
        every = y.ndim == 3
        scored = range(steps) if every else (steps - 1,)
        weight = scale / len(scored)
        losses = np.zeros(n)
        correct = 0
        grads_out = {}
        for t in scored:
            yt = y[:, t] if every else y
            out = values[t][-1]
            losses += objective.values(contexts[t][-1], out, yt)
            correct += objective.correct(out, yt)
            d = objective.output_gradient(contexts[t][-1], out, yt)
            d *= weight
            grads_out[t] = d
        losses /= len(scored)
        written = [False] * self.size
        carry = [None] * self.size
        for t in range(steps - 1, -1, -1):
            dvals, carry = carry, ([None] * self.size if t else None)
            d = grads_out.get(t)
            if objective.fused:
                self._back_step(dvals, carry, contexts[t], written, d)
            else:
                if d is not None:
                    dvals[-1] = d if dvals[-1] is None else dvals[-1] + d
                self._back_step(dvals, carry, contexts[t], written)
        self._zero_unwritten(written)
        return losses, correct

    def _folded(self, x):
        """(N·T, I) rows of a sequence batch, when no node reads the previous step."""
        return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])

    # ------------------------------------------------------------ whole sequences (lstm, gru)

    def forward_states(self, x, states=None):
        """Outputs of sequences x continued from recurrent `states` (those returned by the call before, None:
        zeros), and the states after them: (outputs as forward gives them, states) — to generate step by step."""
        carried = _Carried(states)
        vals, _ = self._whole_forward(x, [None] * self.size, carry=carried)
        return vals[-1], carried.found

    def _whole_forward(self, x, ctxs, noise=None, carry=None):
        """Values of every node, each computed once over all steps; (values, lengths or None).

        x: (N, T, I), the steps after a sequence's end nan (padding): they
        are read as zeros, and the sequence layers are told each length.
        """
        lengths, x = sequence_lengths(x)
        layers, params, sources, timed = self.layers, self.params, self.sources, self.timed
        vals = [None] * self.size
        vals[0] = x
        n, steps = x.shape[:2]
        carry = carry or getattr(noise, "carry", None)  # train --bptt: states carried between windows (training/bptt.py)
        ids = None if noise is None else noise.ids
        for i in range(1, self.size):
            layer = layers[i]
            args = [vals[j] for j, _, _ in sources[i]]
            if getattr(layer, "sequence_layer", False):
                if carry is None or not layer.stateful:
                    vals[i], ctxs[i] = layer.forward(params[i], args[0], lengths)
                else:
                    vals[i], ctxs[i] = layer.forward(params[i], args[0], lengths, carry.initial(i, ids))
                    carry.keep(i, ids, layer.final_state(ctxs[i]))
                continue
            if timed[i]:
                args = [a.reshape(n * steps, *a.shape[2:]) for a in args]
            if self.noisy[i]:
                rows = None if noise is None else (noise.rows(steps) if timed[i] else noise)
                out, ctxs[i] = layer.forward(params[i], args[0], rows, i, 0)
            else:
                out, ctxs[i] = layer.forward(params[i], *args)
            vals[i] = out.reshape(n, steps, *out.shape[1:]) if timed[i] else out
        return vals, lengths

    def _whole_backward(self, dvals, ctxs, shape, out_dz=None, plan=None):
        """Backward over whole sequences, reverse node order; out_dz: a fused loss's gradient (rows of the output)."""
        layers, params, grads, sources, timed = self.layers, self.params, self.grads, self.sources, self.timed
        needs, need_dx, visit = plan or (self.needs_grad, self.need_dx, self.backward_nodes)
        n, steps = shape
        last = self.size - 1
        written = [False] * self.size
        for i in visit:
            layer = layers[i]
            g = None if i in self.frozen else grads[i]
            dy = dvals[i]
            if i == last and out_dz is not None:
                dxs = layer.backward_z(params[i], g, ctxs[i], out_dz, need_dx[i], False)
            elif dy is None:
                continue
            elif getattr(layer, "sequence_layer", False) or not timed[i]:
                dxs = layer.backward(params[i], g, ctxs[i], dy, need_dx[i], False)
            else:
                dxs = layer.backward(params[i], g, ctxs[i], dy.reshape(n * steps, *dy.shape[2:]), need_dx[i], False)
            written[i] = True
            if not need_dx[i]:
                continue
            folded = timed[i] and not getattr(layer, "sequence_layer", False)
            for (j, _, _), dx in zip(sources[i], dxs):
                if dx is None or not needs[j]:
                    continue
                if folded:
                    dx = dx.reshape(n, steps, *dx.shape[1:])
                dvals[j] = dx if dvals[j] is None else dvals[j] + dx
        for i in self.param_nodes:
            if not written[i]:
                for value in self.grads[i].values():
                    value.fill(0)
        return dvals

    def _whole_scored(self, vals, ctxs, y, lengths):
        """The scored outputs: (rows of the output, their targets, the sample of each, the index of each row).

        Targets (N, T, K) score every step of each sequence (up to its
        length); (N, K) its last step — or the one output of a network
        whose last sequence layer returns its last step.
        """
        out = vals[-1]
        n = out.shape[0]
        if not self.timed[-1]:
            if y.ndim == 3:
                raise UsageError("the model gives one output per sequence (a recurrent layer returns its last step): "
                                 "give one row of targets per sequence, or make it return every step ('sequences')")
            return out.reshape(n, -1), y, np.arange(n), np.arange(n)
        steps = out.shape[1]
        rows = out.reshape(n * steps, -1)
        if y.ndim == 3:
            if lengths is None:
                picked = np.arange(n * steps)
            else:
                picked = np.flatnonzero(np.arange(steps)[None, :] < lengths[:, None])
            return rows, y.reshape(n * steps, -1)[picked], picked // steps, picked
        last = np.full(n, steps - 1) if lengths is None else lengths - 1
        picked = np.arange(n) * steps + last
        return rows, y, np.arange(n), picked

    def _scored_context(self, ctx, picked):
        """The output layer's forward context reduced to the scored rows (a fused loss reads z and f(z))."""
        if not self.layers[-1].kind == "dense":
            return None
        z, a = self.layers[-1].pre_activation(ctx)
        return (None, None, z[picked], a[picked])

    def _whole_gradient(self, objective, x, y, scale, noise=None):
        ctxs = [None] * self.size
        vals, lengths = self._whole_forward(x, ctxs, noise)
        rows, targets, sample, picked = self._whole_scored(vals, ctxs, y, lengths)
        scored = rows[picked]
        sub = self._scored_context(ctxs[-1], picked)
        row_losses = objective.values(sub, scored, targets)
        counts = np.bincount(sample, minlength=x.shape[0])
        losses = np.bincount(sample, weights=row_losses, minlength=x.shape[0]) / np.maximum(counts, 1)
        correct = objective.correct(scored, targets)
        d = objective.output_gradient(sub, scored, targets)
        d *= (scale / counts[sample]).astype(d.dtype)[:, None]
        full = np.zeros(rows.shape, dtype=rows.dtype)
        full[picked] = d
        dvals = [None] * self.size
        shape = x.shape[:2]
        if objective.fused:
            self._whole_backward(dvals, ctxs, shape, full)
        else:
            dvals[-1] = full.reshape(vals[-1].shape)
            self._whole_backward(dvals, ctxs, shape)
        return losses, correct

    def _whole_losses(self, objective, x, y):
        ctxs = [None] * self.size
        vals, lengths = self._whole_forward(x, ctxs)
        rows, targets, sample, picked = self._whole_scored(vals, ctxs, y, lengths)
        row_losses = objective.values(self._scored_context(ctxs[-1], picked), rows[picked], targets)
        counts = np.maximum(np.bincount(sample, minlength=x.shape[0]), 1)
        losses = np.bincount(sample, weights=row_losses, minlength=x.shape[0]) / counts
        if y.ndim == 3:  # every step: the outputs as (N, T, K), padded steps nan (they are no output)
            out = np.full(rows.shape, np.nan, dtype=rows.dtype)
            out[picked] = rows[picked]
            return losses, out.reshape(x.shape[0], x.shape[1], -1)
        return losses, rows[picked]

    def _whole_outputs(self, x):
        """Outputs (N, T, K) — padded steps nan — or (N, K) for a network that returns each sequence's last."""
        vals, lengths = self._whole_forward(x, [None] * self.size)
        out = vals[-1]
        if self.timed[-1] and lengths is not None:
            out = np.array(out, copy=True)
            out[np.arange(out.shape[1])[None, :] >= lengths[:, None]] = np.nan
        return out

    # ------------------------------------------------------------ passes

    def gradient(self, objective, x, y, scale=1.0, keep=None, noise=None):
        """Forward and backward on one batch: (per-sample losses, correct count) of the objective.

        Leaves scale × ∂(Σ losses)/∂θ in `grads` (the arena's gradients).
        For sequences, a sample is a sequence and `correct` counts scored steps.
        When `keep` is a list (objective.can_defer), the losses are not
        computed now: the batch's outputs are appended to it, and
        `objective.kept_metrics(keep)` computes them later for many batches
        at once; (None, None) is returned.  `noise` (kerash.layers.Noise:
        seed, epoch and the samples' ids) drives stochastic layers; without
        it they are inactive.
        """
        if not self.sequence:
            return self._gradient_flat(objective, x, y, scale, keep, noise=noise)[:2]
        if self.whole:
            return self._whole_gradient(objective, x, y, scale, noise)
        if self.recurrent:
            return self._gradient_steps(objective, x, y, scale, noise)
        n, steps = x.shape[:2]
        if y.ndim == 2:  # scored at the last step only, which depends on the last input only
            return self._gradient_flat(objective, x[:, -1], y, scale, noise=noise)[:2]
        rows = None if noise is None else noise.rows(steps)
        losses, correct, _ = self._gradient_flat(objective, self._folded(x), y.reshape(n * steps, -1), scale / steps,
                                                 noise=rows)
        return losses.reshape(n, steps).mean(axis=1), correct

    def input_gradient(self, objective, x, y):
        """∂(Σ per-sample losses)/∂x for a batch without a time axis (same shape as x)."""
        _, _, grad = self._gradient_flat(objective, x, y, 1.0, plan=self._plan(want_input=True))
        return np.zeros_like(x) if grad is None else grad

    def trace(self, x):
        """[(value, forward context)] of every node for one step of a batch (for inspection).

        Values are in the public layout: images (N, C, H, W).
        """
        ctxs = [None] * self.size
        if self.whole:
            raise UsageError("a model with lstm or gru layers is traced over whole sequences: use its nodes' values")
        vals = self._step(x, self._initial(x.shape[0]) if self.recurrent else None, ctxs)
        public = [_to(_BACK[layout] if layout != "first" and v.ndim == 4 else None, v) for layout, v in zip(self.layouts, vals)]
        return list(zip(public, ctxs))

    def node_index(self, name):
        """The index of the node called `name` (an MDL node's name, or a line model's layer_NN and input)."""
        for i, node in enumerate(self.nodes):
            if name in (node.name, node.key):
                return i
        names = [node.name for node in self.nodes]
        raise UsageError(f"no node {name!r} in the model{close_matches(name, names)}; its nodes: {', '.join(names)}")

    def node_values(self, x, indices, batch_size=1024):
        """The values of nodes `indices` for inputs x, as forward reads them: per node (N, …its shape), or
        (N, T, …) for sequences, images as (N, C, H, W).  In chunks of `batch_size`, as predict."""
        parts = [[] for _ in indices]
        for start in range(0, len(x), batch_size):
            xb = np.asarray(x[start : start + batch_size], dtype=self.dtype)
            if self.whole:
                vals, lengths = self._whole_forward(xb, [None] * self.size)
                picked = [_padded(vals[i], lengths) if self.timed[i] else vals[i] for i in indices]
            elif not self.sequence:
                vals = self._step(xb, None, [None] * self.size)
                picked = [_to(_BACK[self.layouts[i]] if self.layouts[i] != "first" and vals[i].ndim == 4 else None,
                              vals[i]) for i in indices]
            elif not self.recurrent:
                n, steps = xb.shape[:2]
                vals = self._step(self._folded(xb), None, [None] * self.size)
                picked = [vals[i].reshape(n, steps, *vals[i].shape[1:]) for i in indices]
            else:
                values, _ = self._unroll(xb)
                picked = [np.stack([v[i] for v in values], axis=1) for i in indices]
            for part, value in zip(parts, picked):
                part.append(np.array(value, dtype=self.dtype))  # a copy: layers reuse their buffers
        def empty(i):
            lead = (0, x.shape[1]) if self.sequence and x.ndim == 3 and self.timed[i] else (0,)
            return np.zeros(lead + self.nodes[i].shape, self.dtype)

        return [np.concatenate(part) if part else empty(i) for part, i in zip(parts, indices)]

    def forward(self, x):
        """Outputs of a batch: (N, K…) for inputs (N, …), (N, T, K) for sequences (N, T, I)."""
        if not self.sequence:
            vals = self._step(x, None, [None] * self.size)
            return _to(self.convert_out, vals[-1]) if self.convert_out else vals[-1]
        if self.whole:
            out = self._whole_outputs(x)
            return out.reshape(out.shape[0], out.shape[1], -1) if self.timed[-1] else out.reshape(out.shape[0], -1)
        n, steps = x.shape[:2]
        if not self.recurrent:
            return self._step(self._folded(x), None, [None] * self.size)[-1].reshape(n, steps, -1)
        values, _ = self._unroll(x)
        return np.stack([v[-1] for v in values], axis=1)

    def losses(self, objective, x, y):
        """(per-sample losses, scored outputs) of a batch against targets y.

        The scored outputs are (N, K), or (N, T, K) for sequences scored at every step.
        """
        ctxs = [None] * self.size
        if not self.sequence:
            out = self._flat_out(self._step(x, None, ctxs))
            return objective.values(ctxs[-1], out, y), out
        if self.whole:
            return self._whole_losses(objective, x, y)
        n, steps = x.shape[:2]
        if y.ndim == 2:
            if not self.recurrent:
                out = self._step(x[:, -1], None, ctxs)[-1]
                return objective.values(ctxs[-1], out, y), out
            values, contexts = self._unroll(x)
            return objective.values(contexts[-1][-1], values[-1][-1], y), values[-1][-1]
        if not self.recurrent:
            out = self._step(self._folded(x), None, ctxs)[-1]
            losses = objective.values(ctxs[-1], out, y.reshape(n * steps, -1))
            return losses.reshape(n, steps).mean(axis=1), out.reshape(n, steps, -1)
        values, contexts = self._unroll(x)
        losses = sum(objective.values(contexts[t][-1], values[t][-1], y[:, t]) for t in range(steps)) / steps
        return losses, np.stack([v[-1] for v in values], axis=1)

    def predict(self, x, batch_size=1024, processes=1):
        """Outputs (N, K) for inputs (N, …), or (N, T, K) for sequences, in chunks of `batch_size` rows.

        Chunks bound memory; with `processes` > 1, forked processes take them
        as they become free (the same chunks, so the same bits).
        """
        def chunk(i):
            out = self.forward(np.asarray(x[i * batch_size : (i + 1) * batch_size], dtype=self.dtype))
            return out if self.sequence else out.reshape(out.shape[0], -1)

        count = -(-x.shape[0] // batch_size)
        if not count:
            timed = self.sequence and self.timed[-1]
            shape = (0, x.shape[1], self.output_width) if timed else (0, self.output_width)
            return np.zeros(shape, dtype=self.dtype)
        first = chunk(0)
        if count == 1:
            return first
        shape = (x.shape[0],) + first.shape[1:]
        outputs = shared_zeros(shape, first.dtype) if processes > 1 else np.empty(shape, first.dtype)
        outputs[: len(first)] = first

        def fill(i):
            outputs[(i + 1) * batch_size : (i + 2) * batch_size] = chunk(i + 1)

        map_chunks(count - 1, fill, processes)
        return outputs

    @property
    def output_width(self):
        return int(np.prod(self.nodes[-1].shape))

    def evaluate(self, objective, x, y, batch_size=1024, processes=1):
        """(sum of per-sample losses, correct count, predicted classes of the scored outputs) of the objective.

        Classes are (N,) — or (N, T) for sequences scored at every step.  In
        chunks of `batch_size`, taken by `processes` processes (see predict);
        the loss is summed chunk by chunk in order, whoever computed them.
        """
        def chunk(i):
            xb = np.asarray(x[i * batch_size : (i + 1) * batch_size], dtype=self.dtype)
            yb = y[i * batch_size : (i + 1) * batch_size]
            losses, out = self.losses(objective, xb, yb)
            return float(losses.sum()), objective.correct(out, yb), objective.classes(out)

        count = -(-x.shape[0] // batch_size)
        if not count:
            return 0.0, 0, np.zeros((0,) + y.shape[1:-1], dtype=np.int64)
        first = chunk(0)
        make = shared_zeros if processes > 1 and count > 1 else np.zeros
        sums, correct = make((count,), np.float64), make((count,), np.int64)
        classes = make((x.shape[0],) + first[2].shape[1:], first[2].dtype)

        def fill(i):
            sums[i], correct[i], classes[i * batch_size : (i + 1) * batch_size] = chunk(i) if i else first

        map_chunks(count, fill, processes)
        loss_sum = 0.0
        for value in sums:
            loss_sum += float(value)
        return loss_sum, int(correct.sum()), classes