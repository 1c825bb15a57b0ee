"""`eval.py export`: a train.py checkpoint as a Hugging Face directory with its interventions."""

from vscale.data import load_tokenizer
from vscale.errors import ConfigError
from vscale.eval.checkpoints import load_checkpoint
from vscale.model import save_pretrained


def export(ckpt: str | None = None, out: str = "export"):
    """Export a train.py checkpoint as a Hugging Face directory (weights, config, tokenizer) plus
    vscale.json; reload with V-scale in one line: `vscale.from_pretrained(out)`.

    Args:
        ckpt: A train.py .ckpt.
        out: Output directory.
    """
    if not ckpt:
        raise ConfigError("--ckpt: give the train.py checkpoint to export.")
    loaded = load_checkpoint(ckpt)
    tokenizer = load_tokenizer(loaded.data["tokenizer"]) if loaded.data else None
    save_pretrained(loaded.model, out, tokenizer)
    print(f"wrote {out} (vscale={loaded.vscale}); load it with vscale.from_pretrained({out!r})")
