"""``python -m ian_d2.adapt``: see :mod:`ian_d2.adapt.cli`."""

from .cli import run

if __name__ == "__main__":
    run()
