"""Pairwise preference models and Bradley–Terry reward models, trained on prompt/chosen/rejected pairs."""
from zoo.preference.data import PreferenceData, keyword_judge
from zoo.preference.module import PreferenceModel

__all__ = ["PreferenceData", "PreferenceModel", "keyword_judge"]
