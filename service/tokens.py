"""API bearer tokens: stored as hashes, with scopes read, write, admin."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from opsync.service.clock import now
from opsync.service.models import ApiToken

SCOPES = ("read", "write", "admin")
PREFIX = "ops_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, scopes: list[str], name: str = "") -> str:
    """A new token; only its hash is stored, so this is the one time it can be read."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    token = PREFIX + secrets.token_urlsafe(32)
    with Session(engine) as session:
        session.add(ApiToken(name=name or ",".join(scopes), token_hash=_hash(token), scopes=scopes, created_at=now()))
        session.commit()
    return token


def token_name(engine: Engine, token: str, bootstrap: str | None = None) -> str | None:
    """Who a token is, by the name it was created with (for what it changes); None if unknown."""
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        return "the bootstrap token"
    with Session(engine) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.token_hash == _hash(token), col(ApiToken.revoked_at).is_(None))
        ).first()
    return row.name if row else None


def token_scopes(engine: Engine, token: str, bootstrap: str | None = None) -> set[str] | None:
    """The scopes a token grants (admin implies write implies read), or None if unknown."""
    if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
        granted = {"admin"}
    else:
        with Session(engine) as session:
            row = session.exec(
                select(ApiToken).where(ApiToken.token_hash == _hash(token), col(ApiToken.revoked_at).is_(None))
            ).first()
        if row is None:
            return None
        granted = set(row.scopes)
    if "admin" in granted:
        granted |= {"write", "read"}
    if "write" in granted:
        granted.add("read")
    return granted
