"""Numpy-only geometry that a family's models (both frameworks) and its spec share, so that models never
import ``converters/`` and the two twins compute one rule: one module per family that needs it."""
