"""The folder ``install_as_lightning()`` puts on ``PYTHONPATH``: its ``sitecustomize`` makes every Python
process started from an aliased one import Ember for Lightning's names, whatever starts it.

See ``sitecustomize.py``.
"""
