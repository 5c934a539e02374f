"""URLs fit to print: never a user:password in a log line, a metric label, a file or an alert."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# A URL with a user part in running text (an exception message, a traceback): scheme://user...@
# up to the next space or quote. Used only to find candidates; redact() does the cutting.
_URL_WITH_USER = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@'"<>]*@[^\s'"<>]*""")


def redact(url: str) -> str:
    """``url`` without user:password (and without a trailing slash). Never raises: a URL with an
    unusable port (the very thing an error message may be about) is cut as well."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def scrub(text: str) -> str:
    """``text`` with every URL in it redacted (for tracebacks and exception messages)."""
    return _URL_WITH_USER.sub(lambda m: redact(m.group(0)), text)
