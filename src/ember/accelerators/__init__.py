"""The hardware a run uses, at Lightning's import path: ``trainer.accelerator`` is one of these.

Example::

    from ember.accelerators import CPUAccelerator, CUDAAccelerator

    trainer = Trainer(accelerator="cpu")
    isinstance(trainer.accelerator, CPUAccelerator)      # True
    Trainer(accelerator=CUDAAccelerator(), devices=2)     # an instance works too
"""

from ember.accelerators.accelerator import Accelerator, _AcceleratorRegistry
from ember.accelerators.cpu import CPUAccelerator
from ember.accelerators.cuda import CUDAAccelerator, find_usable_cuda_devices
from ember.accelerators.mps import MPSAccelerator
from ember.accelerators.xla import XLAAccelerator  # by name only: never available, not registered

# isort: split
# Lightning 1.x's TPU names and Lightning's removed HPU classes, which Lightning 2.x keeps: by name only
from ember.accelerators.hpu import HPUAccelerator as HPUAccelerator
from ember.accelerators.xla import TPUAccelerator as TPUAccelerator

__all__ = [
    "Accelerator",
    "AcceleratorRegistry",
    "CPUAccelerator",
    "CUDAAccelerator",
    "MPSAccelerator",
    "XLAAccelerator",
    "find_usable_cuda_devices",
]

# `Trainer(accelerator="<name>")` looks names up here; register your own with `AcceleratorRegistry.register`
AcceleratorRegistry = _AcceleratorRegistry()
for _accelerator in (CPUAccelerator, CUDAAccelerator, MPSAccelerator, XLAAccelerator):
    _accelerator.register_accelerators(AcceleratorRegistry)
