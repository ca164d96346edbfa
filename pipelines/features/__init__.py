"""The features wing: the customer wide table (``wide_table``, the one definition of every feature) and its gate,
churn labels and stacked training sets (``labels``), and the campaign history as training data (``history``).
Imports only the data wing."""
