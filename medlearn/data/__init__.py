"""Data for the course: real data sets through a checksummed cache, synthetic stand-ins, packaged samples.

    from medlearn.data import load
    ds = load("adrenalmnist3d", fast=FAST)   # prints one provenance line: real or stand-in
    ds.df, ds.arrays("train"), ds.show()

The registry (`REGISTRY`) lists every data set with its URL, md5, size, license, citation and the
chapters that use it; `seed_cache(DIR)` fills the cache offline from a folder of sample files;
`print_datasets()` shows what is known and cached. Book page: "Data in this book".
Importing this package is cheap: numpy, pandas and the imaging libraries load inside functions.
"""

from medlearn.data.cache import cache_dir
from medlearn.data.dataset import Dataset
from medlearn.data.download import ChecksumError, DownloadError, download
from medlearn.data.loader import fetch, load
from medlearn.data.registry import REGISTRY, Entry, RemoteFile, entry
from medlearn.data.samples import SAMPLES, sample
from medlearn.data.seeding import datasets_table, print_datasets, seed_cache

__all__ = [
    "load", "Dataset", "sample", "SAMPLES", "seed_cache", "print_datasets", "datasets_table", "fetch",
    "download", "DownloadError", "ChecksumError", "REGISTRY", "Entry", "RemoteFile", "entry", "cache_dir",
]
