"""Writes crates/bench/fixtures/ann-small.hdf5 exactly as ann-benchmarks does (h5py):
train/test float32, neighbors int32, distances float32, attrs distance/point_type/dimension.

    /tmp/refvenv/bin/pip install h5py numpy
    /tmp/refvenv/bin/python scripts/reference/ann_hdf5_fixture.py
"""
import pathlib

import h5py
import numpy as np

rng = np.random.default_rng(7)
train = rng.normal(size=(40, 6)).astype(np.float32)
test = rng.normal(size=(5, 6)).astype(np.float32)
d = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
neighbors = np.argsort(d, axis=1)[:, :10].astype(np.int32)
distances = np.sqrt(np.take_along_axis(d, neighbors, 1)).astype(np.float32)
out = pathlib.Path(__file__).resolve().parents[2] / "crates/bench/fixtures/ann-small.hdf5"
with h5py.File(out, "w") as f:
    f.attrs["type"] = "dense"
    f.attrs["distance"] = "euclidean"
    f.attrs["dimension"] = 6
    f.attrs["point_type"] = "float"
    f.create_dataset("train", data=train)
    f.create_dataset("test", data=test)
    f.create_dataset("neighbors", data=neighbors)
    f.create_dataset("distances", data=distances)
np.save(out.with_suffix(".train.npy"), train)
np.save(out.with_suffix(".neighbors.npy"), neighbors)
print(out)
