"""`cellplane user password`: prompted (from a pipe: read from stdin), never an argument; the password it sets signs
in to the console; users changing their own give the current one."""

from __future__ import annotations

import httpx

from consolekit import ConsoleUser, make_user, session_client
from liveserver import LiveServer, fails, ok, run_cli


def test_an_administrator_sets_a_users_password_and_the_user_signs_in_with_it(live_server: LiveServer) -> None:
    user = make_user(live_server, "cli-carla", role="viewer")
    new = "correct horse battery staple"
    result = ok(run_cli(live_server, "user", "password", user.name, input=f"{new}\n{new}\n"))
    assert result.stdout == "" and new not in result.stderr
    assert "password of user/cli-carla set" in result.stderr
    client = session_client(live_server, ConsoleUser(user.name, new, user.token))
    assert client.get("/console/").status_code == 200
    assert new not in live_server.log()


def test_two_different_entries_change_nothing(live_server: LiveServer) -> None:
    user = make_user(live_server, "cli-dora", role="viewer")
    line = fails(run_cli(live_server, "user", "password", user.name, input="first-password-1\nsecond-password-2\n"))
    assert line == "error: the two passwords differ; nothing changed"
    assert session_client(live_server, user).get("/console/").status_code == 200  # the old one still works


def test_users_changing_their_own_password_give_the_current_one(live_server: LiveServer) -> None:
    user = make_user(live_server, "cli-eve", role="viewer")
    line = fails(run_cli(live_server, "user", "password", token=user.token,
                         input="not-the-current-one\nanother-password-1\nanother-password-1\n"))
    assert line.startswith("error: the current password is not right")
    ok(run_cli(live_server, "user", "password", token=user.token,
               input=f"{user.password}\nanother-password-1\nanother-password-1\n"))
    with httpx.Client(base_url=live_server.api, headers={"Authorization": f"Bearer {user.token}"}) as api:
        r = api.put("/users/cli-carla/password", json={"password": "someone-elses-1"})
    assert r.status_code == 403
    assert r.json()["error"]["message"] == "only 'cli-carla' or a platform administrator may set the password of " \
                                           "'cli-carla'"
