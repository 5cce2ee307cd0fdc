"""Chart builders: pure functions of data (tensors, frames) returning Vega-Lite specs (dicts) or Altair charts;
no Streamlit here. One module per subject:

- style.py: the colour scale of attention weights (one, everywhere), token labels, axis and tooltip pieces;
- maps.py: attention maps (one head, a layer's heads, every layer x head, one step's rows, A - B);
- decoding.py: a step's candidates, the beam search tree, written tokens' probabilities;
- alignment.py: word links over word-level cross-attention;
- heads.py: a measure or each head's role over layers x heads, the pruning curve;
- attribution.py: each output token's source share, a contrastive attribution;
- runs.py: the Timeline's and Compare's grids and series;
- export.py: CSV, JSON, PNG and SVG downloads.

The app draws every one of them through ui.widgets.draw.
"""

from core.attention import KIND
from core.charts.alignment import alignment_chart, alignment_frames  # noqa: F401
from core.charts.attribution import contrastive_chart, source_share_chart  # noqa: F401
from core.charts.decoding import (  # noqa: F401
    CHOSEN_COLOR,
    STATUS_COLORS,
    beam_tree_chart,
    beam_tree_frame,
    candidates_chart,
    candidates_frame,
    tree_path,
    written_chart,
    written_frame,
)
from core.charts.export import attention_csv, attention_json, chart_image, inline_spec, spec_size  # noqa: F401
from core.charts.heads import ROLE_COLORS, head_roles_grid, head_values_frame, head_values_grid, pruning_chart  # noqa: F401
from core.charts.maps import (  # noqa: F401
    BIG_MAP_CELLS,
    attention_frame,
    difference_heatmap,
    head_average,
    head_matrix,
    heads_grid,
    heatmap,
    image_heatmap,  # noqa: F401
    layers_grid,
    row_heatmap,
    step_frames,
    step_rows,
)
from core.charts.runs import divergence_frame, divergence_grid, epochs_frame, epochs_grid, series_chart  # noqa: F401
from core.charts.style import (  # noqa: F401
    COLOR_STOPS,
    COLORS,
    DIFFERENCE_SCHEME,
    DIVERGENCE_SCHEME,
    FIT_X,
    LABEL_PX,
    LEGEND_PX,
    MASK_COLOR,
    PAD,
    SCHEME,
    TITLE_EXPR,
    altair_weight_scale,
    as_array,
    color_scale,
    fit_cell,
    label_axis,
    label_px,
    labels,
    natural_width,
    repeated,
    tip,
    token_axis,
    weight_colors,
)

READING_HELP = {name: kind.reading for name, kind in KIND.items()}  # what a row and a column of each map are
