"""The explorer's settings, declared once: SETTINGS builds the Settings record, the
checks of a choice and the widgets that make it, so adding a setting is one entry.

A setting with `fits=True` is the em.fit argument of the same name (a change refits);
one with `fits=False` changes only how the fit is shown (a change redraws).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline import defaults, params

INITS = params.INITS
LABELS = {"map": "MAP label", "nearest": "nearest mean"}
K_MIN, K_MAX = 2, params.MAX_K


class ExploreError(ValueError):
    """A choice the explorer cannot fit; the message says what to change."""


@dataclass(frozen=True)
class Setting:
    """One choice on screen.

    name: the field of Settings (and em.fit's keyword when fits); label: its name on
    screen; default; help: one sentence, the widget's tooltip; low, high: the range of
    a whole-number setting, why: the reason for it (said when a value is out of it);
    presets: buttons for common values (any value in range can still be typed);
    choices: value -> name on screen, for a setting chosen among a few."""

    name: str
    label: str
    default: object
    help: str
    low: int | None = None
    high: int | None = None
    why: str = ""
    presets: tuple = ()
    choices: dict | None = None
    fits: bool = True


SETTINGS = (
    Setting("k", "K", 16, "Components of the mixture: click a preset or type any K "
            f"from {K_MIN} to {K_MAX}.", low=K_MIN, high=K_MAX,
            why=f"an indexed PNG holds at most {K_MAX} colours",
            presets=tuple(2 ** i for i in range(1, 9))),
    Setting("seed", "seed", 0, "Seed of every random choice of the fit: the same seed "
            "gives the same numbers.", low=0, high=2 ** 31 - 1),
    Setting("init", "start", "kmeans++", "How the means start: k-means++ seeding, or the "
            "original study's random start.", choices=INITS),
    Setting("n_init", "restarts", 1, "EM runs from this many starts; the highest "
            "likelihood wins.", low=1, high=20),
    Setting("split_merge", "split-merge", defaults.SPLIT_MERGE, "After the restarts, try "
            "this many split-and-merge moves per round (0: none); a move is kept when it "
            "raises the likelihood.", low=0, high=20),
    Setting("labels", "labels", "map", "Each pixel takes its most probable component "
            "(MAP) or the one whose mean is nearest.", choices=LABELS, fits=False),
)
BY_NAME = {s.name: s for s in SETTINGS}

Settings = dataclasses.make_dataclass(
    "Settings", [(s.name, type(s.default), dataclasses.field(default=s.default))
                 for s in SETTINGS],
    frozen=True)
Settings.__module__ = __name__
Settings.__doc__ = "A value for every entry of SETTINGS (the defaults: theirs)."


def fit_arguments(settings) -> dict:
    """The settings that are em.fit's arguments, by keyword."""
    return {s.name: getattr(settings, s.name) for s in SETTINGS if s.fits}


def describe(settings, names=None) -> str:
    """'K = 16, seed 0, ...': the settings (or those named) as text."""
    parts = []
    for s in SETTINGS:
        if names is None or s.name in names:
            value = getattr(settings, s.name)
            shown = s.choices[value] if s.choices and value in s.choices else value
            parts.append(f"{s.label} = {shown}" if s.name == "k" else f"{s.label} {shown}")
    return ", ".join(parts)


def check_value(setting: Setting, value) -> None:
    """ExploreError naming the setting, the value and what to choose."""
    if setting.choices is not None:
        if value not in setting.choices:
            raise ExploreError(f"{setting.label} {value!r}: choose one of "
                               f"{', '.join(setting.choices)}")
        return
    if isinstance(value, bool) or not isinstance(value, int) or \
            not setting.low <= value <= setting.high:
        raise ExploreError(f"{setting.label} = {value!r}: choose {setting.label} from "
                           f"{setting.low} to {setting.high}"
                           + (f" ({setting.why})" if setting.why else ""))


def check(settings) -> None:
    """Every setting checked (check_value)."""
    for s in SETTINGS:
        check_value(s, getattr(settings, s.name))


# ------------------------------------------------------------------ widgets

def build_widget(setting: Setting, value):
    """(the widget whose .value is the setting's, the widget to display) for one
    setting: toggle buttons for choices; a number box for a whole number, with a row
    of preset buttons beside it when the setting has presets."""
    import ipywidgets as w

    common = {"description": setting.label, "tooltip": setting.help,
              "style": {"description_width": "initial"}}
    if setting.choices is not None:
        control = w.ToggleButtons(options=[(v, k) for k, v in setting.choices.items()],
                                  value=value, **dict(common, style={
                                      "button_width": "auto", "description_width": "initial"}))
        return control, control
    control = w.BoundedIntText(value=value, min=setting.low, max=setting.high, **common,
                               layout=w.Layout(width="170px"))
    if not setting.presets:
        return control, control
    presets = w.ToggleButtons(options=[(str(p), p) for p in setting.presets],
                              value=value if value in setting.presets else None,
                              tooltip=setting.help,
                              style={"button_width": "auto"})

    def from_preset(change):
        if change["new"] is not None:
            control.value = change["new"]

    def from_text(change):
        presets.value = change["new"] if change["new"] in setting.presets else None
    presets.observe(from_preset, names="value")
    control.observe(from_text, names="value")
    return control, w.HBox([control, presets])
