"""A network: layers in sequence plus a loss; forward pass, loss and gradient sums.

Gradients are those of the *sum* of per-sample losses, times `scale`: 1 for
sums that several processes add together, 1/N for a mean step in one process.
"""

import numpy as np

MARGIN_LOSSES = ("hinge", "huber_modified")


def targets_are_classes(y):
    """Whether targets (N, K) are classes, so that accuracy means something.

    One column: labels 0/1 or −1/+1.  Several: rows of non-negative values
    summing to 1 (one-hot or soft labels).  Anything else is regression.
    """
    y = np.asarray(y)
    if y.size == 0:
        return False
    if y.shape[1] == 1:
        values = set(np.unique(y).tolist())
        return values <= {0.0, 1.0} or values <= {-1.0, 1.0}
    return bool(np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0))


def _to(layout, x):
    """A batch brought into a layout: 'last' (N,H,W,C) from (N,C,H,W), 'first' the reverse; a view."""
    if layout == "last":
        return x.transpose(0, 2, 3, 1)
    if layout == "first":
        return x.transpose(0, 3, 1, 2)
    return x


def _from(layout, dx):
    """A gradient taken back through _to(layout, ·)."""
    return _to({"last": "first", "first": "last"}.get(layout), dx)


class Network:
    def __init__(self, layers, loss, input_shape, dtype=np.float32):
        self.layers = layers
        self.loss = loss
        self.input_shape = tuple(input_shape)  # per sample (C, H, W)
        self.dtype = np.dtype(dtype)
        last = layers[-1]
        act = last.activation
        # Losses fuse with a dense output layer, whose pre-activation rows are the samples.
        self.fused = last.kind == "dense" and loss.fuses_with(act.name)
        # Single-output classification: outputs above the threshold mean class 1.
        self.threshold = 0.0 if loss.name in MARGIN_LOSSES else 0.5
        self.unit_rows = False  # every target row sums to 1 (see adapt_to_targets)
        # Convolution and pooling work channels-last: before each layer, the
        # transpose (if any) that brings a batch into its layout; and after the last.
        self.convert, layout = [], "first"
        for layer in layers:
            wanted = "last" if layer.channels_last else "first"
            self.convert.append(None if wanted == layout else wanted)
            layout = wanted
        self.convert_out = "first" if layout == "last" else None
        self.first_trainable = next((i for i, l in enumerate(layers) if hasattr(l, "param_shapes")), len(layers))

    # ------------------------------------------------------------ parameters

    def param_items(self):
        """[(layer key 'layer_NN', name, array)] in a fixed order."""
        items = []
        for layer in self.layers:
            for name in sorted(layer.params):
                items.append((layer.key, name, layer.params[name]))
        return items

    def grad_items(self):
        items = []
        for layer in self.layers:
            for name in sorted(layer.params):
                items.append((layer.key, name, layer.grads[name]))
        return items

    def set_params(self, params):
        """Use `params` ({'layer_NN': {'W': array, 'b': array}}) as the weights, without copying."""
        for layer in self.layers:
            if hasattr(layer, "param_shapes"):
                layer.params = params[layer.key]

    def use_arena(self, params_buffer=None, grads_buffer=None):
        """Lay every parameter out in one flat buffer, and every gradient in another.

        The current weights are copied in.  An optimiser then updates all the
        weights with a few whole-buffer operations, and a backup is one copy.
        The buffers may be given (memory shared between processes).
        Returns (parameters, gradients) as flat arrays.
        """
        layout, total = [], 0
        for layer in self.layers:
            for name in sorted(getattr(layer, "param_shapes", {})):
                shape = layer.param_shapes[name]
                size = int(np.prod(shape))
                layout.append((layer, name, total, size, shape))
                total += size
        flat = np.empty(total, dtype=self.dtype) if params_buffer is None else params_buffer
        grads = np.zeros(total, dtype=self.dtype) if grads_buffer is None else grads_buffer
        for layer, name, start, size, shape in layout:
            view = flat[start : start + size].reshape(shape)
            current = layer.params[name]
            if not (current.shape == view.shape and np.shares_memory(current, view)):
                view[...] = current
            layer.params[name] = view
            layer.grads[name] = grads[start : start + size].reshape(shape)
        self.layout = [(layer.key, name, start, size, shape) for layer, name, start, size, shape in layout]
        self.flat_params, self.flat_grads = flat, grads
        return flat, grads

    def split_flat(self, flat):
        """{'layer_NN/name': view} of an arena-shaped flat array (see use_arena)."""
        return {f"{key}/{name}": flat[start : start + size].reshape(shape) for key, name, start, size, shape in self.layout}

    def join_flat(self, arrays):
        """An arena-shaped flat array from {'layer_NN/name': array}, or None if one is missing."""
        flat = np.empty(self.flat_params.size, dtype=self.dtype)
        for key, name, start, size, shape in self.layout:
            part = arrays.get(f"{key}/{name}")
            if part is None or part.shape != tuple(shape):
                return None
            flat[start : start + size] = part.reshape(-1)
        return flat

    def decay_mask(self):
        """1 over the weights W, 0 over the biases: weight decay applies to weights only."""
        mask = np.zeros(self.flat_params.size, dtype=self.dtype)
        for key, name, start, size, shape in self.layout:
            if name == "W":
                mask[start : start + size] = 1
        return mask

    def get_params(self):
        return {l.key: l.params for l in self.layers if l.params}

    # ------------------------------------------------------------ passes

    def forward(self, x):
        for layer, convert in zip(self.layers, self.convert):
            x = (layer.forward_last if layer.channels_last else layer.forward)(_to(convert, x))
        return _to(self.convert_out, x)

    def _backward(self, i, dy, need_dx):
        layer = self.layers[i]
        return (layer.backward_last if layer.channels_last else layer.backward)(dy, need_dx)

    def predict(self, x, batch_size=1024):
        """Outputs (N, K) for inputs (N, C, H, W), in batches to bound memory."""
        n = x.shape[0]
        outputs = []
        for start in range(0, n, batch_size):
            batch = np.asarray(x[start : start + batch_size], dtype=self.dtype)
            out = self.forward(batch)
            outputs.append(out.reshape(out.shape[0], -1))
        if not outputs:
            return np.zeros((0, self.output_width), dtype=self.dtype)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    @property
    def output_width(self):
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return int(np.prod(shape))

    def sample_losses(self, out, y):
        """Per-sample losses (N,) of outputs `out` (after forward) against targets y (N, K)."""
        if self.fused:
            return self.loss.value_from_z(self.layers[-1].z, out, y)
        return self.loss.value(out.reshape(out.shape[0], -1), y)

    def kept_metrics(self, kept):
        """(per-sample losses, correct count) of the batches kept by gradient(keep=…)."""
        if not kept:
            return np.zeros(0), 0
        out = np.concatenate([o.reshape(o.shape[0], -1) for _, o, _ in kept])
        y = np.concatenate([t for _, _, t in kept])
        if self.fused:
            losses = self.loss.value_from_z(np.concatenate([z for z, _, _ in kept]), out, y)
        else:
            losses = self.loss.value(out, y)
        return losses, self.correct(out, y)

    def correct(self, out, y):
        """How many samples are classified right (argmax, or the threshold for one output)."""
        out = out.reshape(out.shape[0], -1)
        if out.shape[1] > 1:
            return int(np.count_nonzero(out.argmax(axis=1) == y.argmax(axis=1)))
        return int(np.count_nonzero((out[:, 0] > self.threshold) == (y[:, 0] > 0.5)))

    def adapt_to_targets(self, y):
        """Learn what the targets (N, K) of a data set allow.

        Single-output classification with ±1 targets splits outputs at 0
        rather than 0.5; one-hot targets simplify the fused gradient.
        """
        if y.shape[1] == 1 and y.size and float(y.min()) < 0:
            self.threshold = 0.0
        self.unit_rows = bool(y.size) and bool(np.all(np.add.reduce(y, axis=1) == 1))

    def classes(self, out):
        out = out.reshape(out.shape[0], -1)
        if out.shape[1] > 1:
            return out.argmax(axis=1)
        return (out[:, 0] > self.threshold).astype(np.int64)

    def evaluate(self, x, y, batch_size=1024):
        """(sum of per-sample losses, correct count, predicted classes) over a whole data set."""
        loss_sum, correct, classes = 0.0, 0, []
        for start in range(0, x.shape[0], batch_size):
            xb = np.asarray(x[start : start + batch_size], dtype=self.dtype)
            yb = y[start : start + batch_size]
            out = self.forward(xb)
            loss_sum += float(self.sample_losses(out, yb).sum())
            correct += self.correct(out, yb)
            classes.append(self.classes(out))
        classes = np.concatenate(classes) if classes else np.zeros(0, dtype=np.int64)
        return loss_sum, correct, classes

    def gradient(self, x, y, scale=1.0, keep=None):
        """Forward and backward on one batch: (per-sample losses, correct count).

        Leaves scale × ∂(Σ losses)/∂θ in each layer's `grads`.  When `keep` is
        a list, the losses are not computed now: the batch's outputs are
        appended to it, and `kept_metrics(keep)` computes them later for many
        batches at once; (None, None) is returned.
        """
        out = self.forward(x)
        last = self.layers[-1]
        if keep is None:
            losses = self.sample_losses(out, y)
            correct = self.correct(out, y)
        else:
            keep.append((last.z if self.fused else None, out, y))
            losses = correct = None
        if self.fused:
            dz = self.loss.grad_from_z(last.z, last.a, y, self.unit_rows)
            if scale != 1.0:
                dz *= scale
            dx = last.backward_z(dz, need_dx=len(self.layers) - 1 > self.first_trainable)
        else:
            flat = out.reshape(out.shape[0], -1)
            dout = self.loss.grad(flat, y)
            if scale != 1.0:
                dout *= scale
            dout = _from(self.convert_out, dout.reshape(out.shape))
            dx = self._backward(len(self.layers) - 1, dout, len(self.layers) - 1 > self.first_trainable)
        for i in range(len(self.layers) - 2, self.first_trainable - 1, -1):
            dx = self._backward(i, _from(self.convert[i + 1], dx), i > self.first_trainable)
        return losses, correct
