"""Where the mailbox sits in an LLM agent loop: the model calls tools, the tools are mailbox
commands. The model is a stub that answers in the shape of Anthropic's Messages API tool use
(``tools`` with ``input_schema``; ``tool_use`` blocks in the reply; ``tool_result`` blocks sent
back), so no network call and no API key are needed. Swap ``StubModel.create`` for
``anthropic.Anthropic().messages.create`` to run it with a real model.

    scripts/serve
    python clients/python/examples/llm_tools.py     # MAILBOX_URL to point elsewhere
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis

from redis_mailbox import Mailbox

URL = os.environ.get("MAILBOX_URL", "redis://127.0.0.1:6399")
ME, BOSS = "{llm}assistant", "{llm}boss"

TOOLS: list[dict[str, Any]] = [
    {
        "name": "read_inbox",
        "description": "Read up to `count` new messages from my mailbox.",
        "input_schema": {
            "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 1, "maximum": 10}},
            "required": ["count"],
        },
    },
    {
        "name": "reply",
        "description": "Answer a message I read, by its id.",
        "input_schema": {
            "type": "object",
            "properties": {"message_id": {"type": "string"}, "text": {"type": "string"}},
            "required": ["message_id", "text"],
        },
    },
]


class StubModel:
    """Plays a model that first reads its inbox, then replies to each message, then stops."""

    def create(
        self, *, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> dict[str, Any]:
        last = messages[-1]["content"]
        results = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]
        if not results:
            call = {"type": "tool_use", "id": "tu_1", "name": "read_inbox", "input": {"count": 5}}
            return {"role": "assistant", "stop_reason": "tool_use", "content": [call]}
        if results[0]["tool_use_id"] == "tu_1":
            inbox = json.loads(results[0]["content"])
            calls = [
                {
                    "type": "tool_use",
                    "id": f"tu_reply_{i}",
                    "name": "reply",
                    "input": {"message_id": m["id"], "text": f"Done: {m['text'].lower()}"},
                }
                for i, m in enumerate(inbox)
            ]
            if calls:
                return {"role": "assistant", "stop_reason": "tool_use", "content": calls}
        text = {"type": "text", "text": "All messages answered."}
        return {"role": "assistant", "stop_reason": "end_turn", "content": [text]}


def run_tool(mb: Mailbox, name: str, args: dict[str, Any]) -> str:
    if name == "read_inbox":
        msgs = mb.read(ME, count=int(args["count"]))
        return json.dumps([{"id": m.id, "from": m.sender, "text": m.text} for m in msgs])
    if name == "reply":
        sent = mb.reply(ME, args["message_id"], args["text"])
        mb.ack(ME, args["message_id"])  # answered: settle it
        return json.dumps({"sent": sent.id})
    raise ValueError(f"unknown tool {name}")


def main() -> None:
    mb = Mailbox(redis.Redis.from_url(URL))
    mb.client.delete(ME, BOSS)
    mb.send(ME, "Summarise the Q3 report", reply_to=BOSS)
    mb.send(ME, "Book the team offsite", reply_to=BOSS)

    model = StubModel()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Work through your inbox."}]
    while True:
        reply = model.create(messages=messages, tools=TOOLS)
        messages.append({"role": "assistant", "content": reply["content"]})
        if reply["stop_reason"] != "tool_use":
            print(f"[model] {reply['content'][0]['text']}")
            break
        results = []
        for block in reply["content"]:
            out = run_tool(mb, block["name"], block["input"])
            print(f"[tool]  {block['name']}({json.dumps(block['input'])}) -> {out}")
            results.append({"type": "tool_result", "tool_use_id": block["id"], "content": out})
        messages.append({"role": "user", "content": results})

    for m in mb.read(BOSS, count=10):
        print(f"[boss]  got {m.text!r} (answer to {m.correlation})")
        mb.ack(BOSS, m.id)


if __name__ == "__main__":
    main()
