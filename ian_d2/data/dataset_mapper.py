"""Dataset mapper for person search: Detectron2's DatasetMapper plus person ids.

The mapper keeps each box's ``person_id`` aligned with the box through resizing, flipping and the
removal of boxes that become empty: ids are attached to the Instances as ``gt_pids`` BEFORE
:func:`detectron2.data.detection_utils.filter_empty_instances`, which filters every field with the
same mask. At test time the annotations are kept too (as ``instances`` in the resized input's
coordinates) when ``keep_test_annotations`` is set, so that query records carry their GIVEN query
box ready for ``GeneralizedRCNN.inference(..., detected_instances=...)``.
"""

import copy
import logging

import numpy as np
from .. import _d2  # noqa: F401  (Detectron2 first, see ian_d2._d2)
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

__all__ = ["PersonSearchDatasetMapper", "annotations_to_person_instances"]

logger = logging.getLogger(__name__)


def annotations_to_person_instances(annos, image_shape):
    """Transformed annotations -> Instances with ``gt_boxes``, ``gt_classes`` and ``gt_pids``.

    Args:
        annos (list[dict]): annotations already transformed to the input image, each with
            ``bbox`` (XYXY_ABS after transform), ``category_id`` and ``person_id``.
        image_shape (tuple): (H, W) of the transformed image.

    Returns:
        Instances with gt_pids: int64 [R] (-1 for an unlabeled person); empty boxes NOT removed.
    """
    instances = utils.annotations_to_instances(annos, image_shape)
    instances.gt_pids = torch.as_tensor(
        [int(a.get("person_id", -1)) for a in annos], dtype=torch.int64
    )
    return instances


class PersonSearchDatasetMapper(DatasetMapper):
    """Map a person-search dataset dict to the model's input format.

    Same configuration as :class:`detectron2.data.DatasetMapper` (``INPUT.MIN_SIZE_*``,
    ``INPUT.RANDOM_FLIP``, ``INPUT.FORMAT``), plus ``keep_test_annotations`` and, in training,
    ``INPUT.COLOR_JITTER`` (:mod:`.color`). Extra keys of the
    dataset dict (``query_index``, ``camera_id``, ``image_id``) pass through unchanged.
    Output ``instances`` carry ``gt_boxes`` [R, 4], ``gt_classes`` [R] and ``gt_pids`` [R].
    """

    @configurable
    def __init__(self, is_train: bool, *, keep_test_annotations: bool = True, **kwargs):
        super().__init__(is_train, **kwargs)
        if self.use_instance_mask or self.use_keypoint:
            raise ValueError("PersonSearchDatasetMapper supports boxes only (no masks/keypoints)")
        self.keep_test_annotations = keep_test_annotations

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        from .color import build_color_augmentations

        ret = super().from_config(cfg, is_train)
        ret["keep_test_annotations"] = True
        if is_train:
            color = build_color_augmentations(float(cfg.INPUT.get("COLOR_JITTER", 0.0)))
            ret["augmentations"] = color + list(ret["augmentations"])
        return ret

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        annos = [
            utils.transform_instance_annotations(obj, transforms, image_shape)
            for obj in dataset_dict.pop("annotations")
            if obj.get("iscrowd", 0) == 0
        ]
        instances = annotations_to_person_instances(annos, image_shape)
        # gt_pids is set before filtering, so it is filtered with the same mask as the boxes.
        dataset_dict["instances"] = utils.filter_empty_instances(instances)

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict (dict): one record of a person-search dataset.

        Returns:
            dict: with ``image`` (uint8 tensor [C, H, W]), ``height``, ``width`` and, in training
            or with ``keep_test_annotations``, ``instances``.
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if "annotations" in dataset_dict and (self.is_train or self.keep_test_annotations):
            self._transform_annotations(dataset_dict, transforms, image_shape)
        else:
            dataset_dict.pop("annotations", None)
        return dataset_dict
