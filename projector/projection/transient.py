"""Which database errors are worth retrying (the server, not the event, is at fault)."""

from __future__ import annotations

from psycopg2 import errorcodes
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

_RETRYABLE_SQLSTATES = {
    errorcodes.SERIALIZATION_FAILURE,
    errorcodes.DEADLOCK_DETECTED,
    errorcodes.LOCK_NOT_AVAILABLE,
    errorcodes.QUERY_CANCELED,
    errorcodes.ADMIN_SHUTDOWN,
    errorcodes.CRASH_SHUTDOWN,
    errorcodes.CANNOT_CONNECT_NOW,
    errorcodes.TOO_MANY_CONNECTIONS,
}


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "pgcode", None)
        return code in _RETRYABLE_SQLSTATES or (code or "").startswith("08")
    return False
