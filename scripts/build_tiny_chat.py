"""Build the tiny chat data for configs/finetune-tiny.yaml from the tiny corpus.

Every paragraph of two sentences or more becomes one conversation: the user gives its first
sentence and asks for the next ones, the assistant replies with up to three sentences. Deterministic, so
re-running gives byte-identical files:

    data/tiny/chat-train.jsonl, data/tiny/chat-val.jsonl   one {"messages": [...]} per line

Rebuild:  python scripts/build_tiny_chat.py
"""

import json
import os
import re

repo_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
data_dir = os.path.join(repo_dir, "data", "tiny")


def conversations(text):
    for paragraph in text.split("\n\n"):
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split()))
        if len(sentences) >= 2:
            yield {
                "messages": [
                    {"role": "user", "content": f"Continue this documentation: {sentences[0]}"},
                    {"role": "assistant", "content": " ".join(sentences[1:4])},
                ]
            }


for split in ("train", "val"):
    with open(os.path.join(data_dir, f"{split}.jsonl")) as f:
        chats = [c for line in f for c in conversations(json.loads(line)["text"])]
    with open(os.path.join(data_dir, f"chat-{split}.jsonl"), "w") as f:
        f.writelines(json.dumps(c) + "\n" for c in chats)
    print(f"{split}: {len(chats)} conversations")
