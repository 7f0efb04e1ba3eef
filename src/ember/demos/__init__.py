"""Small real models that ``make demo`` and the docs use.

Example::

    python -m ember.demos.digits --epochs 20
"""
