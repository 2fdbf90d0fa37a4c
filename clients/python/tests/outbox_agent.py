"""An agent process for the outbox tests: sends while Redis is down, then waits to be killed.

python outbox_agent.py PORT OUTBOX_PATH COUNT MAX_MESSAGES
"""

from __future__ import annotations

import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_mailbox import Mailbox, Outbox, OutboxFull, RetryPolicy


def main() -> None:
    port, path, count, cap = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    client = redis.Redis(port=port, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    mb = Mailbox(client, retry=RetryPolicy(max_attempts=1), outbox=Outbox(path, max_messages=cap))
    for i in range(count):
        try:
            sent = mb.send("{t}bob", f"m{i}")
        except OutboxFull:
            print(f"full at {i}", flush=True)
            continue
        print(f"queued {i} {sent.queued}", flush=True)
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
