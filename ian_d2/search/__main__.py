"""``python -m ian_d2.search``: see :mod:`ian_d2.search.cli`."""

from .cli import run

if __name__ == "__main__":
    run()
