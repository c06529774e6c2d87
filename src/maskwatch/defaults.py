"""Named defaults for code that wants one value, derived from the engine spec.

The engine's defaults are declared (and explained) once, in :class:`maskwatch.spec.EngineSpec`; the
names below are read from it. Only the few defaults that are not an engine setting live here.
"""

from __future__ import annotations

from maskwatch.spec import DEFAULT_SPEC as _D

RECLASSIFY_EVERY = _D.reclassify_every
RECLASSIFY_STABLE_EVERY = _D.reclassify_stable_every
STABLE_CONFIDENCE = _D.stable_confidence
MIRROR_PHOTOS = _D.mirror_photos
MAX_PIXELS = _D.max_pixels
ALERT_AFTER_S = _D.alert_after_s
MIN_TRACK_FRAMES = _D.min_track_frames

#: Margin around a face box when cropping, as a fraction of the box, for models that do not record
#: their own (the bundled model records 0.05). A property of a model file, not of an engine.
MARGIN = 0.15

#: Largest upload the web app accepts, in megabytes (a server setting).
MAX_UPLOAD_MB = 20.0
