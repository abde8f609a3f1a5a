"""The pruner's error type: every problem with the user's model, data or options.

It is a ValueError (existing ``except ValueError`` code keeps working); the message
names the layer, value or option and what is supported.
"""


class PrunerError(ValueError):
    """Bad model, data or option given to the pruner."""
