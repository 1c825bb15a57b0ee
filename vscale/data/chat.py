"""Chat examples as tokens and labels: the loss is taken on the assistant's replies only."""

from pathlib import Path

from vscale.errors import ConfigError

IGNORE = -100  # the label Hugging Face's loss skips


def set_chat_template(tokenizer, template: str | None) -> None:
    """Use `template` (a Jinja file or string) when given; else the tokenizer must bring its own."""
    if template:
        tokenizer.chat_template = Path(template).read_text() if Path(template).is_file() else template
    if not tokenizer.chat_template:
        raise ConfigError(
            f"data.chat_template: tokenizer {tokenizer.name_or_path!r} has no chat template; give a Jinja template "
            "file (e.g. assets/chat_template.jinja) or use a tokenizer that has one."
        )
    if not tokenizer.is_fast:
        raise ConfigError(
            f"data.tokenizer={tokenizer.name_or_path!r}: response masks need a fast tokenizer (character offsets)."
        )


def chat_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation, and labels equal to them on assistant replies and
    IGNORE elsewhere. A reply is the text between the conversation rendered up to it (with the
    generation prompt) and rendered through it; a token belongs to the part it starts in."""
    render = lambda msgs, prompt=False: tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=prompt
    )
    text = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(messages[:i], prompt=True), render(messages[: i + 1])
        if not (text.startswith(through) and through.startswith(before)):
            raise ConfigError(
                "data.chat_template renders earlier turns differently once later turns follow, so replies cannot be "
                "located; use a template whose rendering of a conversation prefix is a prefix of the whole."
            )
        spans.append((len(before), len(through)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if any(start <= offset < end for start, end in spans) else IGNORE
        for token, (offset, _) in zip(encoded["input_ids"], encoded["offset_mapping"])
    ]
    return encoded["input_ids"], labels
