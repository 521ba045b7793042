"""The library every stage imports: the ERL round (erl.py) and what it is built from. Nothing here imports tools/."""
