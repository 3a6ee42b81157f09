"""HDF5 image datasets."""

from visgoal.data.dataset import DatasetError, ImageDataset, write_dataset

__all__ = ["DatasetError", "ImageDataset", "write_dataset"]
