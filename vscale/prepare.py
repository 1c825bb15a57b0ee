"""`python -m vscale.prepare`: the entry point of `vscale.data.prepare` (tokenize a corpus once)."""

from vscale.data.prepare import main

if __name__ == "__main__":
    main()
