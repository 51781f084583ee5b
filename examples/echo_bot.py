#!/usr/bin/env python3
"""An XEP-0114 component for Conclave: an echo bot that also rolls dice.

It serves a whole domain: write to anything@bot.localhost (or the bare
domain) and it answers from the address you wrote to. "roll 2d6" (or
"roll d20", "roll 3d8+2") rolls dice; anything else comes back as is.

    COMPONENT_SECRET='...' python3 examples/echo_bot.py --domain bot.localhost

Needs slixmpp (tests/.venv has it). See examples/README.md for the server side.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import re

from slixmpp import ComponentXMPP

DICE = re.compile(r"roll\s+(\d{0,2})d(\d{1,3})\s*([+-]\s*\d{1,4})?")


def answer(text: str, rng: random.Random | None = None) -> str:
    """The bot's reply to one message body."""
    rng = rng or random.Random()
    m = DICE.fullmatch(text.strip().lower())
    if m is None:
        return text
    count = int(m.group(1) or 1)
    sides = int(m.group(2))
    bonus = int((m.group(3) or "0").replace(" ", ""))
    if not 1 <= count <= 20 or not 2 <= sides <= 100:
        return "I roll 1 to 20 dice of 2 to 100 sides."
    rolls = [rng.randint(1, sides) for _ in range(count)]
    total = sum(rolls) + bonus
    shown = " + ".join(map(str, rolls))
    if bonus:
        shown += f" {'+' if bonus > 0 else '-'} {abs(bonus)}"
    return f"{shown} = {total}"


class EchoBot(ComponentXMPP):
    """Answers every chat or normal message with a body."""

    def __init__(self, domain: str, secret: str, host: str = "127.0.0.1", port: int = 5347):
        super().__init__(domain, secret, host, port)
        # disco#info to the domain is the component's to answer.
        self.register_plugin("xep_0030")
        self.plugin["xep_0030"].add_identity(category="client", itype="bot", name="Echo and dice")
        self.add_event_handler("message", self.on_message)

    def on_message(self, msg) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        # reply() swaps the addresses: it comes from the JID the user wrote to.
        msg.reply(answer(msg["body"])).send()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", default="bot.localhost", help="the component's domain (as in the server's config)")
    p.add_argument("--host", default="127.0.0.1", help="the server's component listener")
    p.add_argument("--port", type=int, default=5347, help="components.port in the server's config")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    # From the environment, not the command line: other users can read
    # every process's arguments.
    secret = os.environ.get("COMPONENT_SECRET")
    if not secret:
        p.error("set COMPONENT_SECRET to the component's secret")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    bot = EchoBot(args.domain, secret, args.host, args.port)
    bot.add_event_handler("session_start", lambda _: logging.info("connected as %s", args.domain))
    bot.add_event_handler("stream_error", lambda e: logging.error("refused: %s", e["condition"]))
    bot.connect()
    try:
        asyncio.get_event_loop().run_until_complete(bot.disconnected)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
