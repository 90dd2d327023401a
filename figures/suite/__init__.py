"""The main job (`ntk-rnn figures`): run every registered study, render every registered figure, write
report.html and suite.json. Modules: registry (studies, figures, profiles), overrides (configs and TOML),
cache (study tables, lock), outcomes (results and summaries), report (report.html), runner (run_suite),
catalogue (the studies and figures themselves), cli (the `ntk-rnn` script)."""

from figures.suite import catalogue  # noqa: F401  (registers the studies and figures)
from figures.suite.cache import SuiteBusyError, study_key
from figures.suite.outcomes import FigureOutcome, StudyOutcome, SuiteResult, format_summary
from figures.suite.overrides import configs_toml, effective_configs, load_overrides
from figures.suite.registry import FIGURES, PROFILES, STUDIES, FigureSpec, Study, add_figure, add_study
from figures.suite.runner import run_suite

__all__ = [
    "FIGURES",
    "PROFILES",
    "STUDIES",
    "FigureOutcome",
    "FigureSpec",
    "Study",
    "StudyOutcome",
    "SuiteBusyError",
    "SuiteResult",
    "add_figure",
    "add_study",
    "configs_toml",
    "effective_configs",
    "format_summary",
    "load_overrides",
    "run_suite",
    "study_key",
]
