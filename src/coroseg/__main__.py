"""``python -m coroseg`` (also what ``torchrun -m coroseg train ...`` runs)."""

from coroseg.cli import main

if __name__ == "__main__":
    main()
