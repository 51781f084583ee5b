"""Start the e2e target server (TARGET=conclave|prosody) for non-Python test suites.

Usage: serve_target.py [--overrides JSON] USER [USER...]
Prints one JSON line with ports and created accounts, then runs until stdin
closes (or SIGTERM), and stops the server.  Used by tests/node against Prosody.
"""

import json
import signal
import sys

import harness


def main() -> int:
    args = sys.argv[1:]
    overrides = {"registration.allow": True}
    if args[:1] == ["--overrides"]:
        overrides.update(json.loads(args[1]))
        args = args[2:]
    try:
        srv = harness.make_server(overrides, "node")
    except harness.Unsupported as e:
        print(json.dumps({"unsupported": str(e)}), flush=True)
        return 0
    try:
        srv.start()
        users = {}
        for name in args:
            jid, pw = srv.add_user(name)
            users[jid] = pw
        print(
            json.dumps(
                {
                    "kind": srv.kind,
                    "host": srv.host,
                    "domain": srv.domain,
                    "starttls_port": srv.starttls_port,
                    "direct_tls_port": srv.direct_tls_port,
                    "http_port": srv.http_port,
                    "users": users,
                    "log_path": str(srv.stderr_path),
                }
            ),
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        sys.stdin.read()
    finally:
        srv.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
