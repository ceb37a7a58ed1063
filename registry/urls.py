"""URLs as cltool shows them: in messages, logs, events, MLflow params and artifacts, never a password."""

from __future__ import annotations


def mask_url(url: str, keep_path: bool = True) -> str:
    """`url` without its password (and, unless `keep_path`, without its path and query)."""
    if not url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    if not keep_path:
        return f"{scheme}://{netloc}/***" if (path or "?" in rest) else f"{scheme}://{netloc}"
    return f"{scheme}://{netloc}{slash}{path}"
