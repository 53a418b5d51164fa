"""``python -m radsight``: the radsight command (also what ``torchrun -m radsight train ...`` runs)."""
from radsight.cli import app

if __name__ == "__main__":  # not when a spawned process of a run imports this module as its main
    app(prog_name="radsight")
