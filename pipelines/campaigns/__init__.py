"""The campaigns wing: specs (``spec``), the contact policy and audience (``policy``), scoring with reason codes and
the holdout (``score``), holdout sizing by power (``power``), and the campaign database (``store`` over
``store_schema`` and ``store_frames``). Imports data, features and models."""
