"""Evaluate and compare checkpoints: `python eval.py {run,compare,export,profile,truncate,interpolate} --help`."""

from vscale.eval.cli import main

if __name__ == "__main__":
    main()
