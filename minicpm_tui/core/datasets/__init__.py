"""Datasets: validate, stats, preview, register and convert SFT / DPO / KTO data (issue 4).

Public API (others call these): ``validate_file``, ``ValidationReport``, ``detect_format``,
``register_dataset``, ``dataset_info_entry``, ``token_stats``, ``preview_records``, ``convert_file``.
"""

from __future__ import annotations

from minicpm_tui.core.datasets.formats import FORMATS, STAGES, Shape, detect_format
from minicpm_tui.core.datasets.register import RegisterResult, dataset_info_entry, register_dataset
from minicpm_tui.core.datasets.stats import token_stats
from minicpm_tui.core.datasets.validate import Issue, ValidationReport, validate_file


def preview_records(*args, **kwargs):
    from minicpm_tui.core.datasets.preview import preview_records as _impl

    return _impl(*args, **kwargs)


def convert_file(*args, **kwargs):
    from minicpm_tui.core.datasets.convert import convert_file as _impl

    return _impl(*args, **kwargs)


__all__ = ["FORMATS", "STAGES", "Shape", "detect_format", "RegisterResult", "dataset_info_entry",
           "register_dataset", "token_stats", "Issue", "ValidationReport", "validate_file", "preview_records",
           "convert_file"]
