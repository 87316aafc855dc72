"""Deployment: a trained model becomes an artefact, a DICOM SEG, and a one-click result in the PACS.

Part 6 of the book. One module per concern:

* `preprocessing` - the exact preprocessing a model was trained with (orientation, spacing,
  intensity normalisation, crop/pad), stored as JSON beside the model and inverted onto the
  source grid after inference;
* `export`  - a MONAI bundle folder: TorchScript + ONNX, `configs/metadata.json`, model card,
  reproducibility record; `load_bundle` runs it with onnxruntime or TorchScript;
* `predict` - DICOM series (folder or PACS) -> stored preprocessing -> model -> mask on the
  source grid;
* `seg`     - DICOM SEG written and read back with highdicom;
* `oneclick` - the research-PACS loop: an Orthanc Python plugin that runs the model when a series
  arrives (or on one REST call) and stores the SEG back in the same study;
* `card`    - a model card (Mitchell et al. 2019) from measured numbers;
* `drift`   - two-sample tests on incoming scans;
* `recipe`  - the small skull-stripping recipe chapters 6.1 and 6.2 train on real IXI heads.

Heavy imports (torch, torchio, highdicom, onnxruntime) happen inside the functions.
"""
