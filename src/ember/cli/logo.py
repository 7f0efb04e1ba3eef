"""``cli_lightning_logo()``: the banner Lightning's example scripts print as they start. Ember prints its own.

Example::

    from lightning.pytorch import cli_lightning_logo   # under the alias: this function

    if __name__ == "__main__":
        cli_lightning_logo()
"""

from __future__ import annotations

EMBER_LOGO = r"""
        (
         )  )
        (  (  (
      )  ) )  )
     (  ( (  (  (
    ____________________
   |  E  M  B  E  R     |
    --------------------
"""


def cli_lightning_logo() -> None:
    """Print Ember's banner in colour, between blank lines (Lightning prints its own logo there)."""
    print()
    print("\033[0;33m" + EMBER_LOGO + "\033[0m")
    print()
