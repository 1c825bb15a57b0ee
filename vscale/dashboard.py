"""`python -m vscale.dashboard`: the entry point of `vscale.launch.dashboard` (a wandb workspace for one study)."""

from vscale.launch.dashboard import main

if __name__ == "__main__":
    main()
