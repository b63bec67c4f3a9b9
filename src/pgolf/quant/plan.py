"""The run's quantization plan, resolved once: the storage format of every tensor.

Late QAT rehearses exactly the int-k widths the artifact will store, so both read one `QuantPlan`
built from the config and the model's tensor names and shapes (`quant.policy` is parsed once, here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from pgolf.config import Config
from pgolf.errors import ConfigError

if TYPE_CHECKING:  # quant.policy is imported where a scheme uses policies (not int8)
    from pgolf.quant.policy import Assignment, Policy, TensorFormat


@dataclass(frozen=True)
class QuantPlan:
    """`formats` is None for the int8 scheme (the baseline's export decides per tensor at pack time)."""

    scheme: str  # int8 | policy | fit
    policy: Policy | None
    assignment: Assignment | None
    qat_bits: int  # the width late QAT uses where the scheme fixes none (int8, fit)

    @classmethod
    def resolve(cls, cfg: Config, state_dict: Mapping[str, Tensor]) -> QuantPlan:
        """The plan for tensors with the names and shapes of `state_dict`."""
        scheme = cfg.quant.scheme
        if scheme == "int8":
            return cls(scheme, None, None, cfg.train.qat_bits)
        from pgolf.quant.policy import assign_formats, load_policy

        policy = load_policy(cfg.quant.policy)
        return cls(scheme, policy, assign_formats(policy, state_dict), cfg.train.qat_bits)

    @property
    def formats(self) -> dict[str, TensorFormat] | None:
        return None if self.assignment is None else self.assignment.formats

    def matrix_bits(self, matrices: Iterable[str]) -> dict[str, int]:
        """{matrix name: int width} late QAT fake-quantizes at.

        With the policy scheme each matrix takes the int-k its rule stores it at (a matrix kept in float is
        not fake-quantized); int8 and fit have no fixed per-tensor width, so every matrix takes `qat_bits`.
        """
        names = list(matrices)
        if self.scheme != "policy" or self.formats is None:
            return dict.fromkeys(names, self.qat_bits)
        formats = self.formats
        bits = {name: b for name in names if (b := formats[name].bits) is not None}
        if not bits:
            assert self.policy is not None
            raise ConfigError(f"train.late_qat_threshold: quant policy {self.policy.name!r} stores no Muon matrix "
                              "as int-k, so late QAT has nothing to rehearse; set it to 0 or pick an int policy")
        return bits
