"""The app's shared pieces (Streamlit lives here and in pages/, never in core/), one module per subject:

- state.py: a session's view, widgets bound to it, the page's link, the router guard;
- models.py: which model a session uses (the checkpoints folder, an upload, a Hugging Face model), the sidebar;
- results.py: what the model computes for a page, once per model and input;
- widgets.py: the sentence boxes, the head picker, draw() for every chart, a head's heatmap, chart clicks;
- text.py: user text shown as typed, long lists cut, over-long input refused with a message;
- sections/: parts of a page that stand on their own (word alignment, heads off, relevance, the head report).

A page (pages/) is a short script: widgets in, a core call (through results.py), charts out through draw().
"""

from ui.models import UploadStore, model_bytes, upload_budget_mb, upload_store
from ui.results import cached_translate, cached_view
from ui.text import cut_list, md_code, md_text
from ui.widgets import EXAMPLES

__all__ = [
    "EXAMPLES",
    "UploadStore",
    "cached_translate",
    "cached_view",
    "cut_list",
    "md_code",
    "md_text",
    "model_bytes",
    "upload_budget_mb",
    "upload_store",
]
