"""From a complete study to results: study-complete detection (routing and jobs come later)."""

from radpilot.pipeline.completion import StudyCompletionWatcher

__all__ = ["StudyCompletionWatcher"]
