"""``python -m logitscope`` (also what ``torchrun -m logitscope`` runs)."""

from .cli import main

main()
