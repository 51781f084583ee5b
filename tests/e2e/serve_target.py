"""Start the e2e target server (TARGET=conclave|prosody) for non-Python test suites.

Usage: serve_target.py USER [USER...]
Prints one JSON line with ports and created accounts, then runs until stdin
closes (or SIGTERM), and stops the server.  Used by tests/node against Prosody.
"""

import json
import signal
import sys

import harness


def main() -> int:
    srv = harness.make_server({"registration.allow": True}, "node")
    try:
        srv.start()
        users = {}
        for name in sys.argv[1:]:
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
