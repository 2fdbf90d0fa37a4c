"""A planner hands out tasks to a worker and collects the answers, through redis-mailbox.

    scripts/serve                                     # in one terminal: Redis with the module
    python clients/python/examples/planner_worker.py  # in another

MAILBOX_URL (default redis://127.0.0.1:6399) points elsewhere. The script creates two ACL users,
planner and worker (the module stamps each message's sender from the connection's user), then
runs both agents in one process: the planner sends each task to the worker's mailbox with
REPLYTO its own; the worker answers with MAILBOX.REPLY (correlation = the task's id) and
publishes progress on the topic {demo}progress.<task>, to which the planner's mailbox is
subscribed. Every message is acked only when its handler returned.
"""

from __future__ import annotations

import os
import sys
import threading

import redis

from redis_mailbox import Mailbox, Message

URL = os.environ.get("MAILBOX_URL", "redis://127.0.0.1:6399")
NS = "{demo}"
PLANNER, WORKER = f"{NS}planner", f"{NS}worker"
TASKS = ["add 2 3", "mul 6 7", "add 40 2"]


_out = threading.Lock()


def say(line: str) -> None:
    """One whole line at a time: the two agents print from two threads."""
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def connect(user: str) -> Mailbox:
    admin = redis.Redis.from_url(URL)
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{user}-pw"],
        keys=[f"{NS}*", "mailbox:*"],
        channels=["*"],
        commands=["+@all"],
    )
    admin.close()
    return Mailbox(redis.Redis.from_url(URL, username=user, password=f"{user}-pw"))


def worker(mb: Mailbox, count: int) -> None:
    done = 0
    with mb.listen(WORKER, block=1000, idle_timeout=10) as stream:
        for task in stream:
            op, a, b = task.text.split()
            result = int(a) + int(b) if op == "add" else int(a) * int(b)
            mb.publish(f"{NS}progress.{task.id}", f"worker: solved '{task.text}'")
            mb.reply(WORKER, task, {"task": task.text, "result": result})
            say(f"[worker]  {task.sender} asked {task.text!r} -> answered {result}")
            done += 1
            if done == count:
                break


def main() -> None:
    planner, work = connect("planner"), connect("worker")
    for box in (PLANNER, WORKER):  # a clean slate for the demo
        planner.client.delete(box)
    planner.subscribe(PLANNER, "progress.#")
    t = threading.Thread(target=worker, args=(work, len(TASKS)))
    t.start()
    pending: dict[str, str] = {}
    for text in TASKS:
        sent = planner.send(WORKER, text, reply_to=PLANNER, thread="demo-run")
        assert sent.id is not None
        pending[sent.id] = text
        say(f"[planner] sent task {text!r} as {sent.id}")

    def handle(msg: Message) -> None:
        if msg.correlation in pending:
            answer = msg.json()
            say(f"[planner] answer from {msg.sender} for {answer['task']!r}: {answer['result']}")
            del pending[msg.correlation]
        else:
            say(f"[planner] progress on {msg.to}: {msg.text}")

    with planner.listen(PLANNER, block=1000, idle_timeout=10) as stream:
        for msg in stream:
            handle(msg)
            if not pending:
                break
    t.join()
    left = planner.info(PLANNER)
    say(f"[planner] all {len(TASKS)} answers in; its mailbox holds {left.ready + left.leased}")


if __name__ == "__main__":
    main()
