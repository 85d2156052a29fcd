"""porthub's version, in a module of its own so that any layer may read it without importing the
package facade (``porthub/__init__.py`` sits at the top of the import graph)."""

__version__ = "0.1.0"
