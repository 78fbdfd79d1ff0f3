"""``python -m lbt_lightning fit --config ...``."""

from lbt_lightning.lightning.cli import main

if __name__ == "__main__":
    main()
