"""``python -m radsight``: the radsight command (also what ``torchrun -m radsight train ...`` runs)."""
from radsight.cli import app

app(prog_name="radsight")
