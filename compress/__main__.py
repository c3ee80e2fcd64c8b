"""`python -m compress …` (and `torchrun -m compress …`)."""

from compress.cli.app import main

if __name__ == "__main__":
    main()
