"""Serving a model: what it must define (``ServableModule``) and a callback that serves it once, when
training starts, and checks the answer (``ServableModuleValidator``). Lightning's ``serve`` package.

Example::

    from ember.serve import ServableModule, ServableModuleValidator

    trainer = Trainer(callbacks=[ServableModuleValidator()])   # needs fastapi, uvicorn and requests
    trainer.fit(MyServableModel())
"""

from ember.serve.servable_module import ServableModule
from ember.serve.servable_module_validator import ServableModuleValidator

__all__ = ["ServableModule", "ServableModuleValidator"]
