"""The instructor's room: what builds, runs and grades the course, apart from what students import.

`notebooks` (the papermill runner and its tiers), `book` (the Jupyter Book build), `site_check`
(the built site in a browser), `grading` and `sandbox` (nbgrader's round trip in a sandbox),
`cli` (the `medlearn` command). It imports the library (`medlearn.data`, ...); the library never
imports it, so `import medlearn` on Colab loads none of this (like `d2lbook` beside `d2l`).
"""
