"""DyNet's ASCII network description (Waibel's format, seed 002, section 2.4.1) read as a kerash model.

    6 units            the units, numbered from 0
    3 inputs           the input units, listed on the next line
    0 1 2
    1 outputs          the output units, listed on the next line
    5
    9 conns            then one connection a line: FROM TO [WEIGHT]
    0 3
    …

Input unit 0 is the bias (its activation is always 1; DyNet's initnet calls
it so), unless bias=False.  A third column names a connection's weight:
connections naming the same weight share it (tied weights, as in a
time-delay network).  The network is not recursive; units are put in
layers by depth (a unit's layer is one more than the deepest unit feeding
it), each layer a `connect` node of sigmoid units (DyNet's) reading the
layers before it side by side, and the output layer last, with the mse
loss.  The result is an MDL description, which kerash summary counts as
initnet did: units, inputs, outputs, connections, real weights.
"""

from ..errors import ModelError


def _numbers(line, where, lineno, count=None):
    try:
        values = [int(v) for v in line.split()]
    except ValueError:
        raise ModelError(f"{where}:{lineno}: expected whole numbers, found {line.strip()!r}") from None
    if count is not None and len(values) != count:
        raise ModelError(f"{where}:{lineno}: expected {count} unit numbers, found {len(values)}")
    return values


def _header(lines, where, word):
    lineno, line = next(lines, (None, None))
    if line is None:
        raise ModelError(f"{where}: ended before the '{word}' line")
    parts = line.split()
    if len(parts) != 2 or parts[1].rstrip("s") != word.rstrip("s") or not parts[0].isdigit():
        raise ModelError(f"{where}:{lineno}: expected 'N {word}', found {line.strip()!r}")
    return int(parts[0]), lineno


def read_net(text, where="<net>", bias=True):
    """An MDL description (text) of the DyNet network `text`."""
    lines = ((n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.strip().startswith("#") and line.strip() != "NETWORK FILE:")
    units, _ = _header(lines, where, "units")
    count, lineno = _header(lines, where, "inputs")
    lineno, line = next(lines, (lineno, ""))
    inputs = _numbers(line, where, lineno, count)
    count, lineno = _header(lines, where, "outputs")
    lineno, line = next(lines, (lineno, ""))
    outputs = _numbers(line, where, lineno, count)
    count, lineno = _header(lines, where, "conns")
    conns = []
    for lineno, line in lines:
        values = line.split()
        if len(values) not in (2, 3) or not all(v.isdigit() for v in values[:2]):
            raise ModelError(f"{where}:{lineno}: a connection is 'FROM TO [WEIGHT]', found {line.strip()!r}")
        conns.append((int(values[0]), int(values[1]), values[2] if len(values) == 3 else None, lineno))
    if len(conns) != count:
        raise ModelError(f"{where}: {count} conns announced, {len(conns)} listed")
    seen = {}
    for source, target, weight, lineno in conns:
        if (source, target) in seen:
            raise ModelError(f"{where}:{lineno}: the connection {source} {target} again (line {seen[(source, target)]})")
        seen[(source, target)] = lineno
        if weight is not None and not weight.replace("_", "").isalnum():
            raise ModelError(f"{where}:{lineno}: a weight's name is letters, digits and _, not {weight!r}")
    for source, target, _, lineno in conns:
        if source >= units or target >= units:
            raise ModelError(f"{where}:{lineno}: unit {max(source, target)} of a network of {units} units")
        if target in inputs:
            raise ModelError(f"{where}:{lineno}: a connection into input unit {target}")
    bias_unit = 0 if bias and 0 in inputs else None
    data_inputs = [u for u in inputs if u != bias_unit]
    if not data_inputs:
        raise ModelError(f"{where}: no input unit besides the bias")
    depth = {u: 0 for u in inputs}
    feeding = {}
    for source, target, weight, _ in conns:
        feeding.setdefault(target, []).append((source, weight))
    pending = sorted(set(feeding) - set(inputs))
    while pending:
        ready = [u for u in pending if all(s in depth for s, _ in feeding[u])]
        if not ready:
            raise ModelError(f"{where}: the network is recursive (unit {pending[0]} feeds itself through others); "
                             "DyNet's networks are not")
        for u in ready:
            depth[u] = 1 + max(depth[s] for s, _ in feeding[u])
        pending = [u for u in pending if u not in depth]
    if any(u not in depth for u in outputs):
        raise ModelError(f"{where}: output unit {next(u for u in outputs if u not in depth)} has no connection")
    last = max(depth.values())
    deepest = sorted(u for u, d in depth.items() if d == last)
    if sorted(outputs) != deepest:
        raise ModelError(f"{where}: kerash builds layers by depth: the output units ({' '.join(map(str, outputs))}) "
                         f"must be exactly the deepest ones ({' '.join(map(str, deepest))})")
    layer_of = {}  # a named weight may be shared within one layer (one connect node), not across layers
    for source, target, weight, lineno in conns:
        if weight is not None:
            level = depth[target]
            if layer_of.setdefault(weight, (level, lineno))[0] != level:
                raise ModelError(f"{where}:{lineno}: weight {weight} is shared by units of layers {layer_of[weight][0]} "
                                 f"and {level} (line {layer_of[weight][1]}): kerash ties weights within a layer only")
    out = [f"# read by kerash dynet from {where}: {units} units, {len(inputs)} inputs, {len(outputs)} outputs, "
           f"{len(conns)} conns", f"(input, {len(data_inputs)})"]
    available = list(data_inputs)  # the units side by side that the next layer reads
    previous = "input"
    for level in range(1, last + 1):
        layer_units = outputs if level == last else sorted(u for u, d in depth.items() if d == level)
        position = {u: k for k, u in enumerate(available)}
        items = []
        for k, u in enumerate(layer_units):
            for source, weight in feeding[u]:
                tie = f"=w{weight}" if weight is not None else ""
                items.append(f"b:{k}{tie}" if source == bias_unit else f"{position[source]}:{k}{tie}")
        name = "output" if level == last else f"h{level}"
        loss = ", <mse>" if level == last else ""
        out.append(f"({name}, {len(layer_units)}, <connect, {', '.join(items)}>, <sigmoid>{loss})")
        if level < last:
            out.append(f"{{v{level + 1}, {previous}, concatenate}}")
            previous = f"v{level + 1}"
            available = layer_units + available
    return "\n".join(out) + "\n"
