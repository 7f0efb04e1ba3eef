"""Lightning's import path for the hyperparameters mixin: ``from ember.core.mixins import HyperparametersMixin``."""

from ember.core.hparams import HyperparametersMixin

__all__ = ["HyperparametersMixin"]
