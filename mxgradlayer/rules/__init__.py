# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Derivative rules, one module per operator family; importing registers them."""
from . import elementwise, arithmetic, reduce, shape, linalg, conv, norm, indexing  # noqa: F401
from . import numpy  # noqa: F401  (after the others: it lowers onto their operators)
