"""`python -m figures.suite [options]` is `ntk-rnn figures [options]`."""

import sys

from figures.suite.cli import main

if __name__ == "__main__":
    sys.exit(main(["figures", *sys.argv[1:]]))
