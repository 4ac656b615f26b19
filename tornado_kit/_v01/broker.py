"""0.1 names of ``tornado_kit.broker`` that 0.2 keeps elsewhere (private)."""

from tornado_kit._lifecycle import PHASE_RESOURCES

__all__ = ["PHASE_RESOURCES"]
