"""Shared knowledge bases: the prototype memory, Hopfield retrieval and decision rules."""

from semcom.memory.hopfield import hopfield_retrieve, hopfield_weights
from semcom.memory.rules import RULES, Decision, DecisionRule, HopfieldRule, NearestRule, PaperRule, make_rule
from semcom.memory.store import PrototypeMemory

__all__ = ["RULES", "Decision", "DecisionRule", "HopfieldRule", "NearestRule", "PaperRule",
           "PrototypeMemory", "hopfield_retrieve", "hopfield_weights", "make_rule"]
