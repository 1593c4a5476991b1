"""`python -m flexvid ...` runs the command-line tool (used by torchrun: `torchrun -m flexvid train`)."""

from flexvid.cli.main import main

if __name__ == "__main__":
    main()
