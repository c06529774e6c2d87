"""Defaults that more than one part of maskwatch uses, set in one place.

The CLI options, the engine, the server and the run loop read these; change a default here.
"""

from __future__ import annotations

#: In videos, a tracked face is classified again after this many frames.
RECLASSIFY_EVERY = 5

#: In videos, a *stable* track (its last verdicts agreed with its label, confidently, and its face has
#: not changed size much since) is classified again only after this many frames (0.5 s at 30 fps).
RECLASSIFY_STABLE_EVERY = 15

#: A verdict counts towards a track's stability when it agrees with the label at this calibrated
#: probability or more.
STABLE_CONFIDENCE = 0.9

#: Photos (not video frames): each face is classified together with its mirror image and the two
#: verdicts averaged. Chosen on scenes-kaggle validation faces (accuracy 0.950 -> 0.961); it doubles
#: the classifier's time per face, which video cannot spare.
MIRROR_PHOTOS = True

#: Margin around a face box when cropping, as a fraction of the box, for models that do not record
#: their own (the bundled model records 0.05).
MARGIN = 0.15

#: Largest image accepted, in pixels (decompression-bomb guard).
MAX_PIXELS = 100_000_000

#: Largest upload the web app accepts, in megabytes.
MAX_UPLOAD_MB = 20.0

#: A track without a mask for this many seconds raises one ``unmasked_alert``.
ALERT_AFTER_S = 2.0

#: A track counts as a person in reports when seen on at least this many frames.
MIN_TRACK_FRAMES = 3
