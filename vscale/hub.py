"""Loading a model, tokenizer or dataset by hub name, with one clear line when the hub is out of
reach (compute nodes often have no network) instead of a retry log and a long traceback."""

from pathlib import Path

from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

from vscale.errors import HubUnreachable


def _offline(error: BaseException) -> bool:
    while error is not None:
        if isinstance(error, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError)):
            return True
        error = error.__cause__ or error.__context__
    return False


def from_hub(load, name: str, field: str, *args, **kwargs):
    """`load(name, *args, **kwargs)`; a local path is loaded as is, a hub name that cannot be
    fetched raises HubUnreachable naming `field` and the way out."""
    if Path(name).exists():
        return load(name, *args, **kwargs)
    try:
        return load(name, *args, **kwargs)
    except Exception as error:
        if not _offline(error):
            raise
        raise HubUnreachable(
            f"{field}={name!r}: the Hugging Face hub could not be reached and nothing is cached for {name!r}; give a "
            "local directory (save_pretrained / eval.py export output, or local data files), or run where the hub is "
            "reachable."
        ) from None
