"""Pure domain: states, the transition table, events, commands, evolve and decide. No I/O."""

from __future__ import annotations
