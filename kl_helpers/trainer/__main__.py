"""``python -m kl_helpers.trainer``: the command line of ``kl_helpers.trainer.cli``."""

from kl_helpers.trainer.cli import main

if __name__ == "__main__":
    main()
