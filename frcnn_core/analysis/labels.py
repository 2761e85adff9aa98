"""A model's classes against a dataset's: labels matched by class name.

Both lists start with the background. A model may know classes the dataset lacks (a COCO model on
BCCD) and the reverse (a dataset class the model was never trained on).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def dataset_labels(model_names: list[str | None], dataset_names: list[str]) -> Tensor:
    """(C_model,) int64: the dataset label of each model label, -1 for the background and for
    classes the dataset lacks (a None name never matches). A name the dataset lists twice maps
    to its first label."""
    first_label = {name: label for label, name in reversed(list(enumerate(dataset_names))) if label > 0}
    return torch.tensor([first_label.get(name, -1) if label > 0 else -1 for label, name in enumerate(model_names)],
                        dtype=torch.int64)


@dataclass(frozen=True)
class LabelSpaces:
    """How the labels of one model and one dataset meet.

    to_dataset (C_model,): `dataset_labels` — turns detections into the dataset's label space;
    joint_names: the model's class names, then the dataset's classes the model lacks;
    to_joint (C_dataset,): each dataset label's index in joint_names — turns GT labels into a
    space where the model's detections keep their labels and a class it lacks is never detected.
    """

    model_names: list[str]
    dataset_names: list[str]
    to_dataset: Tensor
    joint_names: list[str]
    to_joint: Tensor

    @classmethod
    def of(cls, model_names: list[str], dataset_names: list[str]) -> LabelSpaces:
        joint = list(model_names) + [name for name in dataset_names[1:] if name not in model_names[1:]]
        to_joint = torch.tensor([0] + [joint.index(name, 1) for name in dataset_names[1:]], dtype=torch.int64)
        return cls(list(model_names), list(dataset_names), dataset_labels(model_names, dataset_names), joint, to_joint)
