"""``python -m projector``: see ``projector.cli``."""

from projector.cli import main

if __name__ == "__main__":
    main(prog_name="python -m projector")
