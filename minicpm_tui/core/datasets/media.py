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
- ``MMPluginMixin._validate_messages`` (0.9.3 on; in 0.9.2 each plugin's ``process_messages`` counts its own
  kinds, ``MiniCPMVPlugin`` all three), called by every plugin but the base one before it opens a file: the
  ``<image>`` / ``<video>`` / ``<audio>`` placeholders (``extras/constants.py``, ``IMAGE_PLACEHOLDER`` etc.,
  each overridable by an environment variable of that name) counted over the contents of the messages the
  processor passes it, summed over every turn but the system prompt (sft and kto: the prompt turns and the
  answer; dpo: once with ``chosen``, once with ``rejected``), must equal the number of each kind of media of the
  record, an unmapped kind being none: else ValueError "The number of images does not match the number of
  <image> tokens", and preprocessing stops. MiniCPM-V's templates (minicpm_v, minicpm_o, minicpm_v_4_6) take
  images and videos (minicpm_o audios too). The base plugin counts nothing (``MediaReading.counted``); an
  entry that maps no media column is read through a template that may count (``may_count``) too.
"""

from __future__ import annotations

import json
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
# column key -> (LLaMA-Factory's environment variable, its default): extras/constants.py's placeholders
PLACEHOLDER_VARS = {"images": ("IMAGE_PLACEHOLDER", "<image>"), "videos": ("VIDEO_PLACEHOLDER", "<video>"),
                    "audios": ("AUDIO_PLACEHOLDER", "<audio>")}
# 0.9.2's templates whose plugin (MiniCPMVPlugin) counts all three kinds; its other plugins count their own
ALL_COUNTED_0_9_2 = ("minicpm_v", "minicpm_o")


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

    def counted(self, lf_version: str | None = None) -> tuple[str, ...]:
        """The media column keys whose placeholders the template's plugin counts (see the module doc): every
        kind for a plugin that takes media, none for the base plugin (no media) or a template not known."""
        if not self.accepts:
            return ()
        if _old_converter(lf_version) and self.template not in ALL_COUNTED_0_9_2:
            return tuple(k for k in MEDIA_KEYS if k in self.accepts)
        return MEDIA_KEYS

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


def placeholders() -> dict[str, str]:
    """Column key -> its placeholder, as LLaMA-Factory reads it (``extras/constants.py``: its variable, else the
    default); read from this environment, which is the training run's when it starts from here."""
    return {key: os.environ.get(var, default) for key, (var, default) in PLACEHOLDER_VARS.items()}


def media_count(value: Any) -> int:
    """How many media LLaMA-Factory makes of a value (``_find_medias``): none of null or [], one of a non-list."""
    if value is None:
        return 0
    return len(value) if type(value) is list else 1


def dialogs(shape: Shape, stage: str) -> Any:
    """A function of a kept record: the message lists the stage's processor hands the plugin
    (``processor/supervised.py``, ``pairwise.py``, ``feedback.py``: ``_encode_data_example``), each a list of
    (record field, content) as the converter (``data/converter.py``) builds them: every turn but a leading system
    one (alpaca: history, prompt, query, then the answer); dpo: one list with chosen, one with rejected. KTO's
    KL pair (this prompt with another record's answer, ``FeedbackDatasetProcessor.preprocess_dataset``) is not
    built: it only differs where an answer holds a placeholder, which ``kto_pair_problem`` checks across records."""
    pair = (shape.column("chosen") or "chosen", shape.column("rejected") or "rejected") if stage == "dpo" else ()
    if shape.style == "alpaca":
        hist, prompt, query, resp = (shape.column(k) for k in ("history", "prompt", "query", "response"))

        def alpaca(rec: dict[str, Any]) -> list[list[tuple[str, Any]]]:
            base: list[tuple[str, Any]] = []
            turns = rec.get(hist) if hist else None
            if type(turns) is list:
                base += [(f"{hist}[{i}][{j}]", t) for i, p in enumerate(turns) if type(p) is list
                         for j, t in enumerate(p[:2])]
            base += [(k, rec.get(k)) for k in (prompt, query) if k]
            if pair:
                return [base + [(k, rec.get(k))] for k in pair]
            return [base + ([(resp, rec.get(resp))] if resp else [])]

        return alpaca
    mkey, t = shape.messages_key, shape.tags
    role_tag, content_tag, system_tag = t.get("role_tag"), t.get("content_tag"), t.get("system_tag")
    calls = (t.get("assistant_tag"), t.get("function_tag")) if shape.converter == "openai" else ()

    def content(m: dict[str, Any]) -> Any:
        tools = m.get("tool_calls") if calls and m.get(role_tag) in calls else None
        if tools and type(tools) is list and all(type(c) is dict and "function" in c for c in tools):
            return json.dumps([c["function"] for c in tools], ensure_ascii=False)  # the OpenAI converter's
        return m.get(content_tag)

    def sharegpt(rec: dict[str, Any]) -> list[list[tuple[str, Any]]]:
        msgs = rec.get(mkey)
        if type(msgs) is not list:
            return []
        start = 1 if system_tag and msgs and type(msgs[0]) is dict and msgs[0].get(role_tag) == system_tag else 0
        base = [(f"{mkey}[{i}].{content_tag}", content(m)) for i, m in enumerate(msgs) if i >= start
                and type(m) is dict]
        if pair:
            return [base + [(f"{k}.{content_tag}", v.get(content_tag) if type(v := rec.get(k)) is dict else None)]
                    for k in pair]
        return [base]

    return sharegpt


# MiniCPM-V's plugins refuse a record with both (mm_plugin.py, MiniCPMVPlugin / MiniCPMV4_6Plugin.process_messages)
MINICPM_V_TEMPLATES = ("minicpm_v", "minicpm_o", "minicpm_v_4_6")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("s" if n != 1 else "")


def count_problem(rec: dict[str, Any], texts_of: Any, counted: tuple[str, ...], fields: dict[str, str],
                  marks: dict[str, str], template: str | None) -> tuple[str, str, str, str] | None:
    """The first kind of media whose number differs from its placeholders' in a list of messages (see
    ``dialogs``), as (field, message, fix, "media_count"); None when they all match."""
    name = f"template {template}'s" if template else "the template's"
    for texts in texts_of(rec):
        for key in counted:
            mark, f = marks[key], fields.get(key)
            found = [(where, n) for where, c in texts if type(c) is str and (n := c.count(mark))]
            n_text, n_media = sum(n for _, n in found), media_count(rec.get(f)) if f else 0
            if n_text == n_media:
                continue
            kind = MODALITY[key]
            stop = (f"; {name} plugin counts them and LLaMA-Factory stops preprocessing (\"The number of {key} "
                    f"does not match the number of {mark} tokens\")")
            if f is None:
                return (found[0][0], f"holds {_plural(n_text, mark + ' placeholder')}, but the entry maps no {key} "
                        f"column, so the record has none{stop}",
                        f"remove {mark} from the text, or map \"{key}\" in the entry's columns to the record's "
                        f"{kind} list", "media_count")
            inside = ", ".join(dict.fromkeys(w.split("[", 1)[0].split(".", 1)[0] for w, _ in texts))
            return (f, f"holds {_plural(n_media, kind)}, but the text ({inside}) has "
                    f"{_plural(n_text, mark + ' placeholder')}{stop}",
                    f"write one {mark} in the prompt where each {kind} goes, as many as the {key} listed "
                    f"(or drop the extra {key})", "media_count")
    if template in MINICPM_V_TEMPLATES and all(fields.get(k) and media_count(rec.get(fields[k]))
                                               for k in ("images", "videos")):
        n_vid, n_img = media_count(rec.get(fields["videos"])), media_count(rec.get(fields["images"]))
        return (fields["videos"], f"holds {_plural(n_vid, 'video')} while {fields['images']} holds "
                f"{_plural(n_img, 'image')}; {name} plugin stops preprocessing "
                "(\"MiniCPM-V model does not support input images and videos at the same time\")",
                "put the images and the videos in separate records", "media_count")
    return None


def media_checker(check: Any, shape: Shape, stage: str = "sft") -> Any:
    """``check`` (a record checker of ``validate.make_checker``) that also reads an entry's media columns.

    A kept record with media the template does not read, and in 0.9.2 any record with a null media value,
    fail the whole load: they are noted in ``facts`` (the first record of each) for ``media_problems``. In the
    other kept records the placeholders must match the media (``count_problem``), and media the template
    reads must be files LLaMA-Factory finds; a record failing either is not usable.
    """
    cols = mapped_media(shape.columns or {})
    media = shape.media or MediaReading()
    counted = media.counted(shape.lf_version)
    if not cols and not counted:
        return check
    refused = tuple((k, f) for k, f in cols if media.accepts is not None and k not in media.accepts)
    read = tuple((k, f) for k, f in cols if media.accepts is None or k in media.accepts)
    nulls = tuple(f for _, f in cols) if _old_converter(shape.lf_version) else ()
    facts: dict[str, Any] = getattr(check, "facts", None) or {}
    facts.update({f"media:{f}": None for _, f in refused})
    facts.update({f"media_null:{f}": None for f in nulls})
    media_dir = media.media_dir
    fields = dict(cols)
    texts_of = dialogs(shape, stage) if counted else None
    marks = placeholders()
    kto_pairs = stage == "kto" and texts_of is not None
    if kto_pairs:
        facts.setdefault(KTO_ANSWERS, [])

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
        refusing = False
        for _, f in refused:
            v = rec.get(f)
            if v is not None and (type(v) is not list or v):
                refusing = True  # _validate_input raises before the placeholders are counted
                if facts[f"media:{f}"] is None:
                    facts[f"media:{f}"] = idx
        if texts_of is not None and not refusing:
            wrong = count_problem(rec, texts_of, counted, fields, marks, media.template)
            if wrong is not None:
                return wrong  # counted before any file is opened
            if kto_pairs:
                texts = texts_of(rec)
                where, answer = texts[0][-1] if texts and texts[0] else ("", None)
                found = tuple(answer.count(marks[k]) if type(answer) is str else 0 for k in counted)
                if any(found):  # the usual answer holds none: only these can break another record's KL pair
                    facts[KTO_ANSWERS].append((idx, found, where))
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


# media_checker's fact for KTO: (record, placeholders per counted kind, field) of each kept record whose answer
# holds placeholders, in record order (parallel chunks: shifted and joined, validate._validate_parallel).
KTO_ANSWERS = "kto_answers"
# LLaMA-Factory's DataArguments.preprocessing_batch_size default: the KL pairs never cross a batch.
PREPROCESSING_BATCH = 1000


def kl_partner(i: int, records: int, lf_version: str | None, batch: int = PREPROCESSING_BATCH) -> int:
    """The record whose answer record ``i``'s KL term takes (``FeedbackDatasetProcessor.preprocess_dataset`` on
    one batch of ``dataset.map``): the previous one, the batch's last for its first (0.9.3 on); the mirrored one
    in its batch (0.9.2: the answers reversed). One preprocessing worker, the default batch size."""
    from minicpm_tui.core.datasets.entry import version_tuple

    first = i - i % batch
    last = min(first + batch, records) - 1
    if lf_version is not None and version_tuple(lf_version) < (0, 9, 3):
        return first + last - i
    return last if i == first else i - 1


def kto_pair_problem(shape: Shape, answers: list[tuple[int, tuple[int, ...], str]], records: int) -> Issue | None:
    """The first record whose KL pair (its prompt, another record's answer: ``kl_partner``) holds another number
    of placeholders than its own answer, so the plugin's count fails on it and preprocessing stops; None when
    every answer holds as many as its partner's (none, in the usual data)."""
    from minicpm_tui.core.datasets.validate import Issue

    media = shape.media or MediaReading()
    counted = media.counted(shape.lf_version)
    by_record = {i: (found, where) for i, found, where in answers}
    none = ((0,) * len(counted), "")
    for i in range(records):  # in record order: the first record that stops the preprocessing
        j = kl_partner(i, records, shape.lf_version)
        if i not in by_record and j not in by_record:
            continue  # neither answer holds a placeholder: the usual record
        (own, _), (theirs, where) = by_record.get(i, none), by_record.get(j, none)
        if own == theirs:
            continue
        k = next(n for n in range(len(counted)) if own[n] != theirs[n])
        mark, key = placeholders()[counted[k]], counted[k]
        where = where or by_record[i][1]
        return Issue(i, where, f"its KTO KL pair (this record's prompt with record {j}'s answer, as LLaMA-Factory "
                     f"builds it) holds {_plural(theirs[k], mark + ' placeholder')} in "
                     f"that answer where this record's own answer holds {own[k]}, so the {key} no longer match "
                     f"their placeholders and LLaMA-Factory stops preprocessing (\"The number of {key} does not "
                     f"match the number of {mark} tokens\")",
                     f"keep {mark} out of the answers: write each one in the prompt, where the {MODALITY[key]} goes",
                     "load")
    return None


def media_problems(shape: Shape | None, facts: dict[str, Any] | None, records: int = 0) -> list[Issue]:
    """The whole-load failures ``media_checker`` noted: one issue (kind "load") per media field, and a KTO KL
    pair whose placeholders do not match (``kto_pair_problem``)."""
    from minicpm_tui.core.datasets.validate import Issue

    cols = mapped_media(shape.columns or {}) if shape is not None else []
    if shape is None or not facts:
        return []
    out = []
    if facts.get(KTO_ANSWERS):
        pair = kto_pair_problem(shape, facts[KTO_ANSWERS], records)
        if pair is not None:
            out.append(pair)
    if not cols:
        return out
    media = shape.media or MediaReading()
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


def may_count(template: str | None) -> bool:
    """Whether ``template`` may count placeholders (then even an entry that maps no media column is read through
    it, ``media_for``): any but MiniCPM's text templates, or none (the presets')."""
    return template is not None and template not in TEXT_TEMPLATES


def entry_maps_media(entry: Any) -> bool:
    """Whether a dataset_info.json entry maps a media column (only then does the template matter)."""
    columns = entry.get("columns") if isinstance(entry, dict) else None
    return isinstance(columns, dict) and any(isinstance(columns.get(k), str) and columns[k] for k in MEDIA_KEYS)
