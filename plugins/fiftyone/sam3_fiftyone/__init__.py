"""SAM 3 for FiftyOne: a model for `apply_model`, dataset-scale labeling and the App's operators.

`label_view` labels a view by concepts and `label_from_exemplars` by each sample's exemplar boxes,
as `sam3_core.jobs` jobs (here or on Ray), writing back as shards finish; `label_samples` runs a
`Sam3Model` (any prompts, clicks too) in this process; `track_samples` tracks through videos;
`precompute_embeddings` fills an embedding store the others read; `evaluate_view` scores a field
against ground truth. The plugin folder (`plugins/fiftyone`) registers `operators`.
"""

from .dataset_jobs import label_view
from .embeddings import precompute_embeddings
from .evaluation import evaluate_view
from .exemplar_jobs import label_from_exemplars
from .labeling import JobReport, label_samples
from .model import Sam3Model, Sam3ModelConfig
from .tracking import track_samples

__all__ = [
    "JobReport",
    "Sam3Model",
    "Sam3ModelConfig",
    "evaluate_view",
    "label_from_exemplars",
    "label_samples",
    "label_view",
    "precompute_embeddings",
    "track_samples",
]
