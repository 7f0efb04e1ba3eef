"""A cluster environment written against Lightning Fabric's classes rather than Ember's."""

from __future__ import annotations


class ForeignEnvironment:
    """A cluster environment with the whole interface but not Ember's base class (as one written
    against ``lightning.fabric``'s ``ClusterEnvironment``): ranks come from the strategy's setters,
    this process's place on its node from the arguments."""

    creates_processes_externally = True

    def __init__(self, local_rank: int = 0, node_rank: int = 0) -> None:
        self.rank, self.size = 0, 1
        self._local_rank, self._node_rank = local_rank, node_rank

    @property
    def main_address(self) -> str:
        return "10.0.0.1"

    @property
    def main_port(self) -> int:
        return 1234

    @staticmethod
    def detect() -> bool:
        return True

    def world_size(self) -> int:
        return self.size

    def set_world_size(self, size: int) -> None:
        self.size = size

    def global_rank(self) -> int:
        return self.rank

    def set_global_rank(self, rank: int) -> None:
        self.rank = rank

    def local_rank(self) -> int:
        return self._local_rank

    def node_rank(self) -> int:
        return self._node_rank

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        pass
