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

    def get_params(self):
        return {l.key: l.params for l in self.layers if l.params}

    # ------------------------------------------------------------ passes

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

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

    def correct(self, out, y):
        """How many samples are classified right (argmax, or the threshold for one output)."""
        out = out.reshape(out.shape[0], -1)
        if out.shape[1] > 1:
            return int(np.count_nonzero(out.argmax(axis=1) == y.argmax(axis=1)))
        return int(np.count_nonzero((out[:, 0] > self.threshold) == (y[:, 0] > 0.5)))

    def adapt_threshold(self, y):
        """Single-output classification with ±1 targets splits outputs at 0 rather than 0.5."""
        if y.shape[1] == 1 and y.size and float(y.min()) < 0:
            self.threshold = 0.0

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

    def gradient(self, x, y, scale=1.0):
        """Forward and backward on one batch: (per-sample losses, correct count).

        Leaves scale × ∂(Σ losses)/∂θ in each layer's `grads`.
        """
        out = self.forward(x)
        last = self.layers[-1]
        losses = self.sample_losses(out, y)
        correct = self.correct(out, y)
        if self.fused:
            dz = self.loss.grad_from_z(last.z, last.a, y)
            if scale != 1.0:
                dz *= scale
            dx = last.backward_z(dz, need_dx=len(self.layers) - 1 > self.first_trainable)
        else:
            flat = out.reshape(out.shape[0], -1)
            dout = self.loss.grad(flat, y)
            if scale != 1.0:
                dout *= scale
            dx = last.backward(dout.reshape(out.shape), need_dx=len(self.layers) - 1 > self.first_trainable)
        for i in range(len(self.layers) - 2, self.first_trainable - 1, -1):
            dx = self.layers[i].backward(dx, need_dx=i > self.first_trainable)
        return losses, correct
