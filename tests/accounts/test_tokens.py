"""Access and refresh tokens, sessions, sign-out, password change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import jwt
from sqlalchemy import event, select, update

from craftreel.accounts.models import AuthSession
from craftreel.accounts.service import authenticate_access_token
from craftreel.context import AppContext
from craftreel.core.clock import utcnow
from tests.conftest import PASSWORD, Outbox
from tests.factories import sign_in, sign_up


async def test_access_token_lives_at_most_15_minutes(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "short")
    claims = jwt.decode(person.access_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= 15 * 60


async def test_refresh_rotates_and_a_reused_token_ends_the_family(
    client: httpx.AsyncClient,
) -> None:
    person = await sign_up(client, "rotator")
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != person.refresh_token
    assert rotated["session_id"] == person.session_id

    # An attacker replays the old token: the whole session ends, the new tokens stop working.
    replay = await client.post("/api/v1/auth/refresh", json={"refresh_token": person.refresh_token})
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "token_reused"

    newer = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert newer.status_code == 401
    me = await client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert me.status_code == 401


async def test_unknown_or_garbage_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    bad = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "token_invalid"


async def test_forged_and_expired_access_tokens_are_refused(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "forger")
    claims = jwt.decode(person.access_token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-key-but-long-enough-to-pass-32", algorithm="HS256")
    expired = dict(claims, exp=claims["iat"] - 60)
    for token in (
        forged,
        jwt.encode(expired, "not-the-key-but-long-enough-to-pass-32", algorithm="HS256"),
        "garbage",
    ):
        response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"


async def test_sign_out_ends_only_that_session(client: httpx.AsyncClient) -> None:
    phone = await sign_up(client, "twodevices")
    laptop = await sign_in(client, phone.email, phone.handle)
    out = await client.post("/api/v1/auth/signout", headers=phone.auth)
    assert out.status_code == 204
    assert (await client.get("/api/v1/me", headers=phone.auth)).status_code == 401
    assert (await client.get("/api/v1/me", headers=laptop.auth)).status_code == 200
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": phone.refresh_token})
    assert refresh.status_code == 401


async def test_list_and_revoke_sessions(client: httpx.AsyncClient) -> None:
    phone = await sign_up(client, "lister")
    laptop = await sign_in(client, phone.email, phone.handle)
    sessions = (await client.get("/api/v1/me/sessions", headers=phone.auth)).json()
    assert {s["id"] for s in sessions} == {phone.session_id, laptop.session_id}
    assert [s["current"] for s in sessions if s["id"] == phone.session_id] == [True]
    assert all(s["device"] and s["last_seen_at"] for s in sessions)

    revoked = await client.delete(f"/api/v1/me/sessions/{laptop.session_id}", headers=phone.auth)
    assert revoked.status_code == 204
    assert (await client.get("/api/v1/me", headers=laptop.auth)).status_code == 401
    left = (await client.get("/api/v1/me/sessions", headers=phone.auth)).json()
    assert [s["id"] for s in left] == [phone.session_id]


async def test_cannot_revoke_someone_elses_session(client: httpx.AsyncClient) -> None:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bobby")
    response = await client.delete(f"/api/v1/me/sessions/{bob.session_id}", headers=alice.auth)
    assert response.status_code == 404
    assert (await client.get("/api/v1/me", headers=bob.auth)).status_code == 200


async def test_changing_password_ends_every_other_session(client: httpx.AsyncClient) -> None:
    phone = await sign_up(client, "changer")
    laptop = await sign_in(client, phone.email, phone.handle)
    new_password = "a much better passphrase 2026"
    changed = await client.post(
        "/api/v1/me/password",
        headers=phone.auth,
        json={"current_password": PASSWORD, "new_password": new_password},
    )
    assert changed.status_code == 204
    assert (await client.get("/api/v1/me", headers=phone.auth)).status_code == 200
    assert (await client.get("/api/v1/me", headers=laptop.auth)).status_code == 401
    old = await client.post(
        "/api/v1/auth/signin", json={"email": phone.email, "password": PASSWORD}
    )
    assert old.status_code == 401
    await sign_in(client, phone.email, phone.handle, new_password)


async def test_change_password_needs_the_current_one(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "guarded")
    response = await client.post(
        "/api/v1/me/password",
        headers=person.auth,
        json={"current_password": "wrong password here", "new_password": "another fine passphrase"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    await sign_in(client, person.email, person.handle)


async def test_password_reset_flow(client: httpx.AsyncClient, outbox: Outbox) -> None:
    person = await sign_up(client, "forgetful")
    asked = await client.post("/api/v1/auth/password/forgot", json={"email": person.email})
    assert asked.status_code == 202
    token = outbox.link(person.email, "/reset")
    new_password = "remembered it this time"
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": new_password}
    )
    assert reset.status_code == 204
    # Every session ended; the old password no longer works; the new one does.
    assert (await client.get("/api/v1/me", headers=person.auth)).status_code == 401
    await sign_in(client, person.email, person.handle, new_password)

    reused = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": "yet another passphrase"}
    )
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "token_invalid"
    await sign_in(client, person.email, person.handle, new_password)


async def test_forgot_password_says_the_same_for_unknown_email(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    response = await client.post(
        "/api/v1/auth/password/forgot", json={"email": "nobody@example.org"}
    )
    assert response.status_code == 202
    assert outbox.messages() == []


async def test_weak_reset_password_keeps_the_link_usable(
    client: httpx.AsyncClient, outbox: Outbox
) -> None:
    person = await sign_up(client, "retrier")
    await client.post("/api/v1/auth/password/forgot", json={"email": person.email})
    token = outbox.link(person.email, "/reset")
    weak = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": "password"}
    )
    assert weak.status_code == 400
    assert weak.json()["error"]["code"] == "weak_password"
    ok = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": "strong enough now"}
    )
    assert ok.status_code == 204


async def test_tampered_and_expired_links_are_refused(
    client: httpx.AsyncClient, outbox: Outbox, settings: object
) -> None:
    person = await sign_up(client, "tamper")
    token = outbox.link(person.email, "/verify")
    raw, mac = token.split(".")
    tampered = raw[:-2] + ("AA" if raw[-2:] != "AA" else "BB") + "." + mac
    response = await client.post("/api/v1/auth/verify-email", json={"token": tampered})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    # A verify link presented as a reset link is refused: the signature covers the purpose.
    wrong_use = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "password": "whatever it is now"}
    )
    assert wrong_use.status_code == 401
    me = (await client.get("/api/v1/me", headers=person.auth)).json()
    assert me["email_verified"] is False


async def test_a_read_notes_the_session_last_seen_after_it_without_writing_in_it(
    client: httpx.AsyncClient, ctx: AppContext
) -> None:
    """A GET's unit of work is read-only: the session's last-seen time is written after it,
    in a unit of work of its own — never flushed inside the read (on SQLite that UPDATE
    fails with "database is locked" when another transaction committed meanwhile)."""
    person = await sign_up(client, "lastseen")
    long_ago = utcnow() - timedelta(minutes=5)
    session_id = UUID(person.session_id)
    async with ctx.uow() as uow:
        await uow.session.execute(
            update(AuthSession).where(AuthSession.id == session_id).values(last_seen_at=long_ago)
        )
    writes: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            writes.append(statement)

    async with ctx.uow(read_only=True) as uow:
        event.listen(ctx.engine.sync_engine, "before_cursor_execute", note)
        try:
            identity = await authenticate_access_token(uow, ctx, person.access_token)
            await uow.session.flush()
        finally:
            event.remove(ctx.engine.sync_engine, "before_cursor_execute", note)
        assert identity.session.id == session_id
        assert writes == []
    async with ctx.uow() as uow:
        seen = await uow.session.scalar(
            select(AuthSession.last_seen_at).where(AuthSession.id == session_id)
        )
    assert seen is not None and seen > long_ago + timedelta(minutes=4)
