"""What only the notebooks call: the set-up of a notebook (:func:`setup`) and the lessons' illustrations."""
from tal_kit.tutorial.session import Session, setup
