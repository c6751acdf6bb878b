"""A Python backend and client against a real hub in token mode (docs/SECURITY.md).

Signs connection tokens with PyJWT exactly as the docs show, connects with the `websockets`
library, subscribes, and receives a message published over the HTTP API. Also checks that the
hub refuses what it must. Usage: check_tokens.py HUB_ADDR TOKEN_SECRET (HUB_ADDR: host:port).
Prints `N passed, M failed` and exits non-zero on any failure; every wait is bounded.
"""

import asyncio
import json
import sys
import time
import urllib.request

import jwt  # PyJWT
import websockets

WAIT = 10  # seconds, upper bound for every wait


def sign(secret, sub, subscribe, publish=(), ttl=3600):
    # What a backend does when a logged-in user opens the page.
    claims = {
        "sub": sub,
        "exp": int(time.time()) + ttl,
        "subscribe": list(subscribe),
        "publish": list(publish),
        "info": {"name": sub.title()},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def publish(addr, channel, data):
    request = urllib.request.Request(
        f"http://{addr}/api/publish/{channel}",
        data=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return json.load(response)


async def receive(ws, kind):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        if frame["type"] == kind:
            return frame


async def subscribe_and_receive(addr, secret):
    token = sign(secret, "ada", ["news", "chat:*"])
    async with websockets.connect(f"ws://{addr}/ws?token={token}", open_timeout=WAIT) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "news", "id": 1}))
        subscribed = await receive(ws, "subscribed")
        assert subscribed["id"] == 1, subscribed
        reply = publish(addr, "news", {"title": "hello from python"})
        message = await receive(ws, "message")
        assert message["offset"] == reply["offset"], (message, reply)
        assert message["data"] == {"title": "hello from python"}, message


async def outside_rights_is_forbidden(addr, secret):
    token = sign(secret, "ada", ["news"])
    async with websockets.connect(f"ws://{addr}/ws?token={token}", open_timeout=WAIT) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "secret", "id": 2}))
        error = await receive(ws, "error")
        assert (error["code"], error["id"]) == ("forbidden", 2), error
        await ws.send(json.dumps({"type": "ping", "id": 3}))
        assert (await receive(ws, "pong"))["id"] == 3, "the connection stays up"


async def refused(addr, query, status):
    try:
        async with websockets.connect(f"ws://{addr}/ws{query}", open_timeout=WAIT):
            pass
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == status, e.response.status_code
        assert json.loads(e.response.body)["error"]["code"] == (
            "unauthorized" if status == 401 else "forbidden"
        )
        return
    raise AssertionError(f"{query} was accepted")


async def bad_tokens_are_refused(addr, secret):
    await refused(addr, "", 401)
    await refused(addr, "?token=" + sign("wrong-secret-of-sufficient-length", "ada", ["news"]), 401)
    await refused(addr, "?token=" + sign(secret, "ada", ["news"], ttl=-60), 401)
    await refused(addr, "?channel=secret&token=" + sign(secret, "ada", ["news"]), 403)


async def main(addr, secret):
    passed = failed = 0
    for check in (subscribe_and_receive, outside_rights_is_forbidden, bad_tokens_are_refused):
        try:
            await check(addr, secret)
            passed += 1
            print(f"ok {check.__name__}")
        except Exception as e:  # noqa: BLE001 - report every failure, then the summary
            failed += 1
            print(f"FAILED {check.__name__}: {e!r}")
    print(f"{passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(1 if asyncio.run(main(sys.argv[1], sys.argv[2])) else 0)
