"""Names and values made safe to use: file names from shot names, text with its secrets hidden.

A shot name is a label (reports, farm job names) that also becomes part of file names: the run's
work frames, thumbnails, check images. :func:`file_stem` is the one place that says how, and
what it refuses; the ``Shot`` model validates its name with it, so a shot file that loads
always has a usable stem.

Addresses and messages can carry credentials (``http://user:pw@host``, ``?token=...``).
:func:`redact_url` and :func:`redact_text` hide them wherever a URL, a request or a farm's
answer goes into an error, a log line or a summary; :func:`is_secret_name` says which field and
parameter names hold secrets (validation errors do not echo their values either).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from farmplug.errors import ConfigError

MAX_NAME_CHARS = 120
# 255 bytes is the file-name limit of ext4, XFS, APFS and NTFS; the longest names farmplug makes
# from a stem add about 40 (".0001.before_post.png" and the ".NAME.XXXXXXXX.tmp" of an atomic write).
MAX_STEM_BYTES = 200
REDACTED = "***"

# Path separators, control characters (C0, DEL, C1, line/paragraph separators) and what Windows
# forbids in a file name: farm workers and file servers can be Windows machines. Also what path
# consumers expand: frame tokens (``#``, ``%04d``), Blender's path templates and OpenJD's format
# strings (``{...}``), and environment variables in farm path mapping (``$``, backticks).
_NOT_IN_FILE_NAMES = re.compile(r'[/\\\x00-\x1f\x7f-\x9f\u2028\u2029:*?"<>|{}#%$`]')
_WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                              *(f"LPT{i}" for i in range(1, 10))})

# Field and parameter names that hold secrets: any name containing one of these ...
_SECRET_PARTS = ("password", "passwd", "passphrase", "token", "secret", "credential", "signature",
                 "apikey", "privatekey", "accesskey", "cookie")
# ... or having one of these as a whole word ("api_key", "sshKey", "X-Auth"; not "keyframes", "author").
_SECRET_WORDS = frozenset({"key", "pwd", "pass", "sig", "auth", "authorization", "session", "sessionid"})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_PARAMETER = re.compile(r"(?P<lead>[?&;#])(?P<name>[^=&;#?\s'\"<>]+)=(?P<value>[^&;#\s'\"<>]*)")
# Secrets shorter than this are not searched for in free text: they would match ordinary words.
_MIN_SECRET_CHARS = 3


def file_stem(name: str) -> str:
    """The file-name stem made from ``name`` (a shot name): one path component, safe on POSIX and Windows.

    Path separators, control characters and the characters Windows forbids (``: * ? " < > |``)
    become ``_``, as do a leading dot (no hidden files, no ``.``/``..``), trailing dots and
    spaces (Windows drops them), and a Windows device name (``CON``, ``NUL``, ``COM1``...) gets a
    ``_`` in front. The same name always gives the same stem.

    Raises:
        ConfigError: the name is blank, holds a NUL character (no path, argument or environment
            variable can), has a ``..`` path component (a consumer using the raw name as a path
            would climb out of its folder), or is over 120 characters or its stem over 200 bytes
            of UTF-8 (file names stop at 255 bytes).
    """
    if not name.strip():
        raise ConfigError("a name is needed (it is blank)")
    if "\x00" in name:
        raise ConfigError("holds a NUL character, which no file name, argument or environment variable can")
    if ".." in re.split(r"[/\\]", name):
        raise ConfigError("has a '..' path component; names become file names, so they cannot climb folders")
    if len(name) > MAX_NAME_CHARS:
        raise ConfigError(f"is {len(name):,} characters; names become file names, so at most {MAX_NAME_CHARS}")
    stem = _NOT_IN_FILE_NAMES.sub("_", name)
    if stem.startswith("."):
        stem = "_" + stem[1:]
    trimmed = stem.rstrip(". ")
    stem = trimmed + "_" * (len(stem) - len(trimmed))
    if stem.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        stem = "_" + stem
    size = len(stem.encode("utf-8"))
    if size > MAX_STEM_BYTES:
        raise ConfigError(f"makes a {size}-byte file name stem; at most {MAX_STEM_BYTES} bytes of UTF-8")
    return stem


def is_secret_name(name: str) -> bool:
    """Whether a field or parameter called ``name`` holds a secret (password, token, key, credential...)."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    if any(part in flat for part in _SECRET_PARTS):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORD.findall(name))


def redact_url(url: str) -> str:
    """``url`` with its password and secret query or fragment parameters replaced by ``***``.

    ``http://user:s3cret@farm:8080/api?token=abc`` becomes ``http://user:***@farm:8080/api?token=***``;
    a user part without a password (often a token itself, ``https://TOKEN@host``) becomes ``***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host: hide all of the address but its scheme
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://{REDACTED}" if scheme else REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if has_password else f"{REDACTED}@{host}"
    query = _redact_parameters("?" + parts.query)[1:] if parts.query else ""
    fragment = _redact_parameters("#" + parts.fragment)[1:] if parts.fragment else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def redact_text(text: object, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`), secret ``name=value`` parameters
    hidden where no scheme marks the URL (``url: /api/jobs?token=abc`` in an HTTP library's
    message), and each of ``secrets`` (a password, a token) replaced by ``***`` wherever it appears.
    """
    out = _URL.sub(lambda m: redact_url(m.group(0)), str(text))
    out = _redact_parameters(out)
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    return out


def _redact_parameters(text: str) -> str:
    def hide(match: re.Match) -> str:
        if not is_secret_name(match.group("name")) or not match.group("value"):
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}={REDACTED}"

    return _PARAMETER.sub(hide, text)
