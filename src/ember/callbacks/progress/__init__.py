"""Lightning's import path for the progress bars: ``ember.callbacks.progress``."""

from ember.callbacks.progress_bar import ProgressBar
from ember.callbacks.rich_progress import RichProgressBar, RichProgressBarTheme
from ember.callbacks.tqdm_progress import TQDMProgressBar

__all__ = ["ProgressBar", "RichProgressBar", "RichProgressBarTheme", "TQDMProgressBar"]
