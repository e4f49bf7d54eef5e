"""What LLaMA-Factory does with the media columns (images, videos, audios) of a dataset_info.json entry.

Read from LLaMA-Factory's own source, 0.9.2 to 0.9.5 (``tests/test_datasets_agreement.py`` checks it):
- ``data/converter.py``, ``DatasetConverter._find_medias``: a mapped media column's value becomes the
  record's media list: null or ``[]`` -> none, any other value that is not a list (even ``""``) -> a list
  of that one value, a list as it is. Each string is joined to ``media_dir`` (default: ``dataset_dir``,
  ``hparams/data_args.py``) and taken from there when that file exists, else used as written (relative to
  the working directory). In 0.9.2 a null (or a record without the field) is made ``[]`` and then indexed:
  the conversion of the whole dataset fails with "IndexError: list index out of range".
- ``data/mm_plugin.py``, ``MMPluginMixin._validate_input`` (``BasePlugin._validate_input`` in 0.9.2), called
  by the template's plugin from every stage's processor (``data/processor/*.py``) on each record it keeps:
  media of a kind whose token the plugin lacks raise ValueError "This model does not support image
  input" inside ``dataset.map``, so preprocessing, and the run, stop. Records the processor drops first do
  not raise. The text templates (cpm, cpm3, cpm4; ``data/template.py``) use the base plugin, which has no
  token; it does not count ``<image>`` placeholders either, so such text is trained on as plain text.
- A template that does read them opens each file while preprocessing; a missing one stops it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from minicpm_tui.core.datasets.formats import MEDIA_KEYS, Shape

if TYPE_CHECKING:
    from minicpm_tui.core.datasets.validate import Issue

# column key -> the modality LLaMA-Factory's plugin names ("This model does not support image input")
MODALITY = {"images": "image", "videos": "video", "audios": "audio"}
# MiniCPM's text templates: registered with the base plugin (no media token) in every release that has
# them (data/template.py 0.9.2-0.9.5; cpm/cpm3 up to 0.9.4, cpm4 from 0.9.3), and so by train_entry.py.
TEXT_TEMPLATES = ("cpm", "cpm3", "cpm4")


@dataclass(frozen=True)
class MediaReading:
    """Which media the template that trains the data reads, and where LLaMA-Factory looks for their files."""

    template: str | None = None  # None: not known here (read as the presets' text templates)
    # the media column keys its plugin takes; None: not known (a template neither introspected nor ours)
    accepts: frozenset[str] | None = frozenset()
    model: str | None = None  # the model's name, for the message
    media_dir: str | None = None  # None: the dataset_dir (LLaMA-Factory's default)

    def who(self) -> str:
        """Who reads the data, with its verb: "MiniCPM4-8B (template cpm4) reads"."""
        if self.template is None:
            return f"MiniCPM's text templates ({', '.join(TEXT_TEMPLATES)}, what the presets train with) read"
        return (f"{self.model} (template {self.template})" if self.model else f"template {self.template}") + " reads"

    def with_media_dir(self, media_dir: str | os.PathLike[str]) -> MediaReading:
        """The same, with ``media_dir`` where none is set (the dataset_dir LLaMA-Factory defaults to)."""
        if self.media_dir is not None:
            return self
        return MediaReading(self.template, self.accepts, self.model, str(media_dir))


def media_reading(template: str | None = None, model: str | None = None,
                  template_media: dict[str, list[str]] | None = None,
                  media_dir: str | os.PathLike[str] | None = None) -> MediaReading:
    """The MediaReading of ``template``: from ``template_media`` (LLaMA-Factory's own answer, ``lfinfo``:
    template -> the column keys its plugin takes) where it names it, else text-only for MiniCPM's text
    templates and for no template at all (the models minicpm-tui has presets for are text-only), else not
    known (``accepts`` None)."""
    if template_media is not None and template in template_media:
        accepts: frozenset[str] | None = frozenset(template_media[template])
    elif template is None or template in TEXT_TEMPLATES:
        accepts = frozenset()
    else:
        accepts = None
    return MediaReading(template, accepts, model, None if media_dir is None else str(media_dir))


def mapped_media(columns: dict[str, str | None]) -> list[tuple[str, str]]:
    """(column key, the record field) of each media column an entry maps."""
    return [(key, name) for key in MEDIA_KEYS if (name := columns.get(key))]


def media_files(value: Any) -> list[tuple[str, str]]:
    """(where in the value, path) of each file name LLaMA-Factory looks up (``_find_medias``): the strings
    of a list (or of its lists: video frames), or the value itself; other values (bytes, objects) are not."""
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append((f"[{i}]" if isinstance(value, list) else "", item))
        elif isinstance(item, list):
            out.extend((f"[{i}][{j}]", frame) for j, frame in enumerate(item) if isinstance(frame, str))
    return out


def media_found(path: str, media_dir: str | None) -> bool:
    """Whether LLaMA-Factory finds the file: in media_dir, else as written (from the working directory)."""
    return (media_dir is not None and os.path.isfile(os.path.join(media_dir, path))) or os.path.isfile(path)


def _old_converter(lf_version: str | None) -> bool:
    """0.9.2's ``_find_medias`` fails on a null media value (see the module doc)."""
    from minicpm_tui.core.datasets.entry import version_tuple

    release = version_tuple(lf_version) if lf_version else ()
    return bool(release) and release < (0, 9, 3)


def media_checker(check: Any, shape: Shape) -> Any:
    """``check`` (a record checker of ``validate.make_checker``) that also reads an entry's media columns.

    A kept record with media the template does not read, and in 0.9.2 any record with a null media value,
    fail the whole load: they are noted in ``facts`` (the first record of each) for ``media_problems``. Media
    the template reads must be files LLaMA-Factory finds; a record naming a missing one is not usable.
    """
    cols = mapped_media(shape.columns or {})
    if not cols:
        return check
    media = shape.media or MediaReading()
    refused = tuple((k, f) for k, f in cols if media.accepts is not None and k not in media.accepts)
    read = tuple((k, f) for k, f in cols if media.accepts is None or k in media.accepts)
    nulls = tuple(f for _, f in cols) if _old_converter(shape.lf_version) else ()
    facts: dict[str, Any] = getattr(check, "facts", None) or {}
    facts.update({f"media:{f}": None for _, f in refused})
    facts.update({f"media_null:{f}": None for f in nulls})
    media_dir = media.media_dir

    def checked(rec: Any, idx: int, warn: Any, lens: Any) -> tuple[str, str, str, str] | None:
        measured: list[tuple[int, int]] = []
        problem = check(rec, idx, warn, lambda chars, turns: measured.append((chars, turns)))
        if type(rec) is not dict:
            return problem
        for f in nulls:  # the converter reads every record, kept or not
            if rec.get(f) is None and facts[f"media_null:{f}"] is None:
                facts[f"media_null:{f}"] = idx
        if problem is not None:
            return problem  # the processor drops it before the plugin sees its media
        for _, f in refused:
            v = rec.get(f)
            if v is not None and (type(v) is not list or v) and facts[f"media:{f}"] is None:
                facts[f"media:{f}"] = idx
        for key, f in read:
            v = rec.get(f)
            if v is None:
                continue
            for where, path in media_files(v):
                if not media_found(path, media_dir):
                    place = f"media_dir ({media_dir})" if media_dir else "the working directory"
                    return (f"{f}{where}", f"{path!r} is not a file in {place}, nor as written; LLaMA-Factory "
                            f"fails opening the {MODALITY[key]} and preprocessing stops",
                            "put the file there, fix the path, or set media_dir in train.yaml", "media_missing")
        for m in measured:
            lens(*m)
        return None

    checked.facts = facts  # type: ignore[attr-defined]
    return checked


def media_problems(shape: Shape | None, facts: dict[str, Any] | None) -> list[Issue]:
    """The whole-load failures ``media_checker`` noted: one issue (kind "load") per media field."""
    from minicpm_tui.core.datasets.validate import Issue

    cols = mapped_media(shape.columns or {}) if shape is not None else []
    if not cols or not facts:
        return []
    media = shape.media or MediaReading()
    out = []
    for key, f in cols:
        idx = facts.get(f"media_null:{f}")
        if idx is not None:
            out.append(Issue(idx, f, f"is null or missing here; LLaMA-Factory {shape.lf_version}'s converter "
                             "then fails on the whole dataset (IndexError: list index out of range; fixed in "
                             "0.9.3)", f"write \"{f}\": [] in every record without media, or upgrade "
                             "LLaMA-Factory to 0.9.3 or later", "load"))
        idx = facts.get(f"media:{f}")
        if idx is not None:
            kind = MODALITY[key]
            out.append(Issue(idx, f, f"{media.who()} no {key}; LLaMA-Factory stops preprocessing here with "
                             f"\"This model does not support {kind} input\"", f"remove \"{key}\" from the entry's columns and train on the text "
                             f"(the model is text-only), or drop the {key} from the data", "load"))
    return out


def media_for(template: str | None, model: str | None = None, media_dir: str | os.PathLike[str] | None = None,
              python: str | None = None, target: Any = None) -> MediaReading:
    """``media_reading`` of ``template``, by the LLaMA-Factory the data is trained with: ``target`` (an
    ``lfinfo.LFInfo`` of another machine's, ``core.lftarget``) from its saved facts, else the training Python's
    (``lfinfo.lf_info``, cached), asked only for a template that is not one of MiniCPM's text templates;
    without one, not known."""
    template_media = None
    if target is not None:
        template_media = target.template_media
    elif template is not None and template not in TEXT_TEMPLATES:
        from minicpm_tui.core.lfinfo import lf_info

        try:
            info = lf_info(python)
            template_media = info.template_media if info.installed else None
        except Exception:  # no LLaMA-Factory here (validate runs without one): the template stays unknown
            template_media = None
    return media_reading(template, model, template_media, media_dir)


def entry_maps_media(entry: Any) -> bool:
    """Whether a dataset_info.json entry maps a media column (only then does the template matter)."""
    columns = entry.get("columns") if isinstance(entry, dict) else None
    return isinstance(columns, dict) and any(isinstance(columns.get(k), str) and columns[k] for k in MEDIA_KEYS)
