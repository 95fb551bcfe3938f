# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Exceptions raised by mxgradlayer, each saying what is wrong and what to do."""

__all__ = ['MXGradLayerError', 'UnsupportedOperatorError', 'SampleCouplingError',
           'InputSpecError', 'ExportError']


class MXGradLayerError(Exception):
    """Base class of every error mxgradlayer raises on purpose."""


class UnsupportedOperatorError(MXGradLayerError, NotImplementedError):
    """An operator on the path from a differentiated input to an output has no rule.

    Raised when a derivative block is built for a network (its first call), never
    later during training, and never replaced by a number.
    """

    def __init__(self, op, node, mode, detail=''):
        self.op, self.node, self.mode, self.detail = op, node, mode, detail
        where = f" in node '{node}'" if node else ''
        extra = f' ({detail})' if detail else ''
        super().__init__(
            f"mxgradlayer has no {mode} rule for operator '{op}'{where}{extra}. "
            f"The derivative of this network cannot be formed exactly, so it is refused. "
            f"See mxgradlayer.supported_ops() for the covered operators, or "
            f"mxgradlayer.check(net, *inputs) for a per-node report.")


class SampleCouplingError(MXGradLayerError):
    """A per-sample block met an operator that mixes the samples of a batch."""

    def __init__(self, op, node, why):
        self.op, self.node, self.why = op, node, why
        super().__init__(
            f"Operator '{op}' in node '{node}' mixes samples of the batch ({why}); "
            f"per-sample blocks (Jacobian, Hessian, Laplacian, Divergence, JVP with "
            f"several directions) assume that sample i of the output depends only on "
            f"sample i of the input. Use InputGradient, VJP or HVP, which compute exact "
            f"total derivatives of the summed output; or pass couple_samples=True to take "
            f"derivatives along shifts of the whole batch; or remove the coupling (for "
            f"BatchNorm: evaluate outside training, or use_global_stats=True).")


class InputSpecError(MXGradLayerError, ValueError):
    """The inputs given to a derivative block do not fit it (count, rank, dtype, wrt)."""


class ExportError(MXGradLayerError, NotImplementedError):
    """`export_onnx` met an operator (or an operator's setting) with no ONNX form.

    Raised before a file is written, naming the operator and the node.
    """

    def __init__(self, op, node, detail=''):
        self.op, self.node, self.detail = op, node, detail
        where = f" (node '{node}')" if node else ''
        extra = f': {detail}' if detail else ''
        super().__init__(
            f"cannot export operator '{op}'{where} to ONNX{extra}. Nothing was written. "
            f"mxgradlayer.exportable_ops() lists the operators that export; a network "
            f"written with other operators of the same function exports.")
