"""HDF5 image datasets and demonstrations."""

from visgoal.data.dataset import DatasetError, ImageDataset, write_dataset
from visgoal.data.demos import DemosError, read_demos, write_demos

__all__ = ["DatasetError", "DemosError", "ImageDataset", "read_demos", "write_dataset", "write_demos"]
