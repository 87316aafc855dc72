"""medlearn: the helper library of the course "Deep learning for medical image analysis".

Like `d2l` for Dive into Deep Learning, it holds what two chapters need, so notebooks stay
short. One module per concern: `data`, `dicom`, `pacs`, `viz`, `metrics`, `noise`, `deploy`;
the instructor's tooling (runner, book build, grading, sandbox, site check, CLI) lives
apart in `medlearn.course`, which `import medlearn` never loads. Importing `medlearn` is cheap: torch,
fastai and MONAI are imported inside the functions that need them.
"""

__version__ = "0.1.0"

from medlearn._seed import set_seed  # noqa: E402  (tiny, no heavy imports)

__all__ = ["__version__", "set_seed"]
