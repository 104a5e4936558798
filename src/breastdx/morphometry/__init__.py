"""Nuclear morphometry: the ten nucleus features of Street, Wolberg & Mangasarian (1993) from instance masks
(:mod:`breastdx.morphometry.features`), and per-tile cytology columns (:mod:`breastdx.morphometry.summary`)."""
