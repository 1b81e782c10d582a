"""Bad input as a new person would send it: clear errors, nothing changed."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.factories import sign_up


async def test_wrong_password_and_unknown_email_read_the_same(client: httpx.AsyncClient) -> None:
    await sign_up(client, "samey")
    wrong = await client.post(
        "/api/v1/auth/signin", json={"email": "samey@example.org", "password": "not my password"}
    )
    unknown = await client.post(
        "/api/v1/auth/signin", json={"email": "ghost@example.org", "password": "not my password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_duplicate_email_and_handle_are_refused(client: httpx.AsyncClient) -> None:
    await sign_up(client, "first")
    dup_email = await client.post(
        "/api/v1/auth/signup",
        json={"email": "FIRST@example.org", "handle": "second", "password": PASSWORD},
    )
    assert dup_email.status_code == 409
    assert dup_email.json()["error"]["code"] == "email_taken"
    dup_handle = await client.post(
        "/api/v1/auth/signup",
        json={"email": "other@example.org", "handle": "FIRST", "password": PASSWORD},
    )
    assert dup_handle.status_code == 409
    assert dup_handle.json()["error"]["code"] == "handle_taken"
    # Neither attempt created an account.
    gone = await client.post(
        "/api/v1/auth/signin", json={"email": "other@example.org", "password": PASSWORD}
    )
    assert gone.status_code == 401


@pytest.mark.parametrize(
    "password",
    ["short1", "password", "qwertyuiop", "iloveyou", "weakling_handle", "x" * 129],
)
async def test_weak_passwords_are_refused(client: httpx.AsyncClient, password: str) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "weak@example.org", "handle": "weakling_handle", "password": password},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "weak_password"
    assert response.json()["error"]["details"]["field"] == "password"


async def test_long_passphrase_of_64_characters_is_fine(client: httpx.AsyncClient) -> None:
    await sign_up(client, "longpass", password="k" * 30 + " a passphrase that is long " + "z" * 7)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "handle": "okhandle", "password": PASSWORD}, "email"),
        ({"email": "a@example.org", "handle": "no spaces!", "password": PASSWORD}, "handle"),
        ({"email": "a@example.org", "handle": "ab", "password": PASSWORD}, "handle"),
        ({"email": "a@example.org", "handle": "okhandle"}, "password"),
    ],
)
async def test_malformed_sign_up_is_a_validation_error(
    client: httpx.AsyncClient, body: dict[str, str], field: str
) -> None:
    response = await client.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(field in f["loc"] for f in error["details"]["fields"])


async def test_reserved_handle_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/signup",
        json={"email": "a@example.org", "handle": "admin", "password": PASSWORD},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "handle_taken"


async def test_sign_in_is_rate_limited_per_account(client: httpx.AsyncClient) -> None:
    await sign_up(client, "hammered")
    codes = []
    for _ in range(11):
        r = await client.post(
            "/api/v1/auth/signin",
            json={"email": "hammered@example.org", "password": "wrong guess!"},
        )
        codes.append(r.status_code)
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    # Even the right password is refused while the limit holds.
    right = await client.post(
        "/api/v1/auth/signin", json={"email": "hammered@example.org", "password": PASSWORD}
    )
    assert right.status_code == 429
    assert right.json()["error"]["code"] == "rate_limited"
    assert int(right.headers["Retry-After"]) > 0


async def test_sign_up_is_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    codes = []
    for n in range(6):
        r = await client.post(
            "/api/v1/auth/signup",
            json={"email": f"spam{n}@example.org", "handle": f"spammer{n}", "password": PASSWORD},
        )
        codes.append(r.status_code)
    assert codes == [201] * 5 + [429]


async def test_unknown_route_and_bad_cursor(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    person = await sign_up(client, "cursory")
    bad = await client.get("/api/v1/people/cursory/followers?cursor=%%%%", headers=person.auth)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"


async def test_profile_update_ignores_nothing_silently(client: httpx.AsyncClient) -> None:
    person = await sign_up(client, "strict")
    response = await client.patch(
        "/api/v1/me/profile", headers=person.auth, json={"is_admin": True, "bio": "hi"}
    )
    assert response.status_code == 422
    me = (await client.get("/api/v1/me", headers=person.auth)).json()
    assert me["bio"] == ""


async def test_sign_in_is_rate_limited_per_client_address(client: httpx.AsyncClient) -> None:
    codes = []
    for n in range(51):
        r = await client.post(
            "/api/v1/auth/signin",
            json={"email": f"guess{n}@example.org", "password": "wrong guess!"},
        )
        codes.append(r.status_code)
    assert codes[:50] == [401] * 50
    assert codes[50] == 429
