"""``ServableModuleValidator``: serve the model once when training starts, and check what comes back."""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import socket
import time
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from ember.callbacks.callback import Callback
from ember.serve.servable_module import ServableModule
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.model_helpers import is_overridden
from ember.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    from ember.core.module import LightningModule
    from ember.trainer.trainer import Trainer

_log = logging.getLogger(__name__)


class ServableModuleValidator(Callback):
    """Check, before any training, that the model can be served: at the start of ``fit`` (on rank 0) it
    starts a FastAPI server for a copy of the model in another process, sends it
    ``configure_payload()``, compares the answer with ``configure_response()`` and stops the server.
    A model that fails raises at once (``exit_on_failure``), before an epoch of work is spent.

    Args:
        optimization: how the model is exported for serving; only ``None`` (as it is) is supported.
        server: the server library; only ``"fastapi"`` is supported.
        host, port: where the server listens; the port must be free.
        timeout: seconds to wait for the server to start.
        exit_on_failure: raise when the server's answer is not a success.

    After the check, ``resp`` is the server's response (``requests.Response``) and ``successful`` says
    whether it was a success. Needs ``fastapi``, ``uvicorn`` and ``requests``.

    Example::

        validator = ServableModuleValidator(port=8081)
        Trainer(callbacks=[validator]).fit(ServableClassifier())
        validator.resp.json()   # {"output": [3]}
    """

    def __init__(
        self,
        optimization: Literal["trace", "script", "onnx", "tensorrt"] | None = None,
        server: Literal["fastapi", "ml_server", "torchserve", "sagemaker"] = "fastapi",
        host: str = "127.0.0.1",
        port: int = 8080,
        timeout: int = 20,
        exit_on_failure: bool = True,
    ) -> None:
        super().__init__()
        for package in ("fastapi", "uvicorn", "requests"):
            if importlib.util.find_spec(package) is None:
                raise ModuleNotFoundError(
                    f"ServableModuleValidator needs `{package}`, which is not installed:"
                    " `pip install fastapi uvicorn requests`."
                )
        if optimization is not None:
            raise NotImplementedError(f"The optimization {optimization} is currently not supported.")
        if server != "fastapi":
            raise NotImplementedError("Only the fastapi server is currently supported.")
        self.optimization = optimization
        self.host = host
        self.port = port
        self.server = server
        self.timeout = timeout
        self.exit_on_failure = exit_on_failure
        self.resp: Any = None

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, servable_module: LightningModule) -> None:
        _check_servable(trainer, servable_module)
        _check_port_is_free(self.host, self.port)
        # the copy in the server process needs no trainer (and, when the process is spawned, cannot take it)
        servable_module.trainer = None
        try:
            process = multiprocessing.Process(
                target=_serve, args=(servable_module, self.host, self.port), name="ember-serve-check", daemon=True
            )
            process.start()
        finally:
            servable_module.trainer = trainer
        try:
            self.resp = self._ask(process, servable_module)
        finally:
            process.kill()
            process.join(timeout=10)
        if not self.successful:
            # a failed request has no response to compare (an error page, not JSON): its traceback is above
            if self.exit_on_failure:
                raise MisconfigurationException("The model isn't servable. Investigate the traceback and try again.")
            return
        if is_overridden("configure_response", servable_module, ServableModule):
            expected = cast(ServableModule, servable_module).configure_response()
            if self.resp.json() != expected:
                raise Exception(f"The expected response {expected} doesn't match the generated one {self.resp.json()}.")
        _log.info(f"Your model is servable and the received payload was {self.resp.json()}.")

    def _ask(self, process: Any, servable_module: Any) -> Any:
        """Wait for the server, then send it the sample request; its response."""
        import requests

        url = f"http://{self.host}:{self.port}"
        started = time.monotonic()
        while True:
            try:
                if requests.get(f"{url}/ping", timeout=self.timeout).status_code == 200:
                    break
            except requests.exceptions.ConnectionError:
                pass
            if not process.is_alive():
                raise RuntimeError(
                    f"The server for the servability check exited (code {process.exitcode}) before it answered on"
                    f" {url}: see its error above."
                )
            if time.monotonic() - started > self.timeout:
                raise Exception(f"The server didn't start within {self.timeout} seconds.")
            time.sleep(0.1)
        payload = servable_module.configure_payload()
        if "body" not in payload:
            raise Exception(f'Your provided payload {payload} should have a field named "body".')
        return requests.post(f"{url}/serve", json=payload, timeout=self.timeout)

    @property
    def successful(self) -> bool | None:
        """Whether the server answered the sample request with a success (None before the check)."""
        return self.resp.status_code == 200 if self.resp is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {"successful": self.successful, "optimization": self.optimization, "server": self.server}


def _check_servable(trainer: Trainer, module: Any) -> None:
    from ember.strategies import DeepSpeedStrategy, FSDPStrategy

    if isinstance(trainer.strategy, (DeepSpeedStrategy, FSDPStrategy)):
        raise MisconfigurationException(
            f"The current strategy {type(trainer.strategy).__qualname__} used by the trainer isn't supported for"
            " sanity serving yet."
        )
    if not isinstance(module, ServableModule):
        raise TypeError(f"The provided model should be subclass of {ServableModule.__qualname__}.")
    for method in ("configure_payload", "configure_serialization", "serve_step"):
        if not is_overridden(method, module, ServableModule):
            raise NotImplementedError(f"The `{method}` method needs to be overridden.")


def _check_port_is_free(host: str, port: int) -> None:
    """Another server on the port would answer the check in the model's place. A port whose last connections
    are only closing (TIME_WAIT, for a minute after a server on it stopped) is free to the server, which binds
    with ``SO_REUSEADDR``, and so to the probe."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise MisconfigurationException(
                f"ServableModuleValidator cannot serve the model on {host}:{port}: the port is in use ({error})."
                " Pass a free one: `ServableModuleValidator(port=...)`."
            ) from error


def _serve(module: Any, host: str, port: int) -> None:
    """The server process: ``/ping`` says it is up; ``/serve`` runs one request through the model."""
    from fastapi import Body, FastAPI
    from uvicorn import run

    app = FastAPI()
    deserializers, serializers = module.configure_serialization()
    module.eval()

    @app.get("/ping")
    def ping() -> bool:
        return True

    @app.post("/serve")
    async def serve(payload: dict = Body(...)) -> dict[str, Any]:
        body = payload["body"]
        for key, deserialize in deserializers.items():
            body[key] = deserialize(body[key])
        with torch.no_grad():
            output = module.serve_step(**body)
        if not isinstance(output, dict):
            raise Exception(f"Please, return your outputs as a dictionary. Found {output}")
        for key, serialize in serializers.items():
            output[key] = serialize(output[key])
        return output

    run(app, host=host, port=port, log_level="error")
