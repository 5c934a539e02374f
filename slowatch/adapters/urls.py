"""URLs and text fit to print: never a user:password, a bearer token or an API token in a log line,
a metric label, a file, a /status document, the page or an alert.

Two layers. At the source, a URL's credentials are taken out before anything keeps the URL
(``split_credentials``: the session sends them as an ``Authorization`` header, errors name the
bare URL). Where text leaves the process (log lines, /status, the page, /metrics, alert
annotations), ``scrub`` cuts every URL's user part and every secret the process has been given
(``remember_secret``), in case some path (a library's exception, a traceback) still carries one.
"""

from __future__ import annotations

import re
import threading
from html import escape
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# A URL with a user part in running text (an exception message, a traceback): scheme://user...@
# up to the next space or quote. The user part may hold quotes (RFC 3986 allows ' in userinfo:
# Hypothesis found one leaking); over-cutting odd text is the safe side. Used only to find
# candidates; redact() does the cutting.
_URL_WITH_USER = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@<>]*@[^\s'"<>]*""")
MASK = "***"
# Shorter secrets are not searched for in free text: masking every "ab" would garble messages,
# and such a secret protects nothing anyway.
MIN_SECRET_LENGTH = 4

def redact(url: str) -> str:
    """``url`` without user:password (and without a trailing slash). Never raises: a URL with an
    unusable port (the very thing an error message may be about) is cut as well."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its user part, and the (user, password) it carried (percent-decoded, as
    HTTP basic auth sends them), or None. The password is remembered as a secret."""
    parts = urlsplit(url.rstrip("/"))
    if "@" not in parts.netloc:
        return url.rstrip("/"), None
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    remember_secret(unquote(password))
    return redact(url), (unquote(user), unquote(password))


class _Secrets:
    """The secrets this process holds, as one pattern (rebuilt on the rare ``add``)."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self.pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        spellings = {secret, quote(secret, safe=""), escape(secret)} if len(secret) >= MIN_SECRET_LENGTH else set()
        with self._lock:
            if spellings <= self._known:
                return
            self._known.update(spellings)
            # Longest first: a secret that contains another is masked whole.
            self.pattern = re.compile("|".join(re.escape(s) for s in sorted(self._known, key=len, reverse=True)))


# One per process, like the log configuration that reads it: whoever is handed a secret adds it.
_SECRETS = _Secrets()


def remember_secret(secret: str) -> None:
    """From now on ``scrub`` masks ``secret`` (and its percent- and HTML-escaped spellings)."""
    _SECRETS.add(secret)


def scrub(text: str) -> str:
    """``text`` with every URL in it redacted and every remembered secret masked."""
    text = _URL_WITH_USER.sub(lambda m: redact(m.group(0)), text)
    pattern = _SECRETS.pattern
    return pattern.sub(MASK, text) if pattern is not None else text
