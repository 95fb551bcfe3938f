# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""ONNX export of derivative blocks, for serving them outside MXNet.

A derived graph holds only forward MXNet operators, so MXNet's own exporter
(``mx.onnx``, opset 13 translations) can write it, given what it lacks:

* translations of operators the rules emit and the exporter does not know (``erf``,
  ``sign``, ``rsqrt``, ``sinh``, ``cosh``, ``_eye``, ``im2col``, ``col2im``, ...);
* a ``Reshape`` for every use of MXNet's special codes 0, -1, -2, -3, -4 (the exporter
  takes a few fixed patterns; folding directions into the batch axis needs them all),
  built from the tensor's runtime shape so the batch axis stays dynamic;
* replacements of translations that compute something else or fail: ``dot`` of arrays
  of more than two axes (MXNet's exporter writes ONNX MatMul, which batches instead of
  contracting), ``_rminus_scalar`` / ``_rdiv_scalar`` (operand order taken from the
  node's *name*), ``reverse`` (rejected by onnxruntime), sum ``Pooling`` (refused), and
  ``softrelu`` (onnxruntime's Softplus kernel is slow).

They are registered only for the duration of one `export_onnx` call, so MXNet's
exporter is unchanged for everything else in the process.  Whatever is still missing
is refused before anything is written, naming the operator.  A written model is run in
onnxruntime at two batch sizes against MXNet before `export_onnx` returns; a difference
beyond rounding sends every node through a check of its ONNX form against MXNet's
operator on the same operands, which names the node that computes something else.
"""
import json
import os
import re
import warnings

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon

from ..errors import MXGradLayerError, ExportError, InputSpecError
from ..ir import apply_op
from ..tracing import TraceOptions, computing_as
from .translations import OPSET, TRANSLATIONS, registered, tensor_type

__all__ = ['export_onnx', 'exportable_ops']


def export_onnx(block, path, *example_inputs, input_names=None, output_names=None,
                dynamic_batch=True, verify=True, rtol=1e-4):
    """Write an ONNX model of a (derivative) block.

    Parameters
    ----------
    block : gluon.HybridBlock
        Any derivative block of mxgradlayer (nested ones too) or a plain network; its
        parameters must be initialised.  It is called, not hybridized or changed.
    path : str
        The ``.onnx`` file to write.
    *example_inputs : NDArray
        One array per input of ``block`` (for `JVP`, `VJP`, `HVP` the direction too),
        as the block is called.  They fix every axis but the batch axis.
    input_names, output_names : list of str, optional
        Names of the model's inputs and outputs; default ``input0, input1, ...`` and
        ``output0, output1, ...`` in the order the block takes and returns them.
    dynamic_batch : bool, default True
        Leave axis 0 of every input (and of each output whose axis 0 is the batch) free.
    verify : bool, default True
        Run the written model in onnxruntime (the ``onnx`` extra) on the example inputs
        and on a batch one larger and compare with MXNet.  Where an output differs by
        more than ``rtol`` (relative to the largest magnitude among it and its last
        operator's operands), every node's ONNX form is run against MXNet's operator on
        onnxruntime's own operands: one that differs deletes the file and raises; if
        none does, the difference is float32 rounding amplified by the network (a ReLU
        mask or max-pool tie that flips), and a `RuntimeWarning` says so.
    rtol : float, default 1e-4
        Tolerance of the check.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ExportError
        The graph holds an operator (or an operator's setting) with no ONNX form here;
        nothing is written.
    MXGradLayerError
        The check found a node whose ONNX form computes something else than MXNet's
        operator; the file is deleted.

    Examples
    --------
    >>> import os, tempfile
    >>> import mxnet as mx, mxgradlayer as mg
    >>> net = mx.gluon.nn.Dense(1, in_units=2, activation='tanh')
    >>> net.initialize()
    >>> path = os.path.join(tempfile.mkdtemp(), 'grad.onnx')
    >>> mg.export_onnx(mg.InputGradient(net), path, mx.nd.ones((4, 2))) == path
    True
    >>> import onnxruntime, numpy as np
    >>> session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    >>> x = np.random.uniform(-1, 1, (7, 2)).astype('float32')   # another batch size
    >>> grad, = session.run(None, {'input0': x})
    >>> bool(np.allclose(grad, mg.InputGradient(net)(mx.nd.array(x)).asnumpy(), atol=1e-6))
    True
    """
    try:
        import onnx
    except ImportError as err:
        raise ImportError('export_onnx needs onnx (and onnxruntime to check what it '
                          'writes): pip install "mxgradlayer[onnx]"') from err
    if not isinstance(block, gluon.HybridBlock):
        raise InputSpecError(f'export_onnx needs a gluon.HybridBlock, got {type(block).__name__}')
    if not example_inputs or not all(isinstance(x, mx.nd.NDArray) for x in example_inputs):
        raise InputSpecError('export_onnx needs one example NDArray per input of the block, '
                             'e.g. export_onnx(mg.JVP(net), "jvp.onnx", x, v)')
    input_names = _names(input_names, 'input', len(example_inputs), 'input_names')
    reference = _outputs(block(*example_inputs))
    output_names = _names(output_names, 'output', len(reference), 'output_names')

    sym, params = traced_symbol(block, example_inputs, input_names)
    inputs = dict(zip(input_names, example_inputs))
    model = _onnx_model(sym, params, inputs, input_names, output_names,
                        [tuple(r.shape) for r in reference], dynamic_batch)
    onnx.save(model, path)
    if verify:
        try:
            _verify(path, block, sym, params, example_inputs, input_names, reference, rtol,
                    dynamic_batch)
        except Exception:
            os.remove(path)
            raise
    return path


def traced_symbol(block, example_inputs, input_names):
    """The block's graph as MXNet's exporter takes it (`_exportable`), traced for
    inference as a derivative block nested in another is traced as that one, and the
    values of the parameters it reads."""
    variables = [mx.sym.var(n, shape=x.shape, dtype=x.dtype)
                 for n, x in zip(input_names, example_inputs)]
    with autograd.pause(train_mode=False), computing_as(TraceOptions(training=False)):
        outs = _outputs(block(*variables))
    sym = _exportable(mx.sym.Group(outs) if len(outs) > 1 else outs[0])
    return sym, _parameter_values(block, sym, input_names)


def _onnx_model(sym, params, inputs, input_names, output_names, out_shapes, dynamic_batch):
    import onnx
    from onnx import helper
    nodes = json.loads(sym.tojson())['nodes']
    shapes = _node_shapes(sym, {n: x.shape for n, x in inputs.items()})
    _refuse_unsupported(nodes)
    # MXNet's exporter pairs shapes with its own order of the inputs
    order = [n for n in sym.list_inputs() if n not in params]
    in_shapes = [inputs[n].shape for n in order]
    in_types = [tensor_type(inputs[n].dtype) for n in order]
    dynamic = [(None,) + tuple(s[1:]) for s in in_shapes] if dynamic_batch else None
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    with registered(shapes), warnings.catch_warnings():
        # MXNet's translations use onnx.mapping, deprecated in onnx 1.16: not the user's
        warnings.filterwarnings('ignore', message='`mapping\\.', category=DeprecationWarning)
        try:
            graph = MXNetGraph().create_onnx_graph_proto(
                sym, params, in_shapes, in_types, opset_version=OPSET,
                dynamic=dynamic_batch, dynamic_input_shapes=dynamic)
        except (AttributeError, NotImplementedError, IndexError, KeyError, ValueError,
                AssertionError) as err:  # what MXNet's translations raise on what they lack
            op, node = _failing_op(err, nodes)
            raise ExportError(op, node, detail=str(err)) from err
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='mxgradlayer')
    batch = inputs[input_names[0]].shape[0] if dynamic_batch else None
    _name_interface(model, inputs, input_names, output_names, sym, out_shapes, batch)
    _drop_unused_initializers(model.graph)
    onnx.checker.check_model(model)
    return model


def _internals(sym):
    """A graph's internals: the Symbol, its output names, its JSON nodes, and
    (node index, output) -> output name."""
    internals = sym.get_internals()
    names = internals.list_outputs()
    nodes = json.loads(internals.tojson())['nodes']
    return internals, names, nodes, _tensor_names(nodes, names)


def _tensor_names(nodes, names):
    """(node index, output) -> the name of that output among a graph's internals."""
    by_node = {}
    for n in names:
        by_node.setdefault(re.sub(r'_output\d*$', '', n), []).append(n)
    tensor = {}
    for i, node in enumerate(nodes):
        for k, n in enumerate(sorted(by_node.get(node['name'], []), key=_output_index)):
            tensor[(i, k)] = n
    return tensor


def _operand_values(sym, params, inputs):
    """Per node output, the largest magnitude among it and the operands of its node (in
    MXNet): the scale its rounding error is relative to (a sum that cancels to 0 has an
    error of its operands' size)."""
    internals, names, nodes, tensor = _internals(sym)
    values = dict(zip(names, _evaluate(internals, {**inputs, **params})))
    scales = {}
    for i, node in enumerate(nodes):
        operands = [values[tensor[(j, k)]] for j, k, *_ in node.get('inputs', [])]
        for k in range(len(names)):
            if (i, k) not in tensor:
                break
            mine = values[tensor[(i, k)]]
            scales[tensor[(i, k)]] = max(_magnitude(v) for v in operands + [mine])
    return scales


def _evaluate(group, arguments):
    """MXNet's values of a graph's internal outputs.  Bound without the oneDNN subgraph
    pass: it fuses a convolution with its BatchNorm and then fails to bind the fused node
    when the BatchNorm's input is an output too (common.h:59, 3 vs. 4 inputs)."""
    saved = os.environ.get('MXNET_SUBGRAPH_BACKEND')
    os.environ['MXNET_SUBGRAPH_BACKEND'] = 'NONE'
    try:
        return group.eval(ctx=mx.cpu(), **arguments)
    finally:
        if saved is None:
            del os.environ['MXNET_SUBGRAPH_BACKEND']
        else:
            os.environ['MXNET_SUBGRAPH_BACKEND'] = saved


def _output_index(name):
    found = re.search(r'_output(\d+)$', name)
    return int(found.group(1)) if found else 0


def _magnitude(value):
    value = value.asnumpy() if isinstance(value, mx.nd.NDArray) else value
    return float(np.abs(value).max()) if value.size else 0.0


def _first_difference(sym, params, cases, rtol):
    """The first node (in graph order) whose ONNX translation, run in onnxruntime,
    differs from MXNet's operator applied to the same operand values: (node name, op),
    or None when every translation agrees.  Each node is judged on onnxruntime's own
    operands, so rounding upstream -- a ReLU mask or a max-pool tie that flips -- is not
    blamed on it."""
    import onnxruntime
    internals, names, nodes, tensor = _internals(sym)
    inputs = cases[0]
    keep = [i for i, n in enumerate(names) if n not in inputs and n not in params]
    group = mx.sym.Group([internals[i] for i in keep])
    _, shapes, _ = group.infer_shape(**{n: x.shape for n, x in inputs.items()})
    model = _onnx_model(group, params, inputs, list(inputs), [f'probe{i}' for i in keep],
                        shapes, dynamic_batch=True)
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=['CPUExecutionProvider'])
    present = {i.name for i in session.get_inputs()}
    for case in cases:
        got = session.run(None, {n: x.asnumpy() for n, x in case.items() if n in present})
        values = dict(zip([names[i] for i in keep], got))
        values.update({n: x.asnumpy() for n, x in list(case.items()) + list(params.items())})
        for i, node in enumerate(nodes):
            if node['op'] == 'null':
                continue
            operands = [values[tensor[(j, k)]] for j, k, *_ in node['inputs']]
            expected = apply_op(mx.nd, node['op'], [mx.nd.array(v, dtype=v.dtype)
                                                    for v in operands], node.get('attrs'))
            for k, e in enumerate(expected):
                if (i, k) not in tensor:
                    continue
                e = e.asnumpy()
                scale = max([_magnitude(v) for v in operands] + [_magnitude(e)])
                if _relative_error(values[tensor[(i, k)]], e, scale) > rtol:
                    return node['name'], node['op']
    return None


def _relative_error(got, expected, scale):
    if got.shape != expected.shape:
        return np.inf
    if not expected.size:
        return 0.0
    return float(np.abs(got - expected).max()) / max(scale, 1e-30)


def _names(names, prefix, count, what):
    if names is None:
        return [f'{prefix}{i}' for i in range(count)]
    names = list(names)
    if len(names) != count or len(set(names)) != count:
        raise InputSpecError(f'{what} needs {count} distinct names, got {names}')
    return names


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _exportable(sym):
    """The graph as MXNet's exporter can take it: node names unique (it keys tensors
    by name), and a sum of folded directions -- add_n over all outputs of one split
    along axis 0 -- written as a reshape and a sum (the exporter finds at most 100
    outputs of one node; a Laplacian of a 3x8x8 image has 192 directions)."""
    graph = json.loads(sym.tojson())
    nodes = graph['nodes']
    seen = set()
    for i, node in enumerate(nodes):
        if node['name'] in seen:
            node['name'] = f"{node['name']}_n{i}"
        seen.add(node['name'])
    consumers = {}
    for i, node in enumerate(nodes):
        for inp in node.get('inputs', []):
            consumers.setdefault(inp[0], set()).add(i)
    for head in graph['heads']:
        consumers.setdefault(head[0], set()).add(-1)
    for i, node in enumerate(nodes):
        if node['op'] != 'add_n' or not node['inputs']:
            continue
        source = node['inputs'][0][0]
        split = nodes[source]
        attrs = split.get('attrs', {})
        count = int(attrs.get('num_outputs', 0)) if split['op'] == 'SliceChannel' else 0
        if (count and attrs.get('axis', '1') == '0' and attrs.get('squeeze_axis', 'False')
                in ('False', '0', 'false') and consumers[source] == {i}
                and [inp[:2] for inp in node['inputs']] == [[source, k] for k in range(count)]):
            split['op'], split['attrs'] = 'Reshape', {'shape': f'(-4, {count}, -1, -2)'}
            node['op'], node['attrs'] = 'sum', {'axis': '0'}
            node['inputs'] = [[source, 0, 0]]
    return mx.sym.load_json(json.dumps(graph))


def _parameter_values(block, sym, input_names):
    values = {p.name: p for p in block.collect_params().values()}
    params = {}
    for name in sym.list_arguments() + sym.list_auxiliary_states():
        if name in input_names:
            continue
        if name not in values:
            raise InputSpecError(
                f"the traced graph reads '{name}', which is neither an input nor a "
                f"parameter of the block; pass every input the block takes")
        params[name] = values[name].data()
    return params


def _node_shapes(sym, input_shapes):
    """Static shape of every node output at the example shapes, by (node, output)."""
    internals, names, _, tensor = _internals(sym)
    arguments = set(sym.list_arguments())
    _, out_shapes, _ = internals.infer_shape(
        **{n: s for n, s in input_shapes.items() if n in arguments})
    by_name = dict(zip(names, out_shapes))
    return {key: by_name[n] for key, n in tensor.items()}


def exportable_ops():
    """The MXNet operators `export_onnx` can write (MXNet's exporter's and
    mxgradlayer's translations), sorted.  Some take only some settings; those are
    refused by name when met."""
    return sorted(_known_ops())


def _known_ops():
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    known = set(TRANSLATIONS)
    for version, table in MXNetGraph.registry_.items():
        if version <= OPSET:
            known.update(table)
    return known


def _refuse_unsupported(nodes):
    known = _known_ops()
    missing = sorted({n['op'] for n in nodes if n['op'] != 'null' and n['op'] not in known})
    if missing:
        where = [n['name'] for n in nodes if n['op'] in missing][:3]
        raise ExportError(', '.join(missing), ', '.join(where),
                          detail="neither MXNet 1.9.1's exporter nor mxgradlayer translates it")
    for node in nodes:  # the exporter looks for a node's outputs among 100 names
        count = int(node.get('attrs', {}).get('num_outputs', 1))
        if count > 100:
            raise ExportError(node['op'], node['name'],
                              detail=f"{count} outputs; MXNet's exporter finds at most 100")


def _failing_op(err, nodes):
    """(op, node) an exporter error names: MXNet's translations name the operator,
    seldom the node."""
    text = str(err)
    for node in nodes:
        if node['op'] != 'null' and node['name'] in text:
            return node['op'], node['name']
    for op in sorted({n['op'] for n in nodes}, key=len, reverse=True):
        if op != 'null' and op in text:
            return op, next(n['name'] for n in nodes if n['op'] == op)
    return 'unknown', ''


def _name_interface(model, inputs, input_names, output_names, sym, out_shapes, batch):
    """Every input of the block, in its order, without the initializers MXNet's
    exporter lists beside them (an input the outputs do not depend on -- the direction
    of a ReLU network's HVP, which is 0 -- is declared all the same, so callers feed the
    same names); outputs renamed in the block's order (the exporter lists them in graph
    order, named by node)."""
    from onnx import helper
    graph = model.graph
    initialized = {t.name for t in graph.initializer}
    present = {v.name: v for v in graph.input if v.name not in initialized}
    del graph.input[:]
    for name in input_names:
        value = present.get(name) or helper.make_tensor_value_info(
            name, tensor_type(inputs[name].dtype), list(inputs[name].shape))
        if batch is not None:
            value.type.tensor_type.shape.dim[0].dim_param = 'batch'
        graph.input.append(value)
    produced = [_exported_name(n) for n in sym.list_outputs()]
    arguments = set(sym.list_arguments())
    _, out_types, _ = sym.infer_type_partial(
        **{n: x.dtype for n, x in inputs.items() if n in arguments})
    del graph.output[:]
    for source, name, shape, dtype in zip(produced, output_names, out_shapes, out_types):
        graph.node.append(helper.make_node('Identity', [source], [name], name=name))
        dims = list(shape)
        if batch is not None and dims and dims[0] == batch:
            dims[0] = 'batch'
        graph.output.append(helper.make_tensor_value_info(name, tensor_type(dtype), dims))


def _drop_unused_initializers(graph):
    """MXNet's exporter folds a scalar operation on a parameter into a new initializer
    (BatchNorm's var + eps) and keeps the old one too: a second copy in the file."""
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _exported_name(output):
    """The tensor name MXNet's exporter gives output k of a node: the node's name, plus
    k for a node of several outputs."""
    if output.endswith('_output'):
        return output[:-len('_output')]
    found = re.search(r'_output(\d+)$', output)
    return output[:found.start()] + found.group(1) if found else output


def _verify(path, block, sym, params, example_inputs, input_names, reference, rtol,
            dynamic_batch):
    """Run the written model against MXNet on the example inputs and on a batch one
    larger.  An output beyond ``rtol`` (relative to the magnitude of its last operator's
    operands) sends every node through `_first_difference`: a translation that computes
    something else raises; none found, the difference is float32 rounding that the
    network amplifies (a ReLU mask or max-pool tie flipped), and is reported as a
    warning, not refused."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError('export_onnx(verify=True) runs the model in onnxruntime: '
                          'pip install "mxgradlayer[onnx]", or pass verify=False') from err
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    present = {i.name for i in session.get_inputs()}
    cases = [(example_inputs, reference)]
    if dynamic_batch:
        n = example_inputs[0].shape[0]
        # (as_nd_ndarray: NumPy-interface examples are concatenated as legacy arrays)
        other = [mx.nd.concat(x.as_nd_ndarray(), x[:1].as_nd_ndarray(), dim=0)
                 if x.shape[0] == n else x for x in example_inputs]
        if mx.util.is_np_array():
            other = [x.as_np_ndarray() for x in other]
        cases.append((other, _outputs(block(*other))))
    worst = None  # (error, output name, batch size)
    for xs, expected in cases:
        try:
            got = session.run(None, {n: x.asnumpy() for n, x in zip(input_names, xs)
                                     if n in present})
        except Exception as err:  # onnxruntime's own error types are not exported
            raise MXGradLayerError(
                f'onnxruntime could not run the written model at batch size '
                f'{xs[0].shape[0]}: {err}. The file was deleted; please report it with '
                f'the network.') from err
        scales = None
        for name, source, g, e in zip(session.get_outputs(), sym.list_outputs(), got, expected):
            e = e.asnumpy()
            if g.shape != e.shape:
                raise MXGradLayerError(
                    f"the ONNX model's output '{name.name}' has shape {g.shape} where MXNet's "
                    f"has {e.shape} (batch size {xs[0].shape[0]}); the file was deleted. "
                    f"Please report it with the network.")
            error = _relative_error(g, e, _magnitude(e))
            if error > rtol:
                scales = scales or _operand_values(sym, params, dict(zip(input_names, xs)))
                error = _relative_error(g, e, scales[source])
            if error > rtol and (worst is None or error > worst[0]):
                worst = (error, name.name, xs[0].shape[0])
    if worst is None:
        return
    culprit = _first_difference(sym, params, [dict(zip(input_names, xs)) for xs, _ in cases],
                                rtol)
    if culprit is not None:
        raise MXGradLayerError(
            f"the ONNX model's output '{worst[1]}' differs from MXNet's at batch size "
            f"{worst[2]} (relative error {worst[0]:.2e} > {rtol:.0e}): the ONNX form of "
            f"node '{culprit[0]}' (operator '{culprit[1]}') computes something else than "
            f"MXNet's operator on the same operands. The file was deleted; please report "
            f"it with the network.")
    warnings.warn(
        f"the ONNX model's output '{worst[1]}' differs from MXNet's by {worst[0]:.1e} "
        f"(relative, batch size {worst[2]}), but the ONNX form of every operator agrees "
        f"with MXNet's on the same operands: float32 rounding, amplified where the network "
        f"has kinks (a ReLU mask or a max-pool tie that flips). The model was kept.",
        RuntimeWarning, stacklevel=3)
