"""A modest concurrent load: many simultaneous logins and a message ring."""

import asyncio
import time

from clients import close_all, login, run

N = 40


def test_concurrent_logins_and_message_ring(server):
    users = [server.add_user() for _ in range(N)]

    async def scenario():
        t0 = time.monotonic()
        results = await asyncio.gather(*(login(server, j, p, timeout=30) for j, p in users), return_exceptions=True)
        clients = [c for c in results if not isinstance(c, BaseException)]
        try:
            errors = [repr(e) for e in results if isinstance(e, BaseException)]
            assert not errors, f"{len(errors)} of {N} concurrent logins failed: {errors[:3]}"
            login_time = time.monotonic() - t0
            for i, c in enumerate(clients):
                nxt = users[(i + 1) % N][0]
                for k in range(5):
                    c.send_message(mto=nxt, mbody=f"{i}:{k}", mtype="chat")
            for i, c in enumerate(clients):
                prev = (i - 1) % N
                got = [(await c.next_message(timeout=20))["body"] for _ in range(5)]
                assert got == [f"{prev}:{k}" for k in range(5)], got
            assert login_time < 30, f"{N} logins took {login_time:.1f}s"
        finally:
            await close_all(*clients)

    run(scenario(), timeout=120)
