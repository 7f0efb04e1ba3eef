"""``LightningCLI(parser_class=...)``: the default is ``None``, meaning ``LightningArgumentParser``, so that
``import ember.cli`` need not import jsonargparse (Lightning's default is the class itself, and it fails on
``parser_class=None`` with "'NoneType' object is not callable"). A parser class passed in is used."""

from __future__ import annotations

import inspect
import sys

import pytest
from tests.helpers.cli_models import Regressor

from ember.cli import LightningArgumentParser, LightningCLI


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["ember"])


def test_the_default_parser_class_is_none_and_none_builds_lightnings_parser():
    assert inspect.signature(LightningCLI.__init__).parameters["parser_class"].default is None
    cli = LightningCLI(Regressor, run=False, parser_class=None, args=["--trainer.max_epochs=1"])
    assert type(cli.parser) is LightningArgumentParser


def test_a_parser_class_passed_in_builds_the_parser():
    class OwnParser(LightningArgumentParser):
        pass

    cli = LightningCLI(Regressor, run=False, parser_class=OwnParser, args=["--trainer.max_epochs=1"])
    assert type(cli.parser) is OwnParser
