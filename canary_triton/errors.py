"""Exceptions with messages a user can act on (no tracebacks needed to understand them)."""


class CanaryTritonError(Exception):
    """Base class: the message names what was wrong and what was expected."""


class CheckpointError(CanaryTritonError):
    """A checkpoint, its config, its weights or its tokenizer is not what this project needs."""


class InputError(CanaryTritonError, ValueError):
    """A client's input is invalid (wrong dtype, shape, length, value range...)."""


class ServerBusyError(CanaryTritonError):
    """The server cannot answer this request now (engine stopping, a stalled response): the
    client may retry, here or on another instance (Triton's UNAVAILABLE)."""
