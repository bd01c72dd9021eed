"""The one email normalisation of the write side, used by every command.

Registration and login must agree on the stored form whatever spelling a client sends:
an IDNA domain (``xn--…``) and its Unicode form are one address, and case never matters.
"""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email


# A request normalises the same address up to three times (rate limit key, command, lookup);
# the answer depends on the string alone, and the cache is bounded.
@lru_cache(maxsize=4096)
def normalize_email(email: str) -> str:
    """The stored form of ``email``; a string that is not an address is only trimmed and
    lower-cased (it can match no account, but failures are still counted against it)."""
    candidate = email.strip()
    try:
        candidate = validate_email(candidate, check_deliverability=False).normalized
    except (EmailNotValidError, UnicodeError, ValueError):
        pass
    return candidate.lower()
