"""``ember.serve``: a model that says how to serve it is served once when training starts, and checked."""

from __future__ import annotations

import socket

import pytest
import torch
from tests.helpers.core_models import quiet_trainer

import ember
from ember.demos.boring_classes import BoringModel
from ember.serve import ServableModule, ServableModuleValidator
from ember.utilities.exceptions import MisconfigurationException

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("requests")


class ServableBoringModel(BoringModel, ServableModule):
    def configure_payload(self):
        return {"body": {"x": list(range(32))}}

    def configure_serialization(self):
        return {"x": lambda x: torch.tensor(x, dtype=torch.float)}, {"output": lambda y: y.tolist()}

    def serve_step(self, x):
        return {"output": self(x).argmax(-1, keepdim=True)}  # the served copy runs the trained layer

    def configure_response(self):
        return {"output": [int(self(torch.arange(32.0)).argmax())]}  # what the model in training answers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fit(model, validator) -> ember.Trainer:
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[validator])
    trainer.fit(model)
    return trainer


def test_a_servable_model_is_served_and_its_answer_checked_before_training():
    validator = ServableModuleValidator(port=_free_port(), timeout=60)
    trainer = _fit(ServableBoringModel(), validator)
    assert validator.successful is True
    assert validator.resp.json()["output"] in ([0], [1])
    assert validator.state_dict() == {"successful": True, "optimization": None, "server": "fastapi"}
    assert trainer.global_step == 2  # then training ran, with the trainer attached again
    assert trainer.lightning_module.trainer is trainer


def test_a_wrong_answer_stops_fit_before_training():
    class WrongAnswer(ServableBoringModel):
        def configure_response(self):
            return {"output": [7]}

    validator = ServableModuleValidator(port=_free_port(), timeout=60)
    with pytest.raises(Exception, match=r"The expected response \{'output': \[7\]\} doesn't match the generated one"):
        _fit(WrongAnswer(), validator)


def test_what_cannot_be_served_is_named_before_any_server_starts():
    with pytest.raises(TypeError, match="The provided model should be subclass of ServableModule"):
        _fit(BoringModel(), ServableModuleValidator(port=_free_port()))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MisconfigurationException, match=rf"127.0.0.1:{port}: the port is in use.*port=\.\.\."):
            _fit(ServableBoringModel(), ServableModuleValidator(port=port))
    with pytest.raises(NotImplementedError, match="The optimization onnx is currently not supported"):
        ServableModuleValidator(optimization="onnx")
    with pytest.raises(NotImplementedError, match="Only the fastapi server is currently supported"):
        ServableModuleValidator(server="torchserve")


def test_a_port_a_server_stopped_on_moments_ago_is_served_on_again():
    # the server side of a closed connection stays in TIME_WAIT for a minute: a second check on the same port
    # (two fits in one script) was refused as "in use" though the server binds it
    port = _free_port()
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its end of the connection waits in TIME_WAIT
            client.recv(1)
    validator = ServableModuleValidator(port=port, timeout=60)
    _fit(ServableBoringModel(), validator)
    assert validator.successful


def test_a_model_whose_request_fails_is_not_servable_and_a_server_that_exits_is_named_at_once():
    class FailingStep(ServableBoringModel):
        def serve_step(self, x):
            return self(x)  # not a dict: the server answers with an error

    with pytest.raises(MisconfigurationException, match="The model isn't servable"):
        _fit(FailingStep(), ServableModuleValidator(port=_free_port(), timeout=60))
    validator = ServableModuleValidator(port=_free_port(), timeout=60, exit_on_failure=False)
    trainer = _fit(FailingStep(), validator)  # told not to stop: training goes on
    assert validator.successful is False and validator.resp.status_code == 500
    assert trainer.global_step == 2

    class ExitingServer(ServableBoringModel):
        def configure_serialization(self):
            raise ValueError("no serializers")  # in the server process, before it listens

    with pytest.raises(RuntimeError, match=r"exited \(code 1\) before it answered"):
        _fit(ExitingServer(), ServableModuleValidator(port=_free_port(), timeout=60))
