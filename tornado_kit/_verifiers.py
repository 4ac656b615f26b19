"""Token verifiers for :class:`~tornado_kit.TokenAuthMixin` (private; exported by ``tornado_kit``).

A verifier maps a token to its user (a mapping of claims) or ``None``, and
never raises for a bad token: :class:`StaticTokenVerifier` (fixed tokens,
keyed-MAC lookup), :class:`SignedTokenVerifier` (HMAC-signed expiring
tokens, no dependency) and :class:`JWTVerifier` (PyJWT, extra ``jwt``).
Any callable ``token -> user | None`` or object with such a ``verify``
method, sync or async, works as well.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import hashlib
import hmac
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from tornado_kit import _json
from tornado_kit._checks import (
    argument,
    check_instance,
    check_number,
    check_str_sequence,
    wrong_kind,
)

__all__ = ["JWTVerifier", "SignedTokenVerifier", "StaticTokenVerifier", "User"]

# The 0.1 logger name (users configure it): verifiers log on it.
log = logging.getLogger("tornado_kit.auth")

#: A verified user: a mapping of claims such as ``"sub"`` and ``"scopes"``.
User = Mapping[str, Any]


class StaticTokenVerifier:
    """Accept a fixed set of tokens, compared in constant time.

    Each verifier draws a random 32-byte key at construction and keeps, for
    every token, its keyed BLAKE2b MAC (RFC 7693 §2.5) in a dict; a candidate
    is MAC-ed the same way and looked up. The work done for a candidate
    depends on the secret key and not on how close the candidate is to a
    real token: an attacker who times requests learns about MAC values that
    are pseudo-random to them, so neither a token's prefix nor which entry
    matched leaks, and unlike a plain hash the MACs cannot be used for
    offline guessing. The lookup costs the same for 1 token or 10,000.
    Suited to service accounts and tests; use :class:`SignedTokenVerifier`
    or :class:`JWTVerifier` for end users.

    Example::

        verifier = StaticTokenVerifier({"s3cr3t": {"sub": "ci", "scopes": ["deploy"]}})
        app = Application(routes, token_verifier=verifier)

    :param tokens: maps each token to its user (a mapping of claims).
    :raises TypeError: when *tokens* is not a mapping of ``str`` to mappings.
    :raises ValueError: for an empty token.

    .. versionadded:: 0.1
    """

    def __init__(self, tokens: Mapping[str, User]) -> None:
        # The keyed state is set up once; each MAC starts from a copy of it.
        self._keyed = hashlib.blake2b(key=os.urandom(32), digest_size=32)
        what = argument("StaticTokenVerifier", "tokens")
        check_instance(tokens, Mapping, what, "a mapping of token (str) to user (a mapping)")
        users: dict[bytes, User] = {}
        for token, user in tokens.items():
            check_instance(token, str, f"each token of {what}", "a str")
            check_instance(user, Mapping, f"each user of {what}", "a mapping of claims")
            if not token:
                raise ValueError("StaticTokenVerifier tokens must be non-empty strings")
            users[self._mac(token)] = user
        self._users = users

    def _mac(self, token: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(token.encode("utf-8", "surrogatepass"))
        return mac.digest()

    def verify(self, token: str) -> User | None:
        """Return the user of *token*, or ``None``; never raises for any string."""
        if not isinstance(token, str):
            return None  # type: ignore[unreachable]
        return self._users.get(self._mac(token))

    def __repr__(self) -> str:
        return f"StaticTokenVerifier(<{len(self._users)} tokens>)"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SignedTokenVerifier:
    """Issue and check HMAC-SHA256 signed, expiring tokens (no dependency).

    A token is ``tk1.<payload>.<signature>``: the payload is the base64url
    JSON object of your claims plus ``iat`` (issued at) and ``exp``
    (expires), and the signature is HMAC-SHA256 with *secret* over
    ``tk1.<payload>``, compared in constant time. It is signed, not
    encrypted: put no secrets in the claims. :meth:`verify` returns the
    claims of an authentic, unexpired token, and ``None`` for anything else
    (never raises, whatever the string).

    Example::

        signer = SignedTokenVerifier(secret=os.environ["TOKEN_SECRET"], max_age=3600)
        token = signer.issue({"sub": "alice", "scope": "read write"})
        assert signer.verify(token)["sub"] == "alice"
        app = Application(routes, token_verifier=signer)

    :param secret: the HMAC key (at least 16 bytes; 32 random bytes advised).
    :param max_age: lifetime of issued tokens in seconds; a token older than
        this is rejected even if it was issued with a later ``exp``.
    :param clock: returns the current time in seconds (for tests).
    :raises TypeError: for a *secret* that is not ``str`` or ``bytes``, a
        *max_age* that is not a number or a *clock* that is not callable.
    :raises ValueError: for a secret under 16 bytes or a *max_age* not above 0.

    .. versionadded:: 0.1
    """

    PREFIX = "tk1"
    #: Tokens longer than this are rejected without further work.
    MAX_LENGTH = 8192

    def __init__(
        self,
        secret: str | bytes,
        max_age: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        arg = functools.partial(argument, "SignedTokenVerifier")
        check_instance(secret, (str, bytes, bytearray), arg("secret"), "a str or bytes")
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise ValueError("SignedTokenVerifier secret must be at least 16 bytes")
        self.max_age = check_number(max_age, arg("max_age"), positive=True)
        if not callable(clock):
            raise wrong_kind(arg("clock"), "a callable returning seconds", clock)
        self._key = key
        self._clock = clock

    def _sign(self, signing_input: str) -> str:
        mac = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256)
        return _b64encode(mac.digest())

    def issue(self, claims: Mapping[str, Any], *, max_age: float | None = None) -> str:
        """Return a token carrying *claims*, valid for *max_age* (default: the verifier's).

        ``iat`` and ``exp`` are added; *claims* must be JSON-serialisable
        and may not set them.

        :raises ValueError: when *claims* contains ``iat`` or ``exp`` or
            *max_age* is not positive.
        """
        if "iat" in claims or "exp" in claims:
            raise ValueError("issue() sets 'iat' and 'exp' itself")
        lifetime = self.max_age if max_age is None else max_age
        if not _is_number(lifetime) or lifetime <= 0:
            raise ValueError("max_age must be a positive number of seconds")
        now = self._clock()
        payload = {**claims, "iat": int(now), "exp": now + lifetime}
        signing_input = f"{self.PREFIX}.{_b64encode(_json.dumps(payload))}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str) -> User | None:
        """Return the claims of an authentic, unexpired *token*, else ``None``."""
        if not isinstance(token, str) or len(token) > self.MAX_LENGTH:
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != self.PREFIX:
            return None
        _, payload_b64, signature = parts
        if not (_B64URL.fullmatch(payload_b64) and _B64URL.fullmatch(signature)):
            return None
        expected = self._sign(f"{self.PREFIX}.{payload_b64}")
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            return None
        # Only authenticated bytes are parsed from here on.
        try:
            raw = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
            claims = _json.loads(raw)
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        iat, exp = claims.get("iat"), claims.get("exp")
        if not (_is_number(iat) and _is_number(exp)):
            return None
        now = self._clock()
        if now >= cast("float", exp) or now - cast("float", iat) >= self.max_age:
            return None
        return claims

    def __repr__(self) -> str:
        return f"SignedTokenVerifier(max_age={self.max_age})"


class JWTVerifier:
    """Check JSON Web Tokens with PyJWT (extra ``jwt``).

    :meth:`verify` returns the decoded claims of a token whose signature,
    ``exp``, ``nbf``, ``aud`` and ``iss`` check out, and ``None`` otherwise
    (any PyJWT error, or a string that is not a JWT).

    Example::

        verifier = JWTVerifier(
            public_key_pem,
            algorithms=["RS256"],
            audience="https://api.example.com",
            issuer="https://auth.example.com/",
            leeway=30,
        )
        app = Application(routes, token_verifier=verifier)

    :param key: the HMAC secret or the public key (PEM or a PyJWT key object).
    :param algorithms: accepted ``alg`` values; required, since accepting
        whatever a token claims is the classic JWT hole. ``"none"`` is refused.
    :param audience: expected ``aud`` (a string or several); when set, a
        token without a matching ``aud`` is rejected.
    :param issuer: expected ``iss``.
    :param leeway: clock skew tolerated for ``exp``/``nbf``/``iat`` (seconds or a timedelta).
    :param require: claims that must be present (default ``("exp",)``).
    :raises ImportError: when PyJWT is not installed.
    :raises TypeError: for an argument of the wrong kind, including a *key*
        that no algorithm of *algorithms* can use (an ``int``, ``None``...).
    :raises ValueError: for an empty *algorithms*, ``"none"``, an algorithm
        PyJWT does not offer here (RSA and EC ones need ``cryptography``)
        or a key the algorithm refuses (a PEM public key as an HMAC secret).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        key: Any,
        *,
        algorithms: Sequence[str],
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float | datetime.timedelta = 0,
        require: Sequence[str] = ("exp",),
    ) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - the dev environment has PyJWT
            raise ImportError("JWTVerifier needs PyJWT: pip install 'tornado-kit[jwt]'") from exc
        arg = functools.partial(argument, "JWTVerifier")
        self.algorithms = check_str_sequence(algorithms, arg("algorithms"))
        if not self.algorithms:
            raise ValueError("algorithms must be a non-empty list, e.g. ['RS256']")
        if any(alg.lower() == "none" for alg in self.algorithms):
            raise ValueError("the 'none' algorithm accepts unsigned tokens and is refused")
        _check_jwt_key(jwt, key, self.algorithms, arg("key"))
        if audience is not None and not isinstance(audience, str):
            check_str_sequence(audience, arg("audience"))
        if issuer is not None:
            check_instance(issuer, str, arg("issuer"), "a str")
        if not isinstance(leeway, datetime.timedelta):
            check_number(leeway, arg("leeway"))
        self._jwt = jwt
        self._key = key
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.require = check_str_sequence(require, arg("require"))

    def verify(self, token: str) -> User | None:
        """Return the claims of a valid *token*, else ``None``."""
        if not isinstance(token, str):
            return None  # type: ignore[unreachable]
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": self.require},
            )
        except (self._jwt.PyJWTError, ValueError, TypeError) as exc:
            log.debug("JWT rejected: %s", type(exc).__name__)
            return None
        return claims

    def __repr__(self) -> str:
        return f"JWTVerifier(algorithms={self.algorithms!r})"


def _check_jwt_key(jwt: Any, key: Any, algorithms: list[str], what: str) -> None:
    """Have PyJWT prepare *key* for every algorithm, so a wrong key fails now, not per token."""
    if isinstance(key, jwt.PyJWK):
        return  # PyJWT takes the algorithm and key from the JWK itself
    for name in algorithms:
        try:
            algorithm = jwt.api_jws.get_algorithm_by_name(name)
        except NotImplementedError:
            raise ValueError(
                f"JWTVerifier() argument 'algorithms': {name!r} is not available"
                " (RSA, EC and EdDSA algorithms need the cryptography package)"
            ) from None
        try:
            algorithm.prepare_key(key)
        except TypeError:
            raise wrong_kind(
                what, f"a key {name} can use (str, bytes or a key object)", key
            ) from None
        except jwt.InvalidKeyError as exc:
            raise ValueError(f"{what} cannot be used with {name}: {exc}") from None
