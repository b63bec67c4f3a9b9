"""One clock with named phases, each marked as counted against the challenge's limits or not.

The challenge caps training at 600 s (compile priming and periodic validation excluded) and
evaluation at 600 s; the table at the end of a run says where every second went.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Phase:
    name: str
    counted_as: str  # "train", "eval" or "-" (not counted)
    seconds: float = 0.0


@dataclass
class PhaseClock:
    sync: Callable[[], None] = lambda: None
    phases: dict[str, Phase] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str, counted_as: str = "-") -> Iterator[None]:
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.add(name, time.perf_counter() - start, counted_as)

    def add(self, name: str, seconds: float, counted_as: str = "-") -> None:
        entry = self.phases.setdefault(name, Phase(name, counted_as))
        entry.seconds += seconds

    def to_dict(self) -> dict[str, dict[str, float | str]]:
        return {p.name: {"seconds": round(p.seconds, 3), "counted_as": p.counted_as} for p in self.phases.values()}

    def table(self) -> str:
        lines = [f"{'phase':<16}{'seconds':>10}  counted against"]
        for p in self.phases.values():
            limits = {"train": "training limit (600 s)", "eval": "evaluation limit (600 s)"}
            limit = limits.get(p.counted_as, "not counted")
            lines.append(f"{p.name:<16}{p.seconds:>10.2f}  {limit}")
        return "\n".join(lines)
