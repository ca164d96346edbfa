"""The data wing: the canonical data model (``schema``), the Parquet lake and atomic files (``storage``), public data
sets mapped onto the model (``sources``), and the data-quality gates (``gates`` over ``suites``, ``gate_engine``,
``gate_lake`` and ``gate_reports``). The bottom of the stack: it imports no other wing."""
