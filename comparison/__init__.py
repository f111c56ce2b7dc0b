"""The comparison wing: `study.py compare`, the whole mission as one resumable command over one store.

Floors, each importing only those below it (no circle; tests/test_imports.py checks):

    regimes.py   the regime table: each compared regime and pretraining study declared once (pure data)
    sizing.py    fitting the plan's knobs to a time budget (pure: tested against a fake cost model)
    plan.py      the typed plan: the studies of a comparison, their budgets and typed config overrides
    costs.py     what the cost model learned per machine (a JSON file in the user's cache)
    resume.py    what a resumed run finds in the store
    budget.py    the preflight, the speed test, the cost model and the printed plan
    seeds.py     each regime's selected configuration again with other seeds
    run.py       create or load each planned study and run what is left of its budget

Importing this package imports nothing: `reports/` reads `comparison.regimes` without loading torch.
"""
