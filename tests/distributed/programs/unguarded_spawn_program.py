"""A script that trains with ``ddp_spawn`` at import time, with no ``if __name__ == "__main__":`` guard, and
catches the error of ``fit``. Each spawned process imports it again: there the script's own ``fit``
cannot start processes (Python refuses while the main module is still importing), its error is caught,
and the process goes on to run its rank of the job, as it does on Lightning.

    python unguarded_spawn_program.py OUTDIR
"""

import sys

from ddp_program import Model, dataset, trainer
from torch.utils.data import DataLoader

job = trainer(sys.argv[1], strategy="ddp_spawn", max_epochs=1, enable_checkpointing=False)
try:
    job.fit(Model(), DataLoader(dataset(), batch_size=4))
    print(f"fit returned at step {job.global_step}", flush=True)
except Exception as error:
    print(f"fit raised {type(error).__name__}: {error}", flush=True)
