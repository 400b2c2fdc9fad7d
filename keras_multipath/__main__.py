"""`python -m keras_multipath`: the `keras-multipath` command line."""

import sys

from keras_multipath.cli import main

if __name__ == "__main__":
    sys.exit(main())
