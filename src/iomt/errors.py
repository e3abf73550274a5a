"""The error tree of iomt: every error the platform raises on purpose derives from IomtError."""


class IomtError(Exception):
    """Base class of all errors iomt raises on purpose."""


class ConfigError(IomtError):
    """A setting is missing or invalid."""


class ValidationError(IomtError):
    """Input from a device or a user is malformed or implausible.

    Parameters
    ----------
    reason
        A precise, human-readable reason (which field, which value, which bound).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthError(IomtError):
    """Credentials are missing, wrong or expired."""


class PermissionDenied(IomtError):
    """The caller is authenticated but may not do this."""


class NotFound(IomtError):
    """The requested object does not exist (or the caller may not know that it does)."""


class ModelError(IomtError):
    """A model file is missing, corrupt, or does not match its registry entry."""
