"""Studies: a grid of training runs (task x model x memory setting x seed), run, resumed and aggregated.

``spec`` reads a study file, ``cell`` trains and evaluates one cell through runners/train_agent.py,
``engines`` runs the cells here or through submitit, ``report`` aggregates them (rliable) into a CSV,
a table and the paper's Figure 4. The command is ``python -m runners.study``.
"""
