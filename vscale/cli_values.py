"""Command-line values: every list option also takes one value (`--ckpt last.ckpt` as `--ckpt "[last.ckpt]"`)."""

Strings = str | list[str]  # str first: jsonargparse would read a string as the list of its characters
Ints = int | list[int]


def as_list(value):
    """A list option's value as a list: one value becomes a list of one; None stays None."""
    if value is None or isinstance(value, list):
        return value
    return list(value) if isinstance(value, tuple) else [value]
