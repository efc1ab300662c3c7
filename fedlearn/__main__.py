"""``python -m fedlearn``: the same command line as the ``fedlearn`` script (``fedlearn.cli``)."""

from fedlearn.cli import main

if __name__ == "__main__":
    main()
