"""How sending a message can fail: for a while, or for good."""


class TransientError(Exception):
    """Sending failed in a way that may pass (server down, timeout, SMTP 4xx): try again later."""


class Unavailable(TransientError):
    """The SMTP server could not be reached or would not let us in: no message of the batch can
    go now, so the caller should stop trying the rest."""


class PermanentError(Exception):
    """This message will never go (SMTP 5xx, no or invalid recipient): do not retry."""
