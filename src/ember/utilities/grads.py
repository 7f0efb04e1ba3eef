"""``grad_norm``: the norm of every parameter's gradient and of all of them together."""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.nn import Module


def grad_norm(module: Module, norm_type: float | int | str, group_separator: str = "/") -> dict[str, Tensor]:
    """The p-norm of each parameter's gradient, and their total norm as if they were one vector.

    Keys are ``grad_{p}_norm{group_separator}{parameter name}`` and ``grad_{p}_norm_total`` with
    ``p`` the norm as a float (``grad_2.0_norm/layer.weight``). Parameters without a gradient are
    left out; with no gradient at all the dict is empty. The values are 0-dim tensors on the
    gradients' device: nothing here waits for the device, so logging them costs a host read only
    where the loggers write.

    Args:
        module: the module whose gradients to measure.
        norm_type: ``p`` of the p-norm (cast to float), or ``"inf"`` for the largest absolute value.
        group_separator: what joins the prefix and the parameter name (a logger groups keys by it).

    Raises:
        ValueError: if ``norm_type`` is not positive.

    Example::

        def on_before_optimizer_step(self, optimizer):
            self.log_dict(grad_norm(self, norm_type=2))
    """
    norm_type = float(norm_type)
    if norm_type <= 0:
        raise ValueError(f"`norm_type` must be a positive number or 'inf' (infinity norm). Got {norm_type}")
    norms = {
        f"grad_{norm_type}_norm{group_separator}{name}": p.grad.detach().norm(norm_type)
        for name, p in module.named_parameters()
        if p.grad is not None
    }
    if norms:
        # the norm of the per-parameter norms is the norm of all gradients together, for every p
        values = list(norms.values())
        device = values[0].device
        dtype = functools.reduce(torch.promote_types, (v.dtype for v in values))  # the gradients', as in Lightning
        stacked = torch.stack([v.to(device=device, dtype=dtype) for v in values])
        norms[f"grad_{norm_type}_norm_total"] = stacked.norm(norm_type)
    return norms
