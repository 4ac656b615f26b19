"""Every name of 0.1's ``tornado_kit.auth``, ``errors``, ``timing`` and ``metrics`` still resolves.

0.2 split those modules (``_auth``, ``_bearer``, ``_verifiers``, ``_apierror``,
``_errors``, ``_body``, ``_timing``, ``_jsonlog``, ``_access``...); the 0.1
paths are stubs that forward each name with a ``DeprecationWarning`` until
0.3. The names are those the 0.1 modules defined or imported from
tornado-kit without an underscore (from the 0.1 release's source).
"""

from __future__ import annotations

import importlib
import logging

import pytest

import tornado_kit

NAMES_0_1 = {
    "auth": [
        "APIError",
        "APIErrorHeadersMixin",
        "DEFAULT_EXEMPT_METHODS",
        "DEFAULT_QUERY_ARGUMENT",
        "DEFAULT_REALM",
        "H",
        "JWTVerifier",
        "P",
        "R",
        "SignedTokenVerifier",
        "StaticTokenVerifier",
        "TokenAuthMixin",
        "User",
        "allow_anonymous",
        "log",
        "redact_query",
        "require_scopes",
    ],
    "errors": [
        "APIError",
        "APIErrorHeadersMixin",
        "JSONBodyMixin",
        "JSONErrorMixin",
        "NotFoundHandler",
        "PROBLEM_CONTENT_TYPE",
    ],
    "timing": [
        "JSONLinesFileHandler",
        "JSONLinesFormatter",
        "REDACTED_QUERY_ARGUMENTS",
        "TimingMixin",
        "access_log",
    ],
    "metrics": ["DEFAULT_BUCKETS", "JSONErrorMixin", "MetricsHandler", "PrometheusMetrics"],
}

CASES = [(module, name) for module, names in NAMES_0_1.items() for name in names]


@pytest.mark.parametrize(("module", "name"), CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_a_0_1_name_still_resolves_with_a_deprecation_warning(module: str, name: str) -> None:
    stub = importlib.import_module(f"tornado_kit.{module}")
    with pytest.warns(DeprecationWarning, match=rf"^tornado_kit\.{module}\.{name} is ") as caught:
        value = getattr(stub, name)
    message = str(caught[0].message)
    if name in tornado_kit.__all__:
        assert value is getattr(tornado_kit, name)
        assert "import it from tornado_kit" in message
    else:
        assert "is private since tornado-kit 0.2 and will be removed in 0.3" in message
    assert name in dir(stub)


def test_the_0_1_loggers_keep_their_names() -> None:
    with pytest.warns(DeprecationWarning, match="tornado_kit.auth.log is private"):
        from tornado_kit.auth import log
    with pytest.warns(DeprecationWarning, match="tornado_kit.timing.access_log is private"):
        from tornado_kit.timing import access_log
    assert log is logging.getLogger("tornado_kit.auth")
    assert access_log is logging.getLogger("tornado_kit.access")


def test_the_default_query_argument_is_a_default_secret_name() -> None:
    # Defined once (the bearer scheme's module); the redaction defaults must
    # cover it without a setting.
    from tornado_kit._bearer import DEFAULT_QUERY_ARGUMENT
    from tornado_kit._redact import DEFAULT_SECRET_NAMES

    assert DEFAULT_QUERY_ARGUMENT == "access_token"
    assert DEFAULT_QUERY_ARGUMENT in DEFAULT_SECRET_NAMES
