"""The legality policy for evaluation modes: named, versioned, and attached to every reported score.

The four conditions are the community's (openai/parameter-golf#1017, TECHNIQUES §4.25.0). Each
mode carries a ruling under the policy; `pgolf verify` tests the conditions mechanically
(`pgolf.evaluate.verify`). A ruling changes only with a new policy version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Condition:
    key: str
    text: str


@dataclass(frozen=True)
class LegalityPolicy:
    name: str
    version: str
    source: str
    conditions: tuple[Condition, ...]

    @property
    def id(self) -> str:
        return f"{self.name}/{self.version}"


POLICY = LegalityPolicy(
    name="pgolf-eval-legality",
    version="1",
    source="openai/parameter-golf#1017 (four conditions); #1240 (SLOT ruling)",
    conditions=(
        Condition("causal", "the distribution that scores token t depends only on the artifact and tokens before t"),
        Condition("normalized", "every scored token gets a full distribution over the vocabulary that sums to 1"),
        Condition("score_before_update", "an adaptation may use token t only after t's score is recorded"),
        Condition("single_pass", "every token is scored exactly once; no rescoring, no best-of-several"),
    ),
)

# Modes that break a condition as published. Everything else pgolf ships is compliant by construction.
NON_COMPLIANT: dict[str, str] = {
    "slot-published": "SLOT as published (PR #1176) fits its delta on the targets it then scores, breaking "
                      "'causal' and 'score_before_update': one changed target moves every score of its batch "
                      "(#1240); use eval.slot=context for the compliant variant",
}


def ruling(mode_name: str) -> dict[str, Any]:
    """The policy's verdict on a mode (a stage name such as `sliding+ttt-full+slot-published`)."""
    for part, reason in NON_COMPLIANT.items():
        if part in mode_name.split("+"):
            return {"policy": POLICY.id, "compliant": False, "label": "NON-COMPLIANT", "reason": reason}
    return {"policy": POLICY.id, "compliant": True, "label": "compliant",
            "reason": "score-first by construction; checked by `pgolf verify`"}
