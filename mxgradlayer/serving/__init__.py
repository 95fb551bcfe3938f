# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""ONNX export of derivative blocks: `export_onnx` (export.py) and the ONNX forms
mxgradlayer supplies beside MXNet's exporter (translations.py)."""
from .export import export_onnx, exportable_ops
from .translations import OPSET

__all__ = ['export_onnx', 'exportable_ops', 'OPSET']
