"""The readout wing: treatment against holdout (``stats``), the funnel and UTM channels (``funnel``), and the chart and
one-page report rendered from ``templates/`` (``report``). Imports the wings below it, never the jobs."""
