"""The features wing: the feature catalogue (``catalogue``) and the customer wide table that computes it
(``wide_table``, the one definition of every feature) with its gate (``gate``),
churn labels and stacked training sets (``labels``), and the campaign history as training data (``history``).
Imports only the data wing."""
