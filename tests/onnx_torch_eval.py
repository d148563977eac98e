#!/usr/bin/python3
"""Runs an ONNX file written by vitlab with PyTorch ops, for `make test` (tests/test-onnx.c).

Debian's python3-onnx (1.12) has no reference evaluator and ONNX Runtime is not a Debian
package (`make interop` installs it from npm), so this evaluates the graph node by node with
torch.nn.functional, in float64, from each operator's definition in the ONNX specification
(opset 17) for the operators and attributes vitlab's exports use; any other operator or attribute
value is an error, never skipped.

    /usr/bin/python3 tests/onnx_torch_eval.py MODEL.onnx IMAGES.safetensors[:TENSOR] OUT.safetensors

IMAGES is a safetensors file holding the input (N, C, S, S) as float32 under TENSOR ("images"
when not named); OUT receives every graph output as float32 under its output name.
"""

import json
import struct
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def read_safetensors(path, name):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    if name not in header:
        sys.exit(f"{path}: no tensor {name}")
    t = header[name]
    if t["dtype"] != "F32":
        sys.exit(f"{path}: tensor {name} is {t['dtype']}, not F32")
    b, e = t["data_offsets"]
    return np.frombuffer(buf[8 + n + b:8 + n + e], dtype="<f4").reshape(t["shape"])


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def attrs(node):
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def pad_nchw(x, pads, value=0.0):
    """ONNX pads (top, left, bottom, right) as F.pad's (left, right, top, bottom)."""
    t, l, b, r = pads
    if t == l == b == r == 0:
        return x
    return F.pad(x, (l, r, t, b), value=value)


def conv(x, w, b=None, kernel_shape=None, strides=(1, 1), pads=(0, 0, 0, 0), group=1,
         dilations=(1, 1), auto_pad="NOTSET"):
    if auto_pad != "NOTSET" or list(dilations) != [1, 1] or x.dim() != 4:
        raise NotImplementedError("Conv: only 2-D, explicit pads, no dilation")
    if kernel_shape is not None and list(kernel_shape) != list(w.shape[2:]):
        raise ValueError("Conv: kernel_shape is not the weight's")
    return F.conv2d(pad_nchw(x, pads), w, b, stride=tuple(strides), groups=group)


def max_pool(x, kernel_shape, strides=(1, 1), pads=(0, 0, 0, 0), ceil_mode=0, auto_pad="NOTSET",
             storage_order=0, dilations=(1, 1)):
    if auto_pad != "NOTSET" or ceil_mode or list(dilations) != [1, 1]:
        raise NotImplementedError("MaxPool: only explicit pads, floor mode, no dilation")
    return F.max_pool2d(pad_nchw(x, pads, float("-inf")), tuple(kernel_shape), tuple(strides))


def reshape(x, shape, allowzero=0):
    shape = [int(d) for d in shape]
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def reduce(fn):
    def run(x, axes=None, keepdims=1):
        axes = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
        for a in sorted(axes, reverse=True):
            x = fn(x, a, bool(keepdims))
        return x
    return run


def layer_norm(x, w, b=None, axis=-1, epsilon=1e-5, stash_type=1):
    if axis != -1:
        raise NotImplementedError("LayerNormalization: axis -1 only")
    return F.layer_norm(x, (x.shape[-1],), w, b, epsilon)


def batch_norm(x, w, b, mean, var, epsilon=1e-5, momentum=0.9, training_mode=0):
    if training_mode:
        raise NotImplementedError("BatchNormalization: inference only")
    return F.batch_norm(x, mean, var, w, b, False, 0.0, epsilon)


def shape(x, start=0, end=None):
    return torch.tensor(list(x.shape)[start:end], dtype=torch.int64)


def slice_(x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    idx = [slice(None)] * x.dim()
    for s, e, a, st in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps):
        idx[a] = slice(s, min(e, x.shape[a]), int(st))
    return x[tuple(idx)]


def expand(x, shape):
    return x.expand(torch.broadcast_shapes(x.shape, tuple(int(d) for d in shape)))


def gather(x, index, axis=0):
    return torch.index_select(x, axis, index.reshape(-1)).reshape(
        x.shape[:axis] + index.shape + x.shape[axis + 1:])


OPS = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b,
    "Sqrt": torch.sqrt,
    "Erf": torch.erf,
    "Sigmoid": torch.sigmoid,
    "Relu": torch.relu,
    "Identity": lambda x: x,
    "MatMul": torch.matmul,
    "Conv": conv,
    "MaxPool": max_pool,
    "GlobalAveragePool": lambda x: x.mean(dim=(2, 3), keepdim=True),
    "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm,
    "ReduceMean": reduce(lambda x, a, k: x.mean(dim=a, keepdim=k)),
    "ReduceMax": reduce(lambda x, a, k: x.amax(dim=a, keepdim=k)),
    "Softmax": lambda x, axis=-1: torch.softmax(x, dim=axis),
    "Reshape": reshape,
    "Transpose": lambda x, perm: x.permute(*perm),
    "Gather": gather,
    "Concat": lambda *xs, axis: torch.cat(xs, dim=axis),
    "Shape": shape,
    "Expand": expand,
    "Slice": slice_,
}


def run(model, pixels):
    values = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
              for t in model.graph.initializer}
    values = {k: v.double() if v.is_floating_point() else v for k, v in values.items()}
    values[model.graph.input[0].name] = torch.from_numpy(pixels.copy()).double()
    for node in model.graph.node:
        if node.op_type not in OPS:
            raise NotImplementedError(f"operator {node.op_type} ({node.name})")
        ins = [values[i] for i in node.input]
        out = OPS[node.op_type](*ins, **attrs(node))
        values[node.output[0]] = out
    return {o.name: values[o.name].float().numpy() for o in model.graph.output}


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, tensor = (sys.argv[2].split(":") + ["images"])[:2]
    model = onnx.load(sys.argv[1])
    with torch.no_grad():
        outs = run(model, read_safetensors(path, tensor))
    write_safetensors(sys.argv[3], outs)


if __name__ == "__main__":
    main()
