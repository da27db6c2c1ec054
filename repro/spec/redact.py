"""Hiding credentials in text: the redaction every message, log line and written file of
user-supplied text goes through (repro.spec.safety explains the rule: URLs carry no
credentials). A module of its own below the spec models, which use it to refuse a URL with
a credential in any text field (repro.spec.base) while the safety checks raise the models'
FieldError (repro.spec.safety imports repro.spec.base, so this cannot live there).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

CREDENTIALS_FIX = (
    "remove the credential from the URL and give it through the environment "
    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or AWS_PROFILE for s3://, "
    "HF_TOKEN for hf://, GOOGLE_APPLICATION_CREDENTIALS for gs://) or the filesystem's "
    "credential file (~/.aws/credentials, `hf auth login`): specs and params.yaml are "
    "committed and paths are logged")


_SECRET_PARAM = re.compile(r"token|secret|passw|signature|credential|api[-_]?key|"
                           r"access[-_]?key|authoriz", re.IGNORECASE)
_SECRET_PARAM_NAMES = frozenset({"sig", "key", "auth", "pwd", "pass", "code"})
"""Query parameters that carry secrets: `?token=`, `access_token`, AWS presigned URLs
(`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`), GCS signed URLs
(`X-Goog-Signature`), Azure SAS (`sig`), API keys (`key`, `api_key`), `auth` and
`Authorization`, passwords, OAuth `code`."""


def secret_params(url: str) -> list[str]:
    """Names of the query parameters of `url` that carry a secret."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    return [k for k, _ in parse_qsl(query, keep_blank_values=True)
            if _SECRET_PARAM.search(k) or k.lower() in _SECRET_PARAM_NAMES]


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """`url` with any `user:password@` part and the values of secret query parameters
    hidden, for messages and logs."""
    out = _USERINFO.sub("***@", url)
    if "?" in out and secret_params(out):
        base, _, rest = out.partition("?")
        query, hash_, fragment = rest.partition("#")
        parts = []
        for item in query.split("&"):
            key, eq, _ = item.partition("=")
            secret = _SECRET_PARAM.search(key) or key.lower() in _SECRET_PARAM_NAMES
            parts.append(f"{key}{eq}***" if eq and secret else item)
        out = f"{base}?{'&'.join(parts)}{hash_}{fragment}"
    return out


# A scheme starts where a run of scheme characters starts (the lookbehind): otherwise a
# long word without `://` is tried from each of its letters, and a 9 MB value took minutes.
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"`<>]+")


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (`redact_url`): the one function every message,
    log line and written file passes user-supplied text through, so a credential a user put
    in a spec, a params override or a command line is never printed or stored."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)
