"""``ServableModule``: the four methods that make a model servable, mixed into a ``LightningModule``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class ServableModule(ABC, torch.nn.Module):
    """What a server needs from a model: a sample request, how to turn the request into ``serve_step``'s
    inputs and its outputs into the response, the step itself, and the response the sample should get.

    ``ServableModuleValidator`` serves the model once with these and checks the answer.

    Example::

        class ServableClassifier(Classifier, ServableModule):
            def configure_payload(self):
                return {"body": {"x": [[0.0] * 32]}}

            def configure_serialization(self):
                return {"x": lambda x: torch.tensor(x, dtype=torch.float)}, {"output": lambda y: y.tolist()}

            def serve_step(self, x):
                return {"output": self(x).argmax(-1)}

            def configure_response(self):
                return {"output": [3]}
    """

    @abstractmethod
    def configure_payload(self) -> dict[str, Any]:
        """A sample request, as a dict with its inputs under ``"body"``."""

    @abstractmethod
    def configure_serialization(self) -> tuple[dict[str, Callable], dict[str, Callable]]:
        """Two dicts: for each input of ``serve_step``, the function that turns the request's value into it
        (e.g. a list into a tensor); for each output, the function that turns it into the response's value."""

    @abstractmethod
    def serve_step(self, *args: Tensor, **kwargs: Tensor) -> dict[str, Tensor]:
        """The prediction for one request: the deserialized inputs in, a dict of tensors out."""

    @abstractmethod
    def configure_response(self) -> dict[str, Any]:
        """The response the sample request must get."""
