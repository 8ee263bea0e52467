"""Library mode: `ironrt.protect` runs the governance kernel in-process, no daemon needed.

See scope.py for what it does and what only the daemon can do.
"""

from ironrt.errors import LibraryModeError
from ironrt.library.scope import protect, protect_agent

__all__ = ["LibraryModeError", "protect", "protect_agent"]
