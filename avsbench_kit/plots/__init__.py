"""Plots of leaderboards and runs (matplotlib, Agg): data in ``data``, drawing in ``figures``,
which plots exist for a dataset or run in ``make``. matplotlib is imported only when drawing."""
