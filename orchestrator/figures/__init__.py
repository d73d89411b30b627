"""Figures: ``results`` draws the leaderboard (robust curves, Pareto front, faithfulness;
torch-free), ``overlays`` draws explanations on images, ``runs`` reads an LGR run
directory and explains its models before and after refinement. Import each from its
module (``results`` and ``tables`` import no torch).
"""
