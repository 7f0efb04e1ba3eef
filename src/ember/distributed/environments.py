"""Where the rank of this process comes from: Ember's own launcher, torchrun, SLURM's ``srun``,
LSF's ``jsrun``, MPI or Kubeflow.

Each environment reads the variables its launcher defines; Ember adds no protocol of its own: the
processes it starts get the same variables torchrun would set (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``/``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from abc import ABCMeta
from typing import Any

from ember.utilities.exceptions import xla_not_supported
from ember.utilities.fabric import is_fabrics_own
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn
from ember.utilities.signature_utils import lightning_style_annotations

__all__ = [
    "ClusterEnvironment",
    "KubeflowEnvironment",
    "LSFEnvironment",
    "LightningEnvironment",
    "MPIEnvironment",
    "SLURMEnvironment",
    "TorchElasticEnvironment",
    "XLAEnvironment",
    "detect_environment",
    "environment_in",
    "find_free_network_port",
    "is_cluster_environment",
    "own_environment",
]


def find_free_network_port() -> int:
    """A free TCP port on this machine (for the rendezvous of processes Ember starts itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


# ABCMeta for the subclass hook below (an interface check, as `collections.abc` does); nothing is abstract
class ClusterEnvironment(metaclass=ABCMeta):  # noqa: B024
    """The rank layout of the job: world size, ranks, and where rank 0 listens.

    A class with the whole interface counts as one (``isinstance``/``issubclass``), as an environment
    written against Lightning Fabric's base class does.

    Example::

        env = detect_environment()
        print(env.global_rank(), env.world_size())
    """

    creates_processes_externally = False

    @classmethod
    def __subclasshook__(cls, other: type) -> Any:
        if cls is ClusterEnvironment and all(
            any(name in k.__dict__ for k in other.__mro__) for name in _ENVIRONMENT_API
        ):
            return True
        return NotImplemented

    def __init__(self) -> None:
        self._world_size = 1
        self._global_rank = 0

    @property
    def main_address(self) -> str:
        return os.environ.get("MASTER_ADDR", "127.0.0.1")

    @property
    def main_port(self) -> int:
        return int(os.environ.get("MASTER_PORT", 0))

    @staticmethod
    def detect() -> bool:
        return False

    def world_size(self) -> int:
        return self._world_size

    def set_world_size(self, size: int) -> None:
        self._world_size = size

    def global_rank(self) -> int:
        return self._global_rank

    def set_global_rank(self, rank: int) -> None:
        self._global_rank = rank

    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", 0))

    def node_rank(self) -> int:
        return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        """Raise if the launcher's layout does not match ``Trainer(devices, num_nodes)``."""

    def teardown(self) -> None:
        """Clean up what the environment set for the run: called on every rank when a parallel strategy's
        trainer call ends, as in Lightning."""


class LightningEnvironment(ClusterEnvironment):
    """Processes started by Ember itself (or by hand with the torchrun variables).

    The first process picks a free port and starts the others with ``LOCAL_RANK`` set; a process
    that finds ``LOCAL_RANK`` already set was started by Ember (or by hand) and joins.
    """

    @property
    def creates_processes_externally(self) -> bool:  # type: ignore[override]
        return "LOCAL_RANK" in os.environ

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" not in os.environ:
            os.environ["MASTER_PORT"] = str(find_free_network_port())
        return int(os.environ["MASTER_PORT"])

    @staticmethod
    def detect() -> bool:
        return True

    # A process started with LOCAL_RANK (by Ember, or by hand with the torchrun variables) has the rank and
    # world size its launcher gave it. One that has not started the job has the strategy's (the Trainer's
    # `devices` and `num_nodes`, as in Lightning), whatever a RANK or WORLD_SIZE left in the environment says:
    # the launch sets them anew.
    def world_size(self) -> int:
        if self.creates_processes_externally:
            return int(os.environ.get("WORLD_SIZE", self._world_size))
        return self._world_size

    def global_rank(self) -> int:
        if self.creates_processes_externally:
            return int(os.environ.get("RANK", self._global_rank))
        return self._global_rank


class XLAEnvironment(ClusterEnvironment):
    """Lightning's TPU environment, by name only: never detected, and building one is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise xla_not_supported(
            "XLAEnvironment", "Use an environment for CPU or CUDA processes (`LightningEnvironment`, ...)."
        )


class TorchElasticEnvironment(ClusterEnvironment):
    """Processes started by ``torchrun`` (single or multi node): every variable comes from torchrun."""

    creates_processes_externally = True

    @staticmethod
    def detect() -> bool:
        required = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
        return "TORCHELASTIC_RUN_ID" in os.environ and all(k in os.environ for k in required)

    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    def global_rank(self) -> int:
        return int(os.environ["RANK"])

    def local_rank(self) -> int:
        return int(os.environ["LOCAL_RANK"])

    def node_rank(self) -> int:
        return int(os.environ.get("GROUP_RANK", 0))

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        expected = num_devices * num_nodes
        if self.world_size() != expected:
            raise ValueError(
                f"torchrun started {self.world_size()} processes, but `Trainer(devices={num_devices},"
                f" num_nodes={num_nodes})` expects {expected}: make `--nproc_per_node` equal `devices` and `--nnodes`"
                " equal `num_nodes`."
            )


class KubeflowEnvironment(ClusterEnvironment):
    """A Kubeflow ``PyTorchJob``: one process per pod, its rank and the job's size set by the operator.

    Not detected from the environment (a pod shows nothing that sets it apart): pass it, as in Lightning,
    ``Trainer(strategy="ddp", num_nodes=<pods>, devices=1, plugins=[KubeflowEnvironment()])``. The ranks
    cannot be changed: the setters do nothing.
    """

    creates_processes_externally = True

    @property
    def main_address(self) -> str:
        return os.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        return int(os.environ["MASTER_PORT"])

    @staticmethod
    def detect() -> bool:
        raise NotImplementedError("The Kubeflow environment can't be detected automatically.")

    def world_size(self) -> int:
        return int(os.environ["WORLD_SIZE"])

    def set_world_size(self, size: int) -> None:
        """Ignored: the operator sets ``WORLD_SIZE``."""

    def global_rank(self) -> int:
        return int(os.environ["RANK"])

    def set_global_rank(self, rank: int) -> None:
        """Ignored: the operator sets ``RANK``."""

    def local_rank(self) -> int:
        return 0  # one process per pod

    def node_rank(self) -> int:
        return self.global_rank()  # each pod is a node


class LSFEnvironment(ClusterEnvironment):
    """Processes started by LSF's job step manager (``jsrun``), detected from its variables.

    Ranks come from ``JSM_NAMESPACE_RANK``, ``JSM_NAMESPACE_LOCAL_RANK`` and ``JSM_NAMESPACE_SIZE``. The
    hosts come from the rank file ``LSB_DJOB_RANKFILE``: its first line is the launch node, which runs no
    rank; rank 0's node (the first after it) is the main address, and a node's rank is the order in which
    its host first appears. The port is ``MASTER_PORT`` when set, else derived from ``LSB_JOBID`` (the same
    on every node). Creating the environment exports ``MASTER_ADDR``/``MASTER_PORT`` for torch.
    """

    creates_processes_externally = True

    def __init__(self) -> None:
        super().__init__()
        hosts = _lsf_hosts()
        self._main_address = hosts[0]
        self._main_port = _lsf_port()
        order: dict[str, int] = {}
        for host in hosts:
            order.setdefault(host, len(order))
        here = socket.gethostname()
        if here not in order:
            raise ValueError(f"This host ({here}) is not in the LSF rank file {os.environ['LSB_DJOB_RANKFILE']}.")
        self._node_rank = order[here]
        os.environ["MASTER_ADDR"] = self._main_address
        os.environ["MASTER_PORT"] = str(self._main_port)

    @property
    def main_address(self) -> str:
        return self._main_address

    @property
    def main_port(self) -> int:
        return self._main_port

    @staticmethod
    def detect() -> bool:
        required = ("LSB_JOBID", "LSB_DJOB_RANKFILE", "JSM_NAMESPACE_LOCAL_RANK", "JSM_NAMESPACE_SIZE")
        return all(key in os.environ for key in required)

    def world_size(self) -> int:
        return _jsm_variable("JSM_NAMESPACE_SIZE", "world size")

    def set_world_size(self, size: int) -> None:
        """Ignored: ``jsrun`` sets the world size."""

    def global_rank(self) -> int:
        return _jsm_variable("JSM_NAMESPACE_RANK", "global rank")

    def set_global_rank(self, rank: int) -> None:
        """Ignored: ``jsrun`` sets the rank."""

    def local_rank(self) -> int:
        return _jsm_variable("JSM_NAMESPACE_LOCAL_RANK", "local rank")

    def node_rank(self) -> int:
        return self._node_rank


class MPIEnvironment(ClusterEnvironment):
    """Processes started by an MPI launcher (``mpirun``/``mpiexec``), through ``mpi4py``.

    Detected when ``mpi4py`` imports and its world holds more than one process. Ranks come from
    ``MPI.COMM_WORLD``; rank 0 broadcasts its host name (the main address) and a free port; the node rank
    is this host's place among the job's sorted host names, and the local rank is the rank among the
    processes of this host.
    """

    creates_processes_externally = True

    def __init__(self) -> None:
        super().__init__()
        try:
            from mpi4py import MPI
        except ImportError as error:
            raise ModuleNotFoundError(
                "MPIEnvironment needs the `mpi4py` package (and an MPI library): `pip install mpi4py`."
            ) from error
        self._comm = MPI.COMM_WORLD
        self._main: tuple[str, int] | None = None
        self._local: tuple[int, int] | None = None  # (node rank, local rank)

    @property
    def main_address(self) -> str:
        return self._rank0_address()[0]

    @property
    def main_port(self) -> int:
        return self._rank0_address()[1]

    @staticmethod
    def detect() -> bool:
        try:
            from mpi4py import MPI  # may be installed without an MPI library
        except ImportError:
            return False
        return bool(MPI.COMM_WORLD.Get_size() > 1)

    def world_size(self) -> int:
        return int(self._comm.Get_size())

    def set_world_size(self, size: int) -> None:
        """Ignored: MPI sets the world size."""

    def global_rank(self) -> int:
        return int(self._comm.Get_rank())

    def set_global_rank(self, rank: int) -> None:
        """Ignored: MPI sets the rank."""

    def local_rank(self) -> int:
        return self._node_and_local_rank()[1]

    def node_rank(self) -> int:
        return self._node_and_local_rank()[0]

    def _rank0_address(self) -> tuple[str, int]:
        if self._main is None:  # every rank asks at the same point, so the broadcasts pair up
            self._main = self._comm.bcast((socket.gethostname(), find_free_network_port()), root=0)
        return self._main

    def _node_and_local_rank(self) -> tuple[int, int]:
        if self._local is None:
            here = socket.gethostname()
            hosts = self._comm.gather(here, root=0)  # None on the other ranks
            hosts = self._comm.bcast(sorted(set(hosts)) if hosts is not None else None, root=0)
            node = hosts.index(here)
            self._local = (node, int(self._comm.Split(color=node).Get_rank()))
        return self._local


def _jsm_variable(name: str, what: str) -> int:
    value = os.environ.get(name)
    if value is None:
        raise ValueError(
            f"Cannot determine {what}. Environment variable `{name}` not found. Run the program with `jsrun`."
        )
    return int(value)


def _lsf_hosts() -> list[str]:
    """The job's compute hosts, one line per rank slot, without the launch node (the rank file's first line)."""
    rankfile = os.environ.get("LSB_DJOB_RANKFILE")
    if not rankfile:
        raise ValueError(
            "The environment variable `LSB_DJOB_RANKFILE` is missing or empty: run the program with `jsrun`."
        )
    with open(rankfile) as file:
        hosts = [line.strip() for line in file if line.strip()][1:]
    if not hosts:
        raise ValueError(f"The LSF rank file {rankfile} names no compute host after the launch node.")
    return hosts


def _lsf_port() -> int:
    if "MASTER_PORT" in os.environ:
        return int(os.environ["MASTER_PORT"])
    if "LSB_JOBID" in os.environ:
        return int(os.environ["LSB_JOBID"]) % 1000 + 10000  # every node computes the same port
    raise ValueError("Could not find the job id in the environment variable `LSB_JOBID`.")


def _slurm_interactive() -> bool:
    return os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")


class SLURMEnvironment(ClusterEnvironment):
    """Processes started by ``srun``: one task per device, ranks from ``SLURM_PROCID``/``SLURM_LOCALID``.

    ``MASTER_ADDR`` defaults to the first host of ``SLURM_NODELIST`` and ``MASTER_PORT`` to
    15000 plus the last four digits of the job id, so every task finds rank 0 without talking first.
    """

    creates_processes_externally = True

    def __init__(self, auto_requeue: bool = True, requeue_signal: int | None = None) -> None:
        super().__init__()
        self.auto_requeue = auto_requeue
        if requeue_signal is not None and (
            not isinstance(requeue_signal, int) or requeue_signal not in signal.valid_signals()
        ):
            # (text failed when the handler was set, "'str' object cannot be interpreted as an integer"; 0 there)
            raise ValueError(
                f"`SLURMEnvironment(requeue_signal={requeue_signal!r})` takes the signal SLURM sends before the time"
                " limit, e.g. `signal.SIGUSR1` (`#SBATCH --signal=USR1@90`), or None for that one."
            )
        # the signal `#SBATCH --signal=USR1@90` sends before the time limit: checkpoint, requeue, exit
        self.requeue_signal = requeue_signal if requeue_signal is not None else getattr(signal, "SIGUSR1", None)

    @staticmethod
    def detect() -> bool:
        return "SLURM_NTASKS" in os.environ and "SLURM_PROCID" in os.environ and not _slurm_interactive()

    @staticmethod
    def job_name() -> str | None:
        """The job's name (``#SBATCH --job-name``, ``SLURM_JOB_NAME``); ``"bash"`` in an interactive job."""
        return os.environ.get("SLURM_JOB_NAME")

    @property
    def main_address(self) -> str:
        if "MASTER_ADDR" not in os.environ:
            os.environ["MASTER_ADDR"] = self.resolve_root_node_address(os.environ.get("SLURM_NODELIST", "127.0.0.1"))
        return os.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        if "MASTER_PORT" not in os.environ:
            job_id = os.environ.get("SLURM_JOB_ID")
            os.environ["MASTER_PORT"] = str(int(job_id[-4:]) + 15000 if job_id and job_id[-4:].isdigit() else 12910)
        return int(os.environ["MASTER_PORT"])

    def world_size(self) -> int:
        return int(os.environ["SLURM_NTASKS"])

    def global_rank(self) -> int:
        return int(os.environ["SLURM_PROCID"])

    def local_rank(self) -> int:
        return int(os.environ["SLURM_LOCALID"])

    def node_rank(self) -> int:
        return int(os.environ["SLURM_NODEID"])

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        per_node = os.environ.get("SLURM_NTASKS_PER_NODE")
        if per_node is not None and per_node.isdigit() and int(per_node) != num_devices:
            raise ValueError(
                f"You set `devices={num_devices}`, but the number of tasks per node configured in SLURM"
                f" `--ntasks-per-node={per_node}` does not match. HINT: Set `devices={per_node}`."
            )
        nodes = os.environ.get("SLURM_NNODES")
        if nodes is not None and nodes.isdigit() and int(nodes) != num_nodes:
            raise ValueError(
                f"You set `num_nodes={num_nodes}`, but the number of nodes configured in SLURM `--nodes={nodes}`"
                f" does not match. HINT: Set `num_nodes={nodes}`."
            )

    @staticmethod
    def job_id() -> str:
        """The id ``scontrol`` knows this job by: ``<array job>_<task>`` for an array task."""
        array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
        if array_job is not None:
            return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        return os.environ["SLURM_JOB_ID"]

    def requeue(self) -> None:
        """Put this job back in SLURM's queue (``scontrol requeue``); it restarts from the start of the script."""
        job_id = self.job_id()
        if not re.fullmatch(r"[0-9_]+", job_id):
            raise ValueError(f"Cannot requeue the SLURM job {job_id!r}: SLURM_JOB_ID is not a job number.")
        try:
            result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            rank_zero_warn(f"Requeuing SLURM job {job_id} failed ({err}); resubmit it to resume from the checkpoint.")
            return
        if result.returncode != 0:
            rank_zero_warn(
                f"Requeuing SLURM job {job_id} failed with exit code {result.returncode}: {result.stderr.strip()}."
                " Resubmit it to resume from the checkpoint."
            )
        else:
            rank_zero_info(f"Requeued SLURM job {job_id}.")

    @staticmethod
    def resolve_root_node_address(nodes: str) -> str:
        """The first host of a SLURM node list: ``'host[5-9],x'`` -> ``'host5'``."""
        nodes = re.sub(r"\[(.*?)[,-].*\]", "\\1", nodes)
        nodes = re.sub(r"\[(.*?)\]", "\\1", nodes)
        return nodes.split(" ")[0].split(",")[0]


_ENVIRONMENT_API = (
    "creates_processes_externally",
    "main_address",
    "main_port",
    "detect",
    "world_size",
    "set_world_size",
    "global_rank",
    "set_global_rank",
    "local_rank",
    "node_rank",
    "validate_settings",
)


def is_cluster_environment(plugin: Any) -> bool:
    """A ``ClusterEnvironment`` object: Ember's, or one with the whole interface (one written against
    ``lightning.fabric``'s base class, which Lightning's ``plugins.environments`` names too)."""
    return not isinstance(plugin, type) and isinstance(plugin, ClusterEnvironment)


def own_environment(env: Any) -> Any:
    """Ember's environment in place of Lightning Fabric's class of the same name (a Lightning program may
    import it from ``lightning.fabric``, and a config Lightning printed names it there), with the same
    settings; any other environment, a subclass of Fabric's included, stays as it is."""
    own = {
        cls.__name__: cls
        for cls in (
            LightningEnvironment,
            TorchElasticEnvironment,
            KubeflowEnvironment,
            LSFEnvironment,
            MPIEnvironment,
            SLURMEnvironment,
        )
    }.get(type(env).__name__)
    if own is None or not is_fabrics_own(type(env), own.__name__):
        return env
    if own is SLURMEnvironment:
        return SLURMEnvironment(auto_requeue=env.auto_requeue, requeue_signal=env.requeue_signal)
    return own()


def environment_in(plugins: Any) -> ClusterEnvironment | None:
    """The cluster environment passed in ``Trainer(plugins=...)`` (the last one), if any."""
    found = None
    for plugin in plugins if isinstance(plugins, (list, tuple)) else [plugins]:
        if is_cluster_environment(plugin):
            found = plugin
    return None if found is None else own_environment(found)


def detect_environment() -> ClusterEnvironment:
    """torchrun, SLURM, LSF, then MPI, else Ember's own (which also joins processes started by Ember)."""
    for env_type in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment, MPIEnvironment):
        if env_type.detect():
            return env_type()
    return LightningEnvironment()


lightning_style_annotations(SLURMEnvironment)  # Lightning's `typing` forms in the signature
