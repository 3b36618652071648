"""Notebook support, named after the lessons: what only the tutorial notebooks call (the set-up every notebook
starts with, :func:`setup`, and the figures and worked examples of notebooks 01-04). Nothing in the pipeline imports
it; it may import anything below it, viz included."""
from tal_kit.tutorial.session import Session, setup

__all__ = ["Session", "setup"]
