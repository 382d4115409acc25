"""The real Core release's bugs, reproduced on demand so the provider's tests can prove it copes.

Off by default. What each one does is measured on the running release (../shared/real-core/README.md):

- ``status_crash``: gRPC GetExecutionStatus of an existing execution, and every ListExecutions page
  that is not empty, fail with ``UNKNOWN`` / ``"Internal Server Error"`` (unknown ids and empty
  pages answer as usual; REST is not affected).
- ``resume_without_effect``: ResumeExecution of a failed or completed execution changes nothing.
  ``"already_running"``: it answers "already_running" (REST 422 ``":already_running"``), as while the
  engine process of the finished execution lives on; ``"resumed"``: a failed one answers "resumed"
  and only records its failure again, as after a Core restart (a completed one is refused as usual).
"""

from __future__ import annotations

from dataclasses import dataclass

from cerebelum_provider.emulator.engine import RESUME_WITHOUT_EFFECT_ANSWERS

#: What gRPC's status details say when Core's handler crashes.
INTERNAL_SERVER_ERROR = "Internal Server Error"


@dataclass(frozen=True)
class RealCoreBugs:
    """Which of the real release's bugs the emulator plays (all off by default)."""

    status_crash: bool = False
    resume_without_effect: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.status_crash, bool):
            raise TypeError(f"status_crash must be a bool, got {type(self.status_crash).__name__}")
        if self.resume_without_effect not in (None, *RESUME_WITHOUT_EFFECT_ANSWERS):
            raise ValueError(
                f"resume_without_effect must be None or one of {RESUME_WITHOUT_EFFECT_ANSWERS}, "
                f"got {self.resume_without_effect!r}"
            )

    @classmethod
    def measured(cls) -> RealCoreBugs:
        """The release as measured while it runs: status queries crash, resumes answer "already_running"."""
        return cls(status_crash=True, resume_without_effect="already_running")

    @classmethod
    def coerce(cls, value: RealCoreBugs | bool | None) -> RealCoreBugs:
        """``True`` is :meth:`measured`, ``None``/``False`` none; raises TypeError otherwise."""
        if isinstance(value, RealCoreBugs):
            return value
        if value is True:
            return cls.measured()
        if value is None or value is False:
            return cls()
        raise TypeError(f"real_core_bugs must be a RealCoreBugs, a bool or None, got {type(value).__name__}")
